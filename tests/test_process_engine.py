"""The process engine (``"processes"``) on real worker processes: losers and hung attempts are
killed and replaced, a worker killed from outside fails only its attempt, heartbeats and
progress reach the scheduler, and nothing is left behind (no live worker, no zombie).

Task functions live at module level so that spawned workers can import them. Nothing here
asserts a duration: where a bound matters, ``shutdown(wait=True)`` returning (under the test's
timeout) is the guarantee, since it waits for every runner, and a runner waits for its worker.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time

import pytest
import straggler as sg

pytestmark = [
    pytest.mark.timeout(180),
    # Python 3.12+ warns about fork() in a process with threads (the executor always has some);
    # the workers only touch their pipe and slot before running the task.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]

START_METHODS = ["spawn", "fork"]
QUICK = sg.SparkPolicy(min_runtime=0.2, interval=0.02)


@pytest.fixture(params=START_METHODS)
def engine(request):
    """The engine argument: "processes" (spawn) or a fork context."""
    return "processes" if request.param == "spawn" else multiprocessing.get_context("fork")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True  # reaped too: a zombie would still answer
    return False


def _burn(iterations: int) -> int:
    total = 0
    for k in range(iterations):
        total += k % 7
    return total


def cpu_bound(i: int, slow_task: int, pids: str) -> tuple[int, int]:
    """A pure-Python loop that never heartbeats; ``slow_task``'s first attempt never ends. The
    worker's pid goes into ``pids`` first, so the test can look for the process afterwards."""
    attempt = sg.current_attempt().attempt
    with open(os.path.join(pids, f"{i}-{attempt}"), "w") as f:
        f.write(str(os.getpid()))
    if i == slow_task and attempt == 0:
        while True:
            pass
    _burn(200_000)
    return i, attempt


def spins_for_ever() -> None:
    while True:
        pass


def sleeps_for_ever() -> None:
    time.sleep(10**6)  # one blocking C call


def spins_on_first_attempt(i: int) -> tuple[int, int]:
    attempt = sg.current_attempt().attempt
    if attempt == 0:
        while True:
            pass
    return i, attempt


def kills_its_worker_on_first_attempt(i: int) -> tuple[int, int]:
    """Writes a chunk into its staging directory, then (attempt 0) SIGKILLs its own process."""
    context = sg.current_attempt()
    with open(os.path.join(context.staging_dir, "chunk"), "w") as f:
        f.write(f"{i} {context.attempt}\n")
    if context.attempt == 0:
        os.kill(os.getpid(), signal.SIGKILL)
    return i, context.attempt


def kills_its_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def heartbeats_until_stopped(i: int, slow_task: int, marks: str) -> tuple[int, int]:
    """Heartbeats every 5 ms; ``slow_task``'s first attempt runs on until its heartbeat raises,
    and leaves a mark saying so."""
    attempt = sg.current_attempt().attempt
    steps = 10**6 if i == slow_task and attempt == 0 else 20
    try:
        for step in range(steps):
            sg.heartbeat(progress=(step + 1) / steps)
            time.sleep(0.005)
    except sg.AttemptCancelled:
        open(os.path.join(marks, f"{i}-{attempt}"), "w").close()
        raise
    return i, attempt


def describes_itself(i: int) -> tuple:
    context = sg.current_attempt()
    sg.heartbeat(progress=0.5, records=10)
    return i, context.task, context.attempt, context.speculative, context.staging_dir, os.getpid()


def beats_for(seconds: float) -> int:
    start = time.monotonic()
    beats = 0
    while time.monotonic() - start < seconds:
        sg.heartbeat(progress=min(1.0, (time.monotonic() - start) / seconds))
        beats += 1
        time.sleep(0.01)
    return beats


def returns_a_lock() -> threading.Lock:
    return threading.Lock()


def returns_pid() -> int:
    return os.getpid()


SLOW = 6


