"""The executor on a real Dask cluster: a LocalCluster of worker processes (dashboard off).

One cluster serves the module (2 workers, 1 thread each); the test that kills workers runs
last, and the LATE test adds a third worker for its own duration.
"""

from __future__ import annotations

import os
import time

import pytest

distributed = pytest.importorskip("distributed", reason="the Dask engine needs dask[distributed]")

import dask  # noqa: E402
import straggler as sg  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    # allowed-failures=1: a task survives one worker death (Dask reruns it under its key) and
    # the second one raises KilledWorker, so the kill test reaches both paths.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as local:
            yield local


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def _workers(client) -> list[str]:
    return sorted(client.scheduler_info(n_workers=-1)["workers"])


def on_slow_worker(i: int, slow: str, seconds: float = 0.05, factor: float = 60.0) -> tuple[int, str, int]:
    """``seconds`` of work, ``factor`` times longer on the worker at address ``slow``; beats
    every 10 ms so a losing attempt stops soon after the copy wins."""
    address = distributed.get_worker().address
    duration = seconds * (factor if address == slow else 1.0)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        sg.heartbeat(progress=min(1.0, elapsed / duration))
        time.sleep(0.01)
    return i, address, sg.current_attempt().attempt


def _run_job(client, policy, n: int, slow: str) -> tuple[float, list, sg.SpeculativeExecutor]:
    start = time.monotonic()
    with sg.SpeculativeExecutor(client, policy=policy) as ex:
        values = list(ex.map(on_slow_worker, range(n), [slow] * n))
    return time.monotonic() - start, values, ex


def test_copies_move_the_tail_off_a_slow_worker(client):
    slow, fast = _workers(client)
    n = 16
    policy = sg.SparkPolicy(min_runtime=0.1, interval=0.02)
    baseline, base_values, _ = _run_job(client, None, n, slow)
    speculative, values, ex = _run_job(client, policy, n, slow)

    # Complete and unique: one result per task, in order.
    assert [v[0] for v in values] == list(range(n)) == [v[0] for v in base_values]
    stats = ex.stats()
    assert stats.speculative >= 1 and stats.speculative_wins >= 1 and stats.failures == 0
    # Every copy ran on the fast worker, and the results the copies won came from there.
    events = ex.events()
    nodes = {e.node for e in events if e.kind == "start" and e.speculative}
    slow_nodes = {e.node for e in events if e.kind == "start" and not e.speculative and
                  values[e.task][1] == slow and e.attempt == 0}
    assert nodes and not (nodes & slow_nodes)
    assert all(address == fast for _, address, attempt in values if attempt > 0)
    # The slow worker's 3 s attempts set the baseline's end; with copies the job ends early.
    assert speculative < 0.6 * baseline, (speculative, baseline)


def test_heartbeats_and_current_attempt_work_inside_dask_tasks(client):
    def inside(i):
        ctx = sg.current_attempt()
        sg.heartbeat(progress=0.5, records=i)
        return ctx.task, ctx.attempt, ctx.speculative, ctx.node

    with sg.SpeculativeExecutor(client.get_executor(), policy=None) as ex:
        values = [f.result() for f in [ex.submit(inside, i) for i in range(6)]]
    nodes = {e.node for e in ex.events() if e.kind == "start"}
    assert [v[:3] for v in values] == [(i, 0, False) for i in range(6)]
    assert {v[3] for v in values} <= nodes  # the worker knows its node id as the executor does
    assert sg.current_attempt() is None  # nothing leaks into the caller's thread


def test_identical_submissions_run_as_separate_attempts(client):
    # Same function, same arguments: Dask would merge them into one key without per-attempt keys.
    with sg.SpeculativeExecutor(client, policy=None) as ex:
        futures = [ex.submit(os.getpid) for _ in range(8)]
        assert len({id(f) for f in futures}) == 8
        pids = [f.result() for f in futures]
    assert len(pids) == 8 and ex.stats().attempts == 8


