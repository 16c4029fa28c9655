"""Stopping what must stop on the thread engine: the ladder (flag, asynchronous exception,
abandon), per-task and executor-wide timeouts, and a task that hangs in a C call."""

from __future__ import annotations

import threading
import time

import pytest
import straggler as sg

pytestmark = pytest.mark.timeout(120)


def spins_on_first_attempt(i: int) -> tuple[int, int]:
    """A pure-Python loop that never heartbeats (the first attempt); later attempts return."""
    attempt = sg.current_attempt().attempt
    if attempt == 0:
        while True:
            pass
    return i, attempt


def spins_for_ever() -> None:
    while True:
        pass


def sleeps_in_c(seconds: float) -> None:
    time.sleep(seconds)  # one blocking C call: no bytecode runs until it returns


def beats_then_goes_silent(i: int) -> tuple[int, int]:
    attempt = sg.current_attempt().attempt
    sg.heartbeat(progress=0.1)
    if attempt == 0:
        time.sleep(600)
    return i, attempt


def test_a_spinning_attempt_times_out_and_its_retry_gives_the_value():
    with sg.SpeculativeExecutor(max_workers=2, policy=None, interval=0.02, stop_grace=0.1) as ex:
        f = ex.submit(sg.options(spins_on_first_attempt, timeout=0.3), 7)
        assert f.result(timeout=60) == (7, 1)
    stats = ex.stats()
    assert (stats.timeouts, stats.failures, stats.abandoned) == (1, 1, 0)  # stopped by the exception


def test_the_last_allowed_attempt_timing_out_fails_the_future_with_attempt_timeout():
    with sg.SpeculativeExecutor(max_workers=2, policy=None, interval=0.02, max_failures=2, stop_grace=0.1) as ex:
        f = ex.submit(sg.options(spins_for_ever, timeout=0.3))
        error = f.exception(timeout=60)
    assert isinstance(error, sg.AttemptTimeout) and isinstance(error, TimeoutError)
    assert (error.task, error.attempt, error.limit, error.seconds) == (0, 1, "timeout", 0.3)
    assert "timeout=0.3" in str(error)
    assert ex.stats().timeouts == 2 and ex.stats().failures == 2


def test_an_attempt_stuck_in_a_c_call_is_abandoned_and_shutdown_does_not_wait_for_it():
    before = {t.ident for t in threading.enumerate()}
    ex = sg.SpeculativeExecutor(max_workers=1, policy=None, interval=0.02, max_failures=2, stop_grace=0.1,
                                timeout=0.3)
    stuck = ex.submit(sleeps_in_c, 30)
    after = ex.submit(abs, -5)  # needs the only slot: the abandoned thread's replacement runs it
    assert isinstance(stuck.exception(timeout=60), sg.AttemptTimeout)
    assert after.result(timeout=60) == 5
    start = time.monotonic()
    ex.shutdown(wait=True)
    assert time.monotonic() - start < 10  # returns without waiting for the 30 s sleeps
    stats = ex.stats()
    assert stats.abandoned == 2 and stats.timeouts == 2
    left = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert all(t.daemon for t in left)  # only the abandoned sleepers, which never block exit


def test_heartbeat_timeout_stops_an_attempt_that_went_silent():
    with sg.SpeculativeExecutor(max_workers=2, policy=None, interval=0.02, stop_grace=0.1,
                                heartbeat_timeout=0.3) as ex:
        assert ex.submit(beats_then_goes_silent, 3).result(timeout=60) == (3, 1)
    assert ex.stats().timeouts == 1


_timed_out_seen = threading.Event()


def original_spins_copy_works(i: int) -> int:
    attempt = sg.current_attempt()
    if attempt.attempt == 0:
        while True:
            pass
    # Run on until the original has been timed out (polled by the test), so the copy is
    # running when that happens, however loaded the machine is.
    while not _timed_out_seen.wait(0.01):
        sg.heartbeat()
    return attempt.attempt


def test_a_running_copy_is_not_killed_because_the_original_timed_out():
    # Spark copies the spinning original after min_runtime=1 s; the original times out at
    # 1.7 s while the copy runs (its own limit is 1.7 s from its own start); the copy must not
    # be stopped with it. (Once the original is gone, the copy is its task's only attempt and
    # Spark's rule may copy it in turn when it has run 1 s: either may then win.)
    _timed_out_seen.clear()
    policy = sg.SparkPolicy(quantile=0.5, min_runtime=1.0, interval=0.02)
    with sg.SpeculativeExecutor(max_workers=4, policy=policy, interval=0.02, stop_grace=0.1) as ex:
        [f.result(timeout=30) for f in [ex.submit(abs, -i) for i in range(3)]]
        f = ex.submit(sg.options(original_spins_copy_works, timeout=1.7), 0)
        deadline = time.monotonic() + 30
        while ex.stats().timeouts == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        _timed_out_seen.set()
        winner = f.result(timeout=30)
    events = [e for e in ex.events() if e.task == 3]
    ends = {e.attempt: e.kind for e in events if e.kind != "start"}
    assert winner >= 1 and ends[winner] == "finish", events
    assert ends[0] == "fail" and ends[1] in ("finish", "kill"), events  # the copy ran on past the timeout
    stats = ex.stats()
    assert stats.timeouts == 1 and stats.failures == 1 and stats.speculative_wins == 1


def test_losers_that_never_heartbeat_are_stopped_by_the_ladder():
    # The loser spins in pure Python; the asynchronous exception stops it stop_grace after the win.
    policy = sg.SparkPolicy(quantile=0.5, min_runtime=0.1, interval=0.02)
    with sg.SpeculativeExecutor(max_workers=3, policy=policy, stop_grace=0.1) as ex:
        [f.result(timeout=30) for f in [ex.submit(abs, -i) for i in range(3)]]
        value = ex.submit(spins_on_first_attempt, 9).result(timeout=30)
        deadline = time.monotonic() + 10
        while ex.stats().killed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert value == (9, 1)
    stats = ex.stats()
    assert stats.killed == 1 and stats.failures == 0 and stats.abandoned == 0


@pytest.mark.parametrize("kwargs, error", [
    ({"timeout": 0}, ValueError), ({"timeout": -1}, ValueError), ({"timeout": "1s"}, TypeError),
    ({"heartbeat_timeout": float("nan")}, ValueError), ({"stop_grace": -0.1}, ValueError),
    ({"stop_grace": True}, TypeError),
])
def test_bad_timeouts_are_refused_naming_them(kwargs, error):
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        sg.SpeculativeExecutor(**kwargs)
    if name != "stop_grace":
        with pytest.raises(error, match=name):
            sg.options(abs, **kwargs)
