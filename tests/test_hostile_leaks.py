"""Hostile: shutdown(wait=True) leaves no thread of ours behind (but an abandoned one)."""

from __future__ import annotations

import threading
import time

import pytest
import straggler as sg

pytestmark = pytest.mark.timeout(60)


def test_hostile_no_stopper_thread_after_shutdown_wait() -> None:
    def loser_then_winner() -> int:
        ctx = sg.current_attempt()
        for _ in range(200 if ctx.attempt == 0 else 5):
            sg.heartbeat()
            time.sleep(0.01)
        return ctx.attempt

    before = set(threading.enumerate())
    ex = sg.SpeculativeExecutor(max_workers=4, interval=0.02, stop_grace=5.0,
                                policy=sg.SparkPolicy(min_runtime=0.05, quantile=0.5, multiplier=1.5))
    futs = [ex.submit(loser_then_winner) for _ in range(3)] + [ex.submit(time.sleep, 0.05) for _ in range(6)]
    for f in futs:
        f.result(timeout=30)
    ex.shutdown(wait=True)
    assert ex.stats().killed >= 1  # the ladder was used
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert left == [], f"threads still alive after shutdown(wait=True): {left}"
