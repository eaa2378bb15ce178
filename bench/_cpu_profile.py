"""A CPU-weighted sampling profiler for a server process, loaded by bench/_probes.py (Atelier) or
bench/_vanilla_gradio.py (the plain app): where each side's CPU time goes, by Python stack.

Every `interval_s` it reads each thread's CPU time from /proc (nanoseconds, /proc/self/task/TID/schedstat) and
charges what the thread used since the last look to the Python stack it is in now. Unlike a wall-clock sampler,
a thread waiting for the GIL or a lock is charged nothing, so on a busy shared machine the profile still says what
work each side does. Threads without Python frames (torch's pool) are charged to "<native thread NAME>".

SIGUSR1 starts the profile afresh (after the warm-up), SIGUSR2 writes it as JSON, {"frames": [[stack, cpu_ns],
...]}: bench/image_overhead.py --profile sends both and compares the two sides' profiles.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

_ROOTS = (str(Path(__file__).resolve().parent.parent), sys.prefix, sys.base_prefix)


def _where(code_file: str) -> str:
    """A short name for a source file: relative to the checkout or to site-packages."""
    for marker in ("site-packages/", "dist-packages/", "/lib/python3"):
        if marker in code_file:
            return code_file.split(marker, 1)[1]
    for root in _ROOTS:
        if code_file.startswith(root):
            return code_file[len(root):].lstrip("/")
    return code_file


def _stack(frame: object, depth: int = 40) -> tuple[str, ...]:
    out = []
    while frame is not None and len(out) < depth:
        code = frame.f_code  # type: ignore[attr-defined]
        out.append(f"{_where(code.co_filename)}:{code.co_name}")
        frame = frame.f_back  # type: ignore[attr-defined]
    return tuple(reversed(out))


def _cpu_ns(tid: int) -> int | None:
    try:
        with open(f"/proc/self/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Sampler:
    """Charges each thread's CPU time to its current Python stack, every `interval_s`."""

    def __init__(self, path: str, interval_s: float = 0.004) -> None:
        self.path = path
        self.interval_s = interval_s
        self.samples: Counter[tuple[str, ...]] = Counter()
        self.last: dict[int, int] = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="bench-cpu-sampler", daemon=True)

    def start(self) -> None:
        """Start sampling; SIGUSR1 resets, SIGUSR2 dumps (from the main thread, where signals are set)."""
        self.thread.start()
        signal.signal(signal.SIGUSR1, lambda *_: self.reset())
        signal.signal(signal.SIGUSR2, lambda *_: self.dump())

    def reset(self) -> None:
        """Forget what was charged so far."""
        with self.lock:
            self.samples.clear()

    def _run(self) -> None:
        me = threading.get_native_id()
        while True:
            time.sleep(self.interval_s)
            frames = sys._current_frames()
            threads = {t.ident: t for t in threading.enumerate()}
            natives = {t.native_id: t for t in threads.values() if t.native_id is not None}
            with self.lock:
                for tid in (int(x) for x in os.listdir("/proc/self/task")):
                    if tid == me or (now := _cpu_ns(tid)) is None:
                        continue
                    used = now - self.last.get(tid, now)
                    self.last[tid] = now
                    if used <= 0:
                        continue
                    thread = natives.get(tid)
                    frame = frames.get(thread.ident) if thread is not None else None
                    stack = _stack(frame) if frame is not None else (f"<native thread {_thread_name(tid)}>",)
                    self.samples[stack] += used

    def dump(self) -> None:
        """Write the profile so far."""
        with self.lock:
            rows = [[list(stack), ns] for stack, ns in self.samples.most_common()]
        partial = Path(self.path + ".part")
        partial.write_text(json.dumps({"frames": rows}))
        partial.replace(self.path)  # whole or not at all: the benchmark waits for the file


def _thread_name(tid: int) -> str:
    try:
        return Path(f"/proc/self/task/{tid}/comm").read_text().strip()
    except OSError:
        return "?"


SAMPLER: Sampler | None = None


def start(path: str) -> Sampler:
    """Start the process's sampler (once), writing to `path`."""
    global SAMPLER
    if SAMPLER is None:
        SAMPLER = Sampler(path)
        SAMPLER.start()
    return SAMPLER


class MainThreadProfile:
    """cProfile on the main thread (the event loop), deterministic: every function the loop runs, with its time
    and call count. SIGUSR1 starts it afresh, SIGUSR2 writes pstats to `path` (both in the main thread)."""

    def __init__(self, path: str) -> None:
        import cProfile

        self.path = path
        self.factory = cProfile.Profile
        self.profile = cProfile.Profile()

    def start(self) -> None:
        """Profile from now on."""
        self.profile.enable()
        signal.signal(signal.SIGUSR1, lambda *_: self.reset())
        signal.signal(signal.SIGUSR2, lambda *_: self.dump())

    def reset(self) -> None:
        """Forget what was profiled so far."""
        self.profile.disable()
        self.profile = self.factory()
        self.profile.enable()

    def dump(self) -> None:
        """Write the profile so far (pstats format)."""
        self.profile.disable()
        partial = self.path + ".part"
        self.profile.dump_stats(partial)
        Path(partial).replace(self.path)
        self.profile.enable()


def start_main_thread_profile(path: str) -> MainThreadProfile:
    """cProfile the calling (main) thread; see MainThreadProfile."""
    profile = MainThreadProfile(path)
    profile.start()
    return profile

