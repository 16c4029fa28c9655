"""The executor's per-task path: its Future (``TaskFuture``), the lock-free intake of plain
tasks, and the lock-free interrupt guard keep every guarantee of the slower paths they replace.

Each threaded test asserts a guarantee (every Future resolved exactly once, a submit refused
only after shutdown, an interrupt landing only in its attempt), never a timing.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest
import straggler as sg
from hypothesis import given, settings
from hypothesis import strategies as st
from straggler._core import interrupt_inside
from straggler._engines import threads as thread_engine
from straggler._engines._interrupt import Guard
from straggler._future import TaskFuture, _layout_matches

# --- TaskFuture: a concurrent.futures.Future in everything a caller sees ----------------------

_OPS = st.lists(
    st.sampled_from(["running", "result", "exception", "cancel", "done_cb", "probe"]),
    min_size=1, max_size=8,
)


def _drive(future: cf.Future, ops: list[str]) -> list:
    """Apply ``ops`` to ``future`` and record what each returned or raised."""
    seen = []
    calls: list = []
    for op in ops:
        try:
            if op == "running":
                seen.append(("running", future.set_running_or_notify_cancel()))
            elif op == "result":
                future.set_result(7)
                seen.append(("result", None))
            elif op == "exception":
                future.set_exception(ValueError("boom"))
                seen.append(("exception", None))
            elif op == "cancel":
                seen.append(("cancel", future.cancel()))
            elif op == "done_cb":
                future.add_done_callback(lambda f: calls.append(f.done()))
                seen.append(("done_cb", None))
            else:
                seen.append(("probe", future.done(), future.running(), future.cancelled()))
        except BaseException as exc:  # the stdlib's own errors (InvalidStateError, RuntimeError)
            seen.append((op, type(exc).__name__))
    seen.append(("callbacks", list(calls)))
    if future.done() and not future.cancelled():
        seen.append(("outcome", future.result(0) if future.exception(0) is None else repr(future.exception(0))))
    return seen


@settings(max_examples=300, deadline=None)
@given(ops=_OPS)
def test_a_task_future_answers_every_sequence_of_calls_as_the_standard_future_does(ops):
    assert _drive(TaskFuture(), ops) == _drive(cf.Future(), ops)


def test_this_python_has_the_future_layout_the_lean_future_relies_on():
    # If this fails, TaskFuture still works (it falls back to threading.Condition), only slower.
    assert _layout_matches()


@pytest.mark.parametrize("finish", ["result", "exception"])
def test_every_kind_of_waiter_wakes_when_a_task_future_finishes_in_another_thread(finish):
    for _ in range(50):
        _every_waiter_wakes_once(finish)


def _every_waiter_wakes_once(finish: str) -> None:
    future = TaskFuture()
    assert future.set_running_or_notify_cancel()
    seen: list = []
    ready = threading.Barrier(4)

    def by_result():
        ready.wait()
        try:
            seen.append(("result", future.result(timeout=10)))
        except ValueError as exc:
            seen.append(("result", str(exc)))

    def by_wait():
        ready.wait()
        done, _ = cf.wait([future], timeout=10, return_when=cf.FIRST_COMPLETED)
        seen.append(("wait", len(done)))

    def by_as_completed():
        ready.wait()
        seen.append(("as_completed", len(list(cf.as_completed([future], timeout=10)))))

    waiters = [threading.Thread(target=t) for t in (by_result, by_wait, by_as_completed)]
    for thread in waiters:
        thread.start()
    ready.wait()
    future.add_done_callback(lambda f: seen.append(("callback", f.done())))
    if finish == "result":
        future.set_result(3)
    else:
        future.set_exception(ValueError("boom"))
    for thread in waiters:
        thread.join(20)
        assert not thread.is_alive(), "a waiter was never woken"
    expected = 3 if finish == "result" else "boom"
    assert sorted(seen, key=str) == sorted(
        [("result", expected), ("wait", 1), ("as_completed", 1), ("callback", True)], key=str
    )


def test_cancel_and_claim_racing_from_two_threads_agree_on_one_winner():
    for _ in range(2000):
        _cancel_and_claim_race_once()


def _cancel_and_claim_race_once() -> None:
    future = TaskFuture()
    answers: dict = {}
    go = threading.Barrier(2)

    def cancel():
        go.wait()
        answers["cancel"] = future.cancel()

    def claim():
        go.wait()
        answers["claim"] = future.set_running_or_notify_cancel()

    threads = [threading.Thread(target=cancel), threading.Thread(target=claim)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Exactly one of them wins: a cancelled Future never runs, a running one never cancels.
    assert answers["cancel"] != answers["claim"]
    assert future.cancelled() == answers["cancel"]


# --- the intake: plain tasks submitted without the ledger's lock ---------------------------------


def test_stats_count_a_plain_task_as_soon_as_submit_returns():
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        gate = threading.Event()
        ex.submit(gate.wait, 10)  # the first plain task takes the locked path
        futures = [ex.submit(abs, -i) for i in range(50)]  # the rest the intake
        assert ex.stats().tasks == 51
        assert ex.stats("default").tasks == 51
        assert ex.stage_stats()["default"].tasks == 51
        gate.set()
        assert [f.result(10) for f in futures] == list(range(50))


def test_submits_racing_shutdown_from_many_threads_resolve_or_are_refused():
    for round_ in range(20):
        _submits_race_shutdown_once(round_)


def _submits_race_shutdown_once(round_: int) -> None:
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    ex.submit(abs, 0).result(10)  # the default stage is known: later plain submits take the intake
    accepted: list[cf.Future] = []
    refused = [0]
    lock = threading.Lock()
    start = threading.Barrier(5)

    def submitter():
        start.wait()
        for i in range(400):
            try:
                future = ex.submit(abs, -i)
            except RuntimeError:
                with lock:
                    refused[0] += 1
                return
            with lock:
                accepted.append(future)

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(0.001 * (round_ % 5))
    ex.shutdown(wait=round_ % 2 == 0, cancel_futures=round_ % 3 == 0)
    for thread in threads:
        thread.join(30)
    ex.shutdown(wait=True)
    done, not_done = cf.wait(accepted, timeout=30)
    assert not not_done, f"{len(not_done)} accepted Futures never resolved"
    for future in accepted:
        assert future.cancelled() or future.result() >= 0
    assert ex.stats().tasks == len(accepted) + 1
    with pytest.raises(RuntimeError):
        ex.submit(abs, 1)


def test_a_task_that_arrives_as_every_runner_parks_or_leaves_is_still_run(monkeypatch):
    # Runners park for IDLE seconds, then leave: submit one task at a time around both moments.
    monkeypatch.setattr(thread_engine.ThreadEngine, "IDLE", 0.002)
    with sg.SpeculativeExecutor(max_workers=2, policy=None) as ex:
        ex.submit(abs, 0).result(10)
        for i in range(600):
            assert ex.submit(abs, -i).result(10) == i, f"task {i} was stranded"
            if i % 7 == 0:
                time.sleep(0.002 * (i % 3))


def test_plain_and_sized_tasks_keep_their_submission_order_and_the_stage_rules():
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        gate = threading.Event()
        ex.submit(gate.wait, 10)
        plain = [ex.submit(abs, -i) for i in range(5)]
        sized = [ex.submit(sg.options(abs, stage="sized", num_tasks=2), -i) for i in range(2)]
        with pytest.raises(ValueError, match="num_tasks"):
            ex.submit(sg.options(abs, stage="sized"), 9)
        with pytest.raises(ValueError, match="num_tasks"):
            ex.submit(sg.options(abs, num_tasks=3), 9)  # the default stage has no size
        more = [ex.submit(abs, -i) for i in range(5)]
        gate.set()
        for f in plain + sized + more:
            f.result(10)
        starts = [e for e in ex.events() if e.kind == "start"]
        assert [e.task for e in starts] == list(range(13))  # ids in submission order
        assert ex.stats("sized").tasks == 2 and ex.stats("default").tasks == 11


def test_a_sized_default_stage_keeps_plain_submits_on_the_checked_path():
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        first = ex.submit(sg.options(abs, num_tasks=2), -1)
        second = ex.submit(abs, -2)
        with pytest.raises(ValueError, match="num_tasks"):
            ex.submit(abs, -3)
        assert (first.result(10), second.result(10)) == (1, 2)


def test_a_task_cancelled_while_in_the_intake_never_runs():
    ran = []
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        gate = threading.Event()
        ex.submit(gate.wait, 10)
        blocker = ex.submit(gate.wait, 10)
        futures = [ex.submit(ran.append, i) for i in range(20)]
        cancelled = [f for i, f in enumerate(futures) if i % 2 and f.cancel()]
        gate.set()
        blocker.result(10)
    assert len(cancelled) == 10
    assert sorted(ran) == [i for i in range(20) if i % 2 == 0]
    assert all(f.cancelled() for f in cancelled)


def test_an_executor_dropped_with_tasks_in_its_intake_still_runs_them():
    results = []
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    ex.submit(abs, 0).result(10)
    futures = [ex.submit(results.append, i) for i in range(300)]
    del ex
    done, not_done = cf.wait(futures, timeout=30)
    assert not not_done
    assert sorted(results) == list(range(300))


# --- the interrupt guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, word",
    [
        (({}, 1, 3), "exception must be an exception class"),
        (({}, 1, ValueError("an instance")), "exception must be an exception class"),
        (({}, "1", ValueError), "key must be an int"),
        (({}, 1.0, ValueError), "key must be an int"),
    ],
)
def test_interrupt_inside_refuses_bad_arguments_naming_them(args, word):
    with pytest.raises(TypeError, match=word):
        interrupt_inside(*args)


def test_interrupt_inside_sets_nothing_for_a_key_not_inside():
    assert interrupt_inside({}, 12345, ValueError) is False
    assert interrupt_inside({1: threading.get_ident()}, 2, ValueError) is False


class _Hit(BaseException):
    pass


def test_an_interrupt_lands_in_its_attempt_or_nowhere_however_it_races_the_return():
    guard = Guard()
    stop = threading.Event()
    outcome = {"in_attempt": 0, "returned": 0, "outside": 0}

    def spin(n):
        total = 0
        for i in range(n):
            total += i
        return total

    def runner():
        attempt_no = 0
        while not stop.is_set():
            attempt_no += 1
            attempt = object()
            current["attempt"] = attempt
            try:
                guard.call(attempt, spin, attempt_no % 50)
                outcome["returned"] += 1
            except _Hit:
                outcome["in_attempt"] += 1
            # Our own code between attempts: an interrupt landing here is the defect.
            try:
                for _ in range(20):
                    pass
            except _Hit:  # pragma: no cover - the failure this test looks for
                outcome["outside"] += 1

    current: dict = {}
    thread = threading.Thread(target=runner)
    thread.start()
    deadline = time.monotonic() + 3.0
    interrupts = 0
    while time.monotonic() < deadline:
        attempt = current.get("attempt")
        if attempt is not None and guard.interrupt(attempt, _Hit):
            interrupts += 1
    stop.set()
    thread.join(10)
    assert not thread.is_alive(), "the runner died of an interrupt meant for an attempt"
    assert outcome["outside"] == 0
    assert interrupts > 0 and outcome["in_attempt"] > 0
    assert not guard.inside