def with_progress(i: int) -> tuple[int, int]:
    """Tasks SLOW-2 (0.4 s), SLOW-1 (1 s) and SLOW (1 s) run side by side, heartbeating
    progress; SLOW's first attempt advances 10x slower: while it runs beside SLOW-1, only its
    progress rate tells it apart, and SLOW-2's end frees a slot for its copy."""
    attempt = sg.current_attempt().attempt
    seconds = {SLOW - 2: 0.4, SLOW - 1: 1.0, SLOW: 1.0}.get(i, 0.05)
    if i == SLOW and attempt == 0:
        seconds *= 10
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sg.heartbeat(progress=min(1.0, elapsed / seconds), records=int(elapsed * 1000))
        time.sleep(0.005)
    return i, attempt


# --- losers ---------------------------------------------------------------------------------


def test_cpu_bound_losers_processes_are_gone_once_shutdown_returns(engine, tmp_path):
    with sg.SpeculativeExecutor(engine, max_workers=2, policy=QUICK, stop_grace=0.2) as ex:
        futures = [ex.submit(cpu_bound, i, 3, str(tmp_path)) for i in range(8)]
        values = [f.result(timeout=120) for f in futures]
    assert [v[0] for v in values] == list(range(8))
    assert values[3][1] >= 1  # the copy won task 3
    losers = [e for e in ex.events() if e.kind == "kill"]
    assert (3, 0) in {(e.task, e.attempt) for e in losers}
    for event in losers:
        pid = int((tmp_path / f"{event.task}-{event.attempt}").read_text())
        assert _gone(pid), f"the loser's worker {pid} still runs"
    stats = ex.stats()
    assert stats.failures == 0 and stats.speculative_wins >= 1


def test_a_losers_heartbeat_in_a_worker_raises_attempt_cancelled(engine, tmp_path):
    # A long grace: the flag, read by heartbeat() in the worker, is what stops the loser.
    with sg.SpeculativeExecutor(engine, max_workers=2, policy=QUICK, stop_grace=60) as ex:
        values = list(ex.map(heartbeats_until_stopped, range(8), [3] * 8, [str(tmp_path)] * 8))
    assert values[3][1] >= 1
    assert os.listdir(tmp_path) == ["3-0"]
    assert ex.stats().killed >= 1 and ex.stats().failures == 0


# --- timeouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [spins_for_ever, sleeps_for_ever])
def test_a_hung_attempt_times_out_retries_then_fails_with_attempt_timeout(engine, fn):
    ex = sg.SpeculativeExecutor(engine, max_workers=2, policy=None, interval=0.02, max_failures=2,
                                stop_grace=0.1, timeout=0.5)
    future = ex.submit(fn)
    error = future.exception(timeout=120)
    ex.shutdown(wait=True)  # returns: the hung workers were killed
    assert isinstance(error, sg.AttemptTimeout)
    assert (error.task, error.attempt, error.limit, error.seconds) == (0, 1, "timeout", 0.5)
    stats = ex.stats()
    assert stats.timeouts == 2 and stats.failures == 2 and stats.abandoned == 0


def test_a_timed_out_attempt_is_retried_and_the_retry_gives_the_value(engine):
    with sg.SpeculativeExecutor(engine, max_workers=2, policy=None, interval=0.02, stop_grace=0.1) as ex:
        future = ex.submit(sg.options(spins_on_first_attempt, timeout=0.5), 7)
        assert future.result(timeout=120) == (7, 1)
    assert (ex.stats().timeouts, ex.stats().failures) == (1, 1)


def test_heartbeats_from_a_worker_keep_heartbeat_timeout_away():
    # Runs 3 s, three times its heartbeat_timeout: only heartbeats that reach the scheduler
    # keep it from timing out. (A 0.3 s limit failed under a load of 7 on 2 cores: a beat
    # every 10 ms still left a gap that long.)
    with sg.SpeculativeExecutor("processes", max_workers=1, policy=None, interval=0.02,
                                heartbeat_timeout=1.0, max_failures=1) as ex:
        assert ex.submit(beats_for, 3.0).result(timeout=120) > 0
        silent = ex.submit(sleeps_for_ever)
        assert isinstance(silent.exception(timeout=120), sg.AttemptTimeout)
    assert ex.stats().timeouts == 1


# --- workers that die -----------------------------------------------------------------------