def test_failures_are_retried_on_dask_and_the_last_error_reaches_the_future(client):
    def fails_first(i):
        if sg.current_attempt().attempt == 0:
            raise KeyError(i)
        return i

    def always_fails(i):
        raise ValueError(f"bad {i}")

    with sg.SpeculativeExecutor(client, policy=None, max_failures=2) as ex:
        assert list(ex.map(fails_first, range(4))) == [0, 1, 2, 3]
        doomed = ex.submit(always_fails, 9)
        with pytest.raises(ValueError, match="bad 9"):
            doomed.result()
    assert ex.stats().failures == 4 + 2


def test_bad_arguments_with_a_client(client):
    with pytest.raises(ValueError, match="max_workers"):
        sg.SpeculativeExecutor(client, max_workers=2)
    with pytest.raises(ValueError, match="retries"):
        sg.SpeculativeExecutor(client.get_executor(retries=2))


def paced(i: int, slow_task: int, seconds: float) -> tuple[int, int]:
    """Reports progress every 10 ms; ``slow_task``'s first attempt advances 10x slower."""
    attempt = sg.current_attempt()
    duration = seconds * (10 if i == slow_task and attempt.attempt == 0 else 1)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        sg.heartbeat(progress=min(1.0, elapsed / duration))
        time.sleep(0.01)
    return i, attempt.attempt


def test_late_copies_the_task_whose_reported_progress_lags(cluster, client):
    # LATE compares the progress rates of attempts running side by side and needs a free slot
    # for the copy while they run: three slots for two long tasks.
    cluster.scale(3)
    client.wait_for_workers(3)
    try:
        # min_runtime well past the progress reports' latency (p95 ~35 ms, seen up to ~0.1 s
        # under load): an attempt whose first report is still in flight has no rate yet.
        policy = sg.LatePolicy(min_runtime=0.4, speculative_cap=0.5, interval=0.02)
        with sg.SpeculativeExecutor(client, policy=policy) as ex:
            futures = [ex.submit(paced, i, 1, 0.8) for i in range(2)]
            values = [f.result() for f in futures]
        assert values == [(0, 0), (1, 1)], ex.events()  # the copy of task 1 won
        stats = ex.stats()
        assert (stats.speculative, stats.speculative_wins, stats.failures) == (1, 1, 0), ex.events()
        starts = [e for e in ex.events() if e.kind == "start" and e.task == 1]
        assert [e.speculative for e in starts] == [False, True] and starts[0].node != starts[1].node
    finally:
        cluster.scale(2)
        client.wait_for_workers(2)


def dies_twice(i: int, marker_dir: str) -> tuple[int, int]:
    """Task 3 kills its worker process the first two times it runs; the others sleep a bit."""
    if i == 3:
        for name in ("first", "second"):
            marker = os.path.join(marker_dir, name)
            if not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
    time.sleep(0.05)
    return i, sg.current_attempt().attempt


def test_killed_workers_lose_no_result_and_count_no_failure(client, tmp_path):
    # Runs last in the module: it costs the cluster two worker processes (the nannies restart them).
    with sg.SpeculativeExecutor(client, policy=sg.SparkPolicy(min_runtime=0.5, interval=0.05)) as ex:
        values = list(ex.map(dies_twice, range(12), [str(tmp_path)] * 12, timeout=90))
    assert [v[0] for v in values] == list(range(12))
    # First death: Dask reran the key; second: KilledWorker, and the executor queued attempt 1.
    assert values[3][1] == 1
    stats = ex.stats()
    assert stats.failures == 0 and stats.lost >= 1
    ends = [e.kind for e in ex.events() if e.task == 3 and e.kind != "start"]
    assert ends.count("finish") == 1 and "fail" not in ends
    # Attempt 0 ends as "lost" when its loss is seen first; when the executor had already
    # started attempt 1 elsewhere (the original sat unstarted behind the dead worker) and that
    # one won, attempt 0's end comes after the win and is a kill. Nothing else may follow.
    assert set(ends[ends.index("finish") + 1:]) <= {"kill"}
    assert "lost" in ends or ends[-1] == "kill"
    client.wait_for_workers(2)


def steady(i: int, slow_task: int) -> tuple[int, int, bool]:
    """0.2 s of work in 20 ms steps with a heartbeat after each; ``slow_task``'s first attempt
    takes 8 s (its copy has room to win even on a loaded machine)."""
    attempt = sg.current_attempt()
    steps = 400 if i == slow_task and attempt.attempt == 0 else 10
    for step in range(steps):
        time.sleep(0.02)
        sg.heartbeat(progress=(step + 1) / steps)
    return i, attempt.attempt, attempt.speculative


