"""Hostile: ``timeout=`` must mean what the docs say: an attempt that ran past it is stopped and
counts as a failure (AttemptTimeout), whatever the engine, and whether or not the attempt
noticed the stop request before it returned."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import straggler as sg

pytestmark = pytest.mark.timeout(60)


def _sleep_then(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def test_hostile_thread_attempt_overrunning_timeout_is_not_accepted() -> None:
    # The attempt runs 1.0 s with timeout=0.3; it returns before the ladder's step 2 (stop_grace).
    with sg.SpeculativeExecutor(max_workers=1, timeout=0.3, max_failures=1, stop_grace=5.0, interval=0.05,
                                policy=None) as ex:
        f = ex.submit(_sleep_then, 1.0)
        with pytest.raises(sg.AttemptTimeout):
            f.result(timeout=20)
        assert ex.stats().timeouts == 1


def test_hostile_attempt_that_swallows_cancel_and_returns_is_still_timed_out() -> None:
    def stubborn() -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            try:
                sg.heartbeat()
                time.sleep(0.01)
            except sg.AttemptCancelled:
                pass
        return "stubborn"

    with sg.SpeculativeExecutor(max_workers=1, timeout=0.2, max_failures=1, stop_grace=5.0, interval=0.05,
                                policy=None) as ex:
        f = ex.submit(stubborn)
        with pytest.raises(sg.AttemptTimeout):
            f.result(timeout=20)


def test_hostile_timeout_smaller_than_interval_is_enforced() -> None:
    # The scan runs once per interval; an attempt that ran 0.3 s against timeout=0.01 still
    # overran it when it ends.
    with sg.SpeculativeExecutor(max_workers=1, timeout=0.01, interval=1.0, max_failures=1, policy=None) as ex:
        f = ex.submit(_sleep_then, 0.3)
        with pytest.raises(sg.AttemptTimeout):
            f.result(timeout=20)


def test_hostile_process_pool_timeout_is_enforced() -> None:
    pool = concurrent.futures.ProcessPoolExecutor(1)
    try:
        with sg.SpeculativeExecutor(pool, timeout=0.3, max_failures=1, interval=0.05, policy=None) as ex:
            f = ex.submit(_sleep_then, 2.0)
            with pytest.raises(sg.AttemptTimeout):
                f.result(timeout=20)
            assert ex.stats().timeouts == 1
    finally:
        pool.shutdown(wait=True)
