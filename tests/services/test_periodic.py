"""Background upkeep keeps its rhythm through a failing round and stops when told."""

from __future__ import annotations

import threading

from services.periodic import Periodic


def test_a_failing_round_is_logged_and_the_next_one_runs() -> None:
    rounds: list[int] = []
    third = threading.Event()

    def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("a hiccup")
        if len(rounds) == 3:
            third.set()

    periodic = Periodic("test-upkeep", 0.01, work)
    periodic.start()
    assert third.wait(30)
    periodic.stop()
    assert not any(t.name == "test-upkeep" for t in threading.enumerate())  # stop() ended the thread
