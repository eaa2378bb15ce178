"""A burst of hostile requests to Gradio's internal routes, and the server's memory (RSS) through it: at rest, at its
peak while the burst runs, and once it is over. With --before REV the same burst also hits that revision (run from a
`git archive` of it), its server and this tree's started fresh each round and interleaved, so the two sides meet the
same machine; without it, this tree alone.

The burst, all at once from 8 threads on loopback (--bursts of them, one after the other), against a server in
single-user mode on loopback (no rate limits: the worst case for memory; the limits only slow a shared server's
attacker down):
- image editor pieces (component_server) with a layer index of 50,000,000;
- image editor pieces near the upload limit (20 MiB) under new ids, never read by an event;
- a 12000x12000 1-bit PNG (17 KB) as the editor's background, then the editor's event;
- the same PNG uploaded, then named by path in the editor's event;
- 60 MB uploads, with a Content-Length and chunked without one;
- malformed pieces (missing fields, unknown components, text indexes).

    python bench/memory_burst.py --before main --rounds 3 [--bursts 2] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from _server import ROOT, load_average, save, start_server, stats
from PIL import Image

MIB = 2**20


@dataclass(frozen=True)
class Burst:
    """How many of each attack one burst sends."""

    huge_index: int = 2
    large_pieces: int = 8
    bombs: int = 1  # each: one as a piece and one as a file, with the editor's event after it
    uploads_mib: int = 60
    uploads: int = 2  # each: one declared, one chunked
    malformed: int = 20
    workers: int = 8


SMOKE = Burst(huge_index=1, large_pieces=4, bombs=1, uploads_mib=30, uploads=1, malformed=10, workers=6)


def encode(image: Image.Image, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()


@dataclass
class Payloads:
    """What the attacks send, made once."""

    strokes: bytes
    large: bytes
    bomb: bytes

    @classmethod
    def make(cls) -> Payloads:
        """A small stroke layer, a ~19 MiB noise PNG (under the 20 MiB limit), and a 12000x12000 1-bit PNG."""
        layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
        layer.paste((255, 255, 255, 255), (4, 4, 12, 12))
        pixels = np.random.default_rng(0).integers(0, 255, (2560, 2560, 3), dtype=np.uint8)
        return cls(encode(layer), encode(Image.fromarray(pixels), compress_level=0),
                   encode(Image.new("1", (12000, 12000)), optimize=True))


class Target:
    """One server under attack: its editor's component id and decoding event, read from /config."""

    def __init__(self, url: str, payloads: Payloads) -> None:
        self.payloads = payloads
        self.http = httpx.Client(base_url=url, timeout=180, limits=httpx.Limits(max_connections=64))
        config = self.http.get("/config").json()
        self.editor = next(c["id"] for c in config["components"] if c["type"] == "imageeditor")
        self.split = next(d["id"] for d in config["dependencies"] if d["inputs"][:1] == [self.editor])

    def piece(self, blob: bytes, **fields: str | None) -> int:
        """POST one editor piece as Gradio's editor does; the status."""
        form = {"id": "v", "type": "background", "index": "null", "component_id": str(self.editor),
                "fn_name": "accept_blobs", "session_hash": "bench", **fields}
        return self.http.post("gradio_api/component_server/", data={k: v for k, v in form.items() if v is not None},
                              files={"file": ("background.png", blob, "image/png")}).status_code

    def event(self, value: dict[str, Any]) -> int:
        """Run the editor's decoding event through the queue with `value`; 200 when it succeeded, else 422."""
        session = os.urandom(6).hex()
        joined = self.http.post("gradio_api/queue/join", json={"data": [value, None], "fn_index": self.split,
                                                                "session_hash": session, "trigger_id": None})
        if joined.status_code != 200:
            return joined.status_code
        with self.http.stream("GET", f"gradio_api/queue/data?session_hash={session}") as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                    return 200 if message["success"] else 422
        return 599

    def upload(self, size: int, chunked: bool) -> int:
        """A one-file upload of `size` bytes, declared or chunked; the status."""
        head = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
                b"Content-Type: image/png\r\n\r\n")
        chunk = b"\0" * MIB

        def body() -> Iterator[bytes]:
            yield head
            for _ in range(size // MIB):
                yield chunk
            yield b"\r\n--b--\r\n"

        content: Any = body() if chunked else b"".join(body())
        return self.http.post("gradio_api/upload", content=content,
                              headers={"content-type": "multipart/form-data; boundary=b"}).status_code

    def bomb_file(self, bomb: bytes) -> int:
        answer = self.http.post("gradio_api/upload", files={"files": ("bomb.png", bomb, "image/png")})
        if answer.status_code != 200:
            return answer.status_code
        path = {"path": answer.json()[0], "meta": {"_type": "gradio.FileData"}}
        return self.event({"background": path, "layers": [], "composite": None})

    def bomb_piece(self, bomb: bytes, blob_id: str) -> int:
        self.piece(bomb, id=blob_id)
        self.piece(self.payloads.strokes, id=blob_id, type="layer", index="0")
        return self.event({"id": blob_id})


def attacks(target: Target, payloads: Payloads, burst: Burst) -> list[tuple[str, Callable[[], int]]]:
    """(name, call) for every request of one burst."""
    run: list[tuple[str, Callable[[], int]]] = []
    for k in range(burst.huge_index):
        run.append(("index 50,000,000", lambda k=k: target.piece(payloads.strokes, id=f"i{k}", type="layer",
                                                                  index="50000000")))
    for k in range(burst.large_pieces):
        run.append(("large piece", lambda k=k: target.piece(payloads.large, id=f"l{k}")))
    for k in range(burst.bombs):
        run.append(("bomb piece + event", lambda k=k: target.bomb_piece(payloads.bomb, f"b{k}")))
        run.append(("bomb file + event", lambda: target.bomb_file(payloads.bomb)))
    for _ in range(burst.uploads):
        run.append((f"{burst.uploads_mib} MB upload, declared", lambda: target.upload(burst.uploads_mib * MIB, False)))
        run.append((f"{burst.uploads_mib} MB upload, chunked", lambda: target.upload(burst.uploads_mib * MIB, True)))
    malformed = [{"component_id": None}, {"component_id": "1"}, {"index": "x", "type": "layer"}, {"fn_name": "ls"},
                 {"id": None}]
    for k in range(burst.malformed):
        run.append(("malformed piece", lambda k=k: target.piece(payloads.strokes, **malformed[k % len(malformed)])))
    return run


class PeakRss:
    """Samples a process's RSS every 10 ms in a thread until stopped; the highest seen, in MiB."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> float:
        return self.process.memory_info().rss / MIB

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def attempt(run: tuple[str, Callable[[], int]]) -> int:
    """The status of one attack; 599 when the server hung up or never answered."""
    try:
        return run[1]()
    except httpx.TransportError:
        return 599


def hit(url: str, pid: int, payloads: Payloads, burst: Burst, bursts: int = 2, settle_s: float = 3.0
        ) -> dict[str, Any]:
    """`bursts` bursts, one after the other, against a running server: RSS at rest, and after each burst its peak
    and what stayed (MiB); the answers by attack; whether the server still answers."""
    target = Target(url, payloads)
    target.piece(payloads.strokes, id="warm", type="layer", index="0")  # each code path once before "at rest"
    time.sleep(1.0)
    process = psutil.Process(pid)
    rest = process.memory_info().rss / MIB
    answers: dict[str, Counter[int]] = {}
    peaks, afters, seconds = [], [], []
    for _ in range(bursts):
        started = time.perf_counter()
        with PeakRss(pid) as peak, ThreadPoolExecutor(burst.workers) as pool:
            runs = attacks(target, payloads, burst)
            for (name, _), status in zip(runs, pool.map(attempt, runs), strict=True):
                answers.setdefault(name, Counter())[status] += 1
        seconds.append(time.perf_counter() - started)
        time.sleep(settle_s)
        peaks.append(peak.peak - rest)
        afters.append(process.memory_info().rss / MIB - rest)
    alive = target.http.get("/api/health").status_code == 200
    target.http.close()
    return {"rest_mib": round(rest, 1), "peak_growth_mib": round(max(peaks), 1),
            "after_growth_mib": [round(a, 1) for a in afters],
            "last_burst_added_mib": round(afters[-1] - afters[0], 1),
            "burst_s": round(max(seconds), 2), "alive": alive,
            "answers": {name: dict(sorted(c.items())) for name, c in answers.items()}}


@contextmanager
def server(root: Path) -> Iterator[tuple[str, int]]:
    """A fresh single-user server of the checkout at `root` on loopback, no model loaded; (url, pid)."""
    with tempfile.TemporaryDirectory(prefix="atelier-burst-") as data:
        env = {"GRADIO_TEMP_DIR": str(Path(data) / "gradio")}
        proc, url, _ = start_server(Path(data) / "data", "--no-warmup", root=root, env=env)
        try:
            yield url, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def export(rev: str, into: Path) -> Path:
    """The tree of `rev` (git archive) under `into`."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """min/median/max of each figure over the rounds, and every round's answers."""
    keys = ("rest_mib", "peak_growth_mib", "last_burst_added_mib", "burst_s")
    return {**{key: stats([r[key] for r in rounds]) for key in keys},
            "after_growth_mib": stats([max(r["after_growth_mib"]) for r in rounds]),
            "alive": all(r["alive"] for r in rounds),
            "answers": [r["answers"] for r in rounds]}


def main() -> None:
    """Run the sides interleaved, round by round, alternating which goes first; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", help="a git revision to run the same burst against, side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a smaller burst")
    parser.add_argument("--bursts", type=int, default=2, help="bursts one after the other on each server")
    parser.add_argument("--out", default="memory_burst")
    args = parser.parse_args()
    burst = SMOKE if args.smoke else Burst()
    payloads = Payloads.make()
    with tempfile.TemporaryDirectory(prefix="atelier-before-") as tree:
        sides = {"after": ROOT}
        if args.before:
            sides["before"] = export(args.before, Path(tree))
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                with server(sides[name]) as (url, pid):
                    results[name].append(hit(url, pid, payloads, burst, args.bursts))
                print(f"round {round_ + 1} {name}: {json.dumps(results[name][-1])}", flush=True)
    report = {"burst": burst.__dict__, "bursts": args.bursts, "rounds": args.rounds, "before": args.before,
              "python": sys.version.split()[0], "load_average": load_average(),
              "sides": {name: summary(rows) for name, rows in results.items()}}
    print(json.dumps(report["sides"], indent=2))
    print(f"saved {save(args.out, report)}")


if __name__ == "__main__":
    main()