def test_a_worker_killed_mid_task_is_retried_and_the_output_committed_once(engine, tmp_path):
    out = tmp_path / "out"
    with sg.SpeculativeExecutor(engine, max_workers=2, policy=None) as ex:
        futures = [ex.submit(sg.options(kills_its_worker_on_first_attempt, output=str(out / f"part-{i}")), i)
                   for i in range(3)]
        assert [f.result(timeout=120) for f in futures] == [(i, 1) for i in range(3)]
    assert sorted(os.listdir(out)) == ["part-0", "part-1", "part-2"]  # no staging left behind
    for i in range(3):
        assert os.listdir(out / f"part-{i}") == ["chunk"]
        assert (out / f"part-{i}" / "chunk").read_text() == f"{i} 1\n"
    stats = ex.stats()
    assert stats.failures == 3 and stats.tasks == 3


def test_a_worker_killed_on_every_attempt_fails_the_future_with_worker_died():
    with sg.SpeculativeExecutor("processes", max_workers=1, policy=None, max_failures=2) as ex:
        error = ex.submit(kills_its_worker).exception(timeout=120)
        assert ex.submit(abs, -3).result(timeout=120) == 3  # a fresh worker took the slot
    assert isinstance(error, sg.WorkerDied) and isinstance(error, RuntimeError)
    assert "task 0, attempt 1" in str(error) and "killed by SIGKILL" in str(error)
    assert error.exitcode == -signal.SIGKILL
    assert pickle.loads(pickle.dumps(error)).args == error.args


def test_an_idle_worker_killed_from_outside_is_replaced():
    with sg.SpeculativeExecutor("processes", max_workers=1, policy=None) as ex:
        first = ex.submit(returns_pid).result(timeout=120)
        os.kill(first, signal.SIGKILL)
        second = ex.submit(returns_pid).result(timeout=120)
    assert second != first
    assert ex.stats().failures == 0


# --- what a task sees -----------------------------------------------------------------------


def test_current_attempt_is_live_in_the_worker(engine, tmp_path):
    with sg.SpeculativeExecutor(engine, max_workers=2, policy=None) as ex:
        plain = ex.submit(describes_itself, 4).result(timeout=120)
        staged = ex.submit(sg.options(describes_itself, output=str(tmp_path / "o")), 5).result(timeout=120)
    assert plain[:5] == (4, 0, 0, False, None) and plain[5] != os.getpid()
    assert staged[1] == 1 and os.path.dirname(staged[4]) == str(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["o"]


def test_late_copies_from_progress_reported_in_workers():
    policy = sg.LatePolicy(min_runtime=0.05, speculative_cap=0.5, interval=0.01)
    with sg.SpeculativeExecutor("processes", max_workers=3, policy=policy) as ex:
        values = list(ex.map(with_progress, range(SLOW + 1)))
    assert [v[0] for v in values] == list(range(SLOW + 1))
    assert values[SLOW][1] >= 1  # a copy won the slow task
    assert ex.stats().speculative_wins >= 1


# --- errors that must not hang --------------------------------------------------------------


def test_an_unpicklable_function_fails_its_attempt_with_a_clear_error():
    with sg.SpeculativeExecutor("processes", max_workers=1, policy=None, max_failures=1) as ex:
        error = ex.submit(lambda: 1).exception(timeout=120)
        result_error = ex.submit(returns_a_lock).exception(timeout=120)
    assert isinstance(error, pickle.PicklingError)
    assert "task 0, attempt 0: cannot send fn, args or kwargs" in str(error)
    assert isinstance(result_error, pickle.PicklingError)
    assert "task 1, attempt 0: the worker process cannot send its result back" in str(result_error)


def test_an_unknown_engine_name_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="'threads', 'processes'"):
        sg.SpeculativeExecutor("process", max_workers=1)


def test_no_worker_outlives_shutdown(engine):
    before = {p.pid for p in multiprocessing.active_children()}
    with sg.SpeculativeExecutor(engine, max_workers=2, policy=None) as ex:
        pids = set(ex.map(returns_pid_of, range(8)))
    assert pids and not any(p.pid in pids for p in multiprocessing.active_children())
    assert all(_gone(pid) for pid in pids)
    assert {p.pid for p in multiprocessing.active_children()} <= before


def returns_pid_of(_: int) -> int:
    _burn(10_000)
    return os.getpid()
