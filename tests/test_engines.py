"""One behaviour suite, run on every engine: the built-in threads, the built-in process engine
(spawn), a spawn ``ProcessPoolExecutor``, a Dask ``LocalCluster`` (2 worker processes of 1
thread each) and a local Ray runtime of 2 CPUs (one node).

The guarantees checked here hold whatever runs the attempts: one Future per task, resolved
once; retries up to ``max_failures``; a losing copy is never a failure; outputs committed
exactly once; ``cancel`` and ``shutdown(cancel_futures=True)``; ``stats``, ``events`` and the
timeline agree. Task functions live at module level so that worker processes can import them.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time

import pytest
import straggler as sg
from straggler._records import EVENT_KINDS

pytestmark = pytest.mark.timeout(180)

ENGINES = ["threads", "processes-engine", "process-pool", "dask", "ray"]


@pytest.fixture(scope="module")
def process_pool():
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="the Dask engine needs dask[distributed]")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        yield client


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray", reason="the Ray engine needs ray")
    from _ray_util import started_ray

    with started_ray(ray, __name__):
        yield ray


@pytest.fixture(params=ENGINES)
def make(request):
    """make(policy=..., **kwargs) -> a SpeculativeExecutor on the engine under test (2 slots)."""
    name = request.param
    if name == "threads":
        def build(**kwargs):
            return sg.SpeculativeExecutor(max_workers=2, **kwargs)
    elif name == "processes-engine":
        def build(**kwargs):
            return sg.SpeculativeExecutor("processes", max_workers=2, **kwargs)
    elif name == "process-pool":
        pool = request.getfixturevalue("process_pool")

        def build(**kwargs):
            return sg.SpeculativeExecutor(pool, **kwargs)
    elif name == "dask":
        client = request.getfixturevalue("dask_client")

        def build(**kwargs):
            return sg.SpeculativeExecutor(client, **kwargs)
    else:
        request.getfixturevalue("ray_runtime")

        def build(**kwargs):
            return sg.SpeculativeExecutor("ray", **kwargs)
    build.engine = name
    return build


QUICK = sg.SparkPolicy(min_runtime=0.2, interval=0.02)


def square(i: int) -> int:
    return i * i


def flaky(i: int) -> tuple[int, int]:
    attempt = sg.current_attempt().attempt
    if attempt == 0:
        raise KeyError(f"task {i} attempt {attempt}")
    return i, attempt


def always_fails(i: int) -> None:
    raise ValueError(f"task {i} attempt {sg.current_attempt().attempt}")


def straggles(i: int, slow_task: int, write: bool = False) -> tuple[int, int, bool]:
    """50 ms of work in 10 ms steps with a heartbeat after each; ``slow_task``'s first attempt
    takes 2 s. With ``write``, five chunk files go into the staging directory as it works."""
    attempt = sg.current_attempt()
    steps = 200 if i == slow_task and attempt.attempt == 0 else 5
    for step in range(steps):
        if write and step < 5:
            with open(os.path.join(attempt.staging_dir, f"chunk-{step}"), "w") as f:
                f.write(f"{i} {attempt.attempt}\n")
        time.sleep(0.01)
        sg.heartbeat(progress=(step + 1) / steps)
    return i, attempt.attempt, attempt.speculative


def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def raises_its_own_cancelled_error() -> None:
    raise cf.CancelledError("the task's own")


def test_every_future_resolves_once_with_its_value(make):
    calls: list[cf.Future] = []
    lock = threading.Lock()

    def record(future: cf.Future) -> None:
        with lock:
            calls.append(future)

    with make(policy=QUICK) as ex:
        futures = [ex.submit(square, i) for i in range(30)]
        for f in futures:
            f.add_done_callback(record)
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(30)]
    assert sorted(map(id, calls)) == sorted(map(id, futures))  # each callback ran once
    stats = ex.stats()
    assert stats.tasks == 30 and stats.failures == 0 and stats.attempts >= 30


def test_failures_are_retried_and_the_last_error_reaches_the_future(make):
    with make(policy=None, max_failures=2) as ex:
        assert list(ex.map(flaky, range(4))) == [(i, 1) for i in range(4)]
        doomed = ex.submit(always_fails, 9)
        with pytest.raises(ValueError, match="task 9 attempt 1"):
            doomed.result(timeout=60)
    assert ex.stats().failures == 4 + 2


def test_a_straggler_is_copied_the_copy_wins_and_the_loser_is_no_failure(make):
    with make(policy=QUICK) as ex:
        values = list(ex.map(straggles, range(8), [3] * 8))
    assert [v[0] for v in values] == list(range(8))
    assert values[3][1] >= 1 and values[3][2]  # task 3's result came from a copy
    stats = ex.stats()
    assert stats.speculative_wins >= 1 and stats.failures == 0
    assert stats.killed >= 1  # the straggling first attempt: stopped or discarded, never failed


def test_outputs_are_committed_exactly_once(make, tmp_path):
    with make(policy=QUICK) as ex:
        futures = [ex.submit(sg.options(straggles, output=str(tmp_path / f"part-{i}")), i, 2, True)
                   for i in range(6)]
        values = [f.result(timeout=60) for f in futures]
    assert values[2][2]  # the copy won task 2
    assert sorted(os.listdir(tmp_path)) == [f"part-{i}" for i in range(6)]  # no staging left behind
    for i, (_, attempt, _) in enumerate(values):
        chunks = sorted(os.listdir(tmp_path / f"part-{i}"))
        assert chunks == [f"chunk-{k}" for k in range(5)]
        # Every chunk from the winning attempt alone.
        assert {(tmp_path / f"part-{i}" / c).read_text() for c in chunks} == {f"{i} {attempt}\n"}


def test_cancel_and_shutdown_cancel_futures_cancel_only_unstarted_tasks(make):
    ex = make(policy=None)
    running = [ex.submit(sleeps, 0.5) for _ in range(2)]
    # Both slots busy (a process engine first starts its workers: wait, do not guess how long).
    deadline = time.monotonic() + 60
    while not all(f.running() or f.done() for f in running) and time.monotonic() < deadline:
        time.sleep(0.01)
    waiting = [ex.submit(square, i) for i in range(20)]
    assert waiting[-1].cancel()
    ex.shutdown(wait=True, cancel_futures=True)
    assert [f.result() for f in running] == [0.5, 0.5]
    assert all(f.done() for f in waiting)
    cancelled = [f for f in waiting if f.cancelled()]
    assert waiting[-1] in cancelled and len(cancelled) >= 10
    for f in waiting:
        if not f.cancelled():
            assert f.result() == waiting.index(f) ** 2
    assert ex.stats().attempts == 2 + len(waiting) - len(cancelled)
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.submit(square, 1)


def test_stats_events_and_the_timeline_agree(make, tmp_path):
    with make(policy=QUICK) as ex:
        list(ex.map(straggles, range(8), [5] * 8))
    events = ex.events()
    stats = ex.stats()
    assert {e.kind for e in events} <= set(EVENT_KINDS)
    starts = [(e.task, e.attempt) for e in events if e.kind == "start"]
    ends = [(e.task, e.attempt) for e in events if e.kind != "start"]
    assert sorted(starts) == sorted(ends) and len(starts) == stats.attempts
    assert sum(e.kind == "finish" for e in events) == stats.tasks == 8
    assert sum(e.kind == "start" and e.speculative for e in events) == stats.speculative >= 1
    pytest.importorskip("matplotlib")
    sg.plot_timeline(ex, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_a_tasks_own_cancelled_error_reaches_its_future_as_itself(make):
    with make(policy=None, max_failures=1) as ex:
        future = ex.submit(raises_its_own_cancelled_error)
        error = future.exception(timeout=60)
    assert type(error) is cf.CancelledError and "the task's own" in str(error)
    assert not future.cancelled() and ex.stats().failures == 1