def chunks_into_staging(i: int, chunks: int) -> int:
    """Writes ``chunks`` files into its staging directory, 0.1 s apart."""
    attempt = sg.current_attempt()
    for k in range(chunks):
        with open(os.path.join(attempt.staging_dir, f"chunk-{k}-{os.getpid()}"), "w") as f:
            f.write(f"{i}\n")
        time.sleep(0.1)
    return i


@pytest.fixture
def own_cluster():
    """A cluster of its own for tests that kill workers again and again (the nannies restart
    them); Dask reruns a task whose worker died up to 20 times before giving up."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 20}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as local, distributed.Client(local) as c:
            c.wait_for_workers(2)
            c.straggler_test_cluster = local  # for _kill_a_worker's fallback
            yield c


def _kill_a_worker(client, index: int) -> None:
    import signal

    # Only workers the scheduler lists as running: a broadcast to one that just died waits for
    # the connect timeout.
    pids = client.run(os.getpid, on_error="ignore")
    pids = {a: p for a, p in pids.items() if isinstance(p, int)}
    address = sorted(pids)[index % len(pids)]
    os.kill(pids[address], signal.SIGKILL)
    start = time.monotonic()
    scaled = False
    # The nanny starts a new worker process; wait until the scheduler counts two again. Now and
    # then a nanny never restarts its worker (seen with no executor at all, about one kill in
    # twenty under load): then the cluster gets a new worker instead.
    while time.monotonic() - start < 120:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if len(workers) >= 2 and address not in workers:
            return
        cluster = getattr(client, "straggler_test_cluster", None)
        if not scaled and cluster is not None and time.monotonic() - start > 15:
            cluster.scale(len(cluster.worker_spec) + 1)
            scaled = True
        time.sleep(0.05)
    raise AssertionError("the killed worker was not replaced within 120 s")


def _ensure_workers(client, n: int) -> None:
    """Wait until the cluster runs ``n`` workers; if it stays short for 15 s, give it new ones."""
    start = time.monotonic()
    scaled = False
    while time.monotonic() - start < 120:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        running = [w for w in workers.values() if w.get("status", "running") == "running"]
        if len(running) >= n:
            return
        cluster = client.straggler_test_cluster
        if not scaled and time.monotonic() - start > 15:
            cluster.scale(len(cluster.worker_spec) + n - len(running))
            scaled = True
        time.sleep(0.1)
    raise AssertionError(f"the cluster did not get back to {n} workers within 120 s: {workers!r}")


@pytest.mark.timeout(300)
def test_ten_worker_deaths_in_one_job_leave_speculation_running(own_cluster):
    client = own_cluster
    calls = []
    policy = sg.SparkPolicy(min_runtime=0.5, interval=0.05)
    ex = sg.SpeculativeExecutor(client, policy=policy)
    try:
        futures = [ex.submit(steady, i, -1) for i in range(150)]
        for f in futures:
            f.add_done_callback(calls.append)
        for k in range(10):
            # A worker killed while it still starts up can leave its nanny unable to restart it:
            # every kill hits a worker that has been up for a while.
            time.sleep(1.0)
            _kill_a_worker(client, k)
        assert [f.result(timeout=120)[0] for f in futures] == list(range(150))
        deaths = ex.stats().lost
        # A copy needs a second worker. Now and then a replaced worker dies again or its nanny
        # gives up (a CI run ended this phase with one worker, so no copy had anywhere to go):
        # the guarantee under test is ours, not the nannies', so make sure two are up. (While
        # nothing runs, the engine's view of the cluster may be stale: the first check with a
        # task running re-reads it.)
        _ensure_workers(client, 2)
        # After the last death: a straggler (submitted first, so it starts at once rather than
        # wait in a worker's queue), and a copy of it must win.
        late = [ex.submit(steady, 100 + i, 100) for i in range(8)]
        values = [f.result(timeout=120) for f in late]
        engine = ex._engine
        state = (ex.stats(), engine.nthreads, dict(engine.running_on), dict(engine.copies_on),
                 engine.unstarted_originals, len(engine.by_key), ex._ledger.pending, ex._ledger.active,
                 sorted(client.scheduler_info(n_workers=-1)["workers"]), engine.addresses,
                 [e for e in ex.events() if e.task == 100])
        assert values[0][0] == 100 and values[0][1] >= 1 and values[0][2], state
        assert ex._scheduler.thread.is_alive()
    finally:
        ex.shutdown(wait=True)
    assert sorted(map(id, calls)) == sorted(map(id, futures))  # each resolved once
    stats = ex.stats()
    assert stats.failures == 0 and stats.speculative_wins >= 1 and deaths >= 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize("round_", range(3))
def test_a_rerun_after_a_worker_death_commits_only_its_own_files(own_cluster, tmp_path, round_):
    # Issue: Dask reran the key into the staging directory the dead run had half filled, and
    # both runs' chunks were committed. Every execution now writes into its own directory.
    client = own_cluster
    with sg.SpeculativeExecutor(client, policy=None) as ex:
        futures = [ex.submit(sg.options(chunks_into_staging, output=str(tmp_path / f"out-{i}")), i, 10)
                   for i in range(2)]
        time.sleep(0.3)
        _kill_a_worker(client, round_)
        assert [f.result(timeout=120) for f in futures] == [0, 1]
    assert sorted(os.listdir(tmp_path)) == ["out-0", "out-1"]  # no staging directory left behind
    for i in range(2):
        files = os.listdir(tmp_path / f"out-{i}")
        assert len(files) == 10, files
        assert len({name.rsplit("-", 1)[1] for name in files}) == 1  # all from one execution


def spins_unless_retried(i: int) -> tuple[int, int]:
    """The first attempt spins in pure Python and never heartbeats; later attempts return."""
    attempt = sg.current_attempt().attempt
    if attempt == 0:
        while True:
            pass
    return i, attempt


def test_a_timed_out_attempt_is_stopped_inside_its_worker_and_retried(client):
    with sg.SpeculativeExecutor(client, policy=None, interval=0.02, stop_grace=0.2) as ex:
        f = ex.submit(sg.options(spins_unless_retried, timeout=0.5), 4)
        assert f.result(timeout=60) == (4, 1)
        # The worker's thread is free again: the async exception ended the spinning attempt.
        assert list(ex.map(abs, [-1, -2, -3], timeout=60)) == [1, 2, 3]
    stats = ex.stats()
    assert stats.timeouts == 1 and stats.failures == 1


def test_a_loser_that_never_heartbeats_is_stopped_inside_its_worker(client):
    policy = sg.SparkPolicy(quantile=0.5, min_runtime=0.2, interval=0.02)
    with sg.SpeculativeExecutor(client, policy=policy, stop_grace=0.2) as ex:
        assert list(ex.map(abs, [-1, -2, -3], timeout=60)) == [1, 2, 3]
        assert ex.submit(spins_unless_retried, 9).result(timeout=60) == (9, 1)
        deadline = time.monotonic() + 30
        while ex.stats().killed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = ex.stats()
    assert stats.killed == 1 and stats.failures == 0 and stats.speculative_wins == 1


def resource_restrictions() -> dict:
    worker = distributed.get_worker()
    return dict(worker.state.tasks[worker.get_current_task()].resource_restrictions or {})


def test_task_resources_are_asked_for_only_where_the_workers_declare_them(client):
    with sg.SpeculativeExecutor(client, policy=None) as ex:  # workers that declare no resources
        assert ex.submit(sg.options(resource_restrictions, cpus=2, gpus=1)).result(timeout=60) == {}
    # An in-process worker (quick to start) that declares CPU and GPU.
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                                  resources={"CPU": 2, "GPU": 1}) as local, distributed.Client(local) as c:
        with sg.SpeculativeExecutor(c, policy=None) as ex:
            asked = ex.submit(sg.options(resource_restrictions, cpus=2, gpus=1, memory=2**20)).result(timeout=60)
            default = ex.submit(resource_restrictions).result(timeout=60)
    assert asked == {"CPU": 2, "GPU": 1}  # no worker declares MEMORY: not asked for
    assert default == {}  # a task without options asks for nothing
