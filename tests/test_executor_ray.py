"""The executor on a real Ray cluster of three nodes on this machine (``ray.cluster_utils.Cluster``:
a head and two workers, 1 CPU each; fast health checks so that a removed node is noticed in
about a second). One cluster serves the module; the test that removes a node adds it first.

The behaviour suite (tests/test_engines.py) runs on a one-node runtime; here: placement by
node, node loss, the stop ladder, timeouts, per-task resources and bad input.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs ray")

import straggler as sg  # noqa: E402
from _ray_util import by_value  # noqa: E402

pytestmark = pytest.mark.timeout(120)

POLICY = sg.SparkPolicy(min_runtime=0.1, interval=0.02)


@pytest.fixture(scope="module")
def cluster():
    import warnings

    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Ray notices a dead node by missed health checks: 200 ms apart, 3 missed.
        system = {"health_check_period_ms": 200, "health_check_failure_threshold": 3,
                  "health_check_initial_delay_ms": 0}
        local = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "object_store_memory": 100 * 2**20, "_system_config": system})
        for _ in range(2):
            local.add_node(num_cpus=1, object_store_memory=100 * 2**20)
        ray.init(address=local.address, log_to_driver=False)
        local.wait_for_nodes()
    by_value(ray, __name__)
    try:
        yield local
    finally:
        ray.shutdown()
        local.shutdown()


def _node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def on_slow_node(i: int, slow: str, seconds: float = 0.05, factor: float = 200.0) -> tuple[int, str, int]:
    """``seconds`` of work, ``factor`` times longer on the node ``slow``; beats every 10 ms."""
    node = _node_id()
    duration = seconds * (factor if node == slow else 1.0)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        sg.heartbeat(progress=min(1.0, elapsed / duration))
        time.sleep(0.01)
    return i, node, sg.current_attempt().attempt


def beats_for(seconds: float, i: int, longer_on: str = "") -> tuple[int, str]:
    """Beats every 10 ms for ``seconds``; for 60 s on the node ``longer_on``."""
    if _node_id() == longer_on:
        seconds = 60.0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        sg.heartbeat()
        time.sleep(0.01)
    return i, _node_id()


def sleeps_first(i: int, pid_dir: str, seconds: float = 60.0) -> tuple[int, int]:
    """The first attempt of task 0 sleeps ``seconds`` without a heartbeat (it records its
    worker's pid first); every other attempt returns at once."""
    attempt = sg.current_attempt().attempt
    if i == 0 and attempt == 0:
        with open(os.path.join(pid_dir, "loser"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(seconds)
    else:
        time.sleep(0.05)
    return i, attempt


def hangs_first(i: int) -> tuple[int, int]:
    attempt = sg.current_attempt().attempt
    if attempt == 0:
        time.sleep(60)
    return i, attempt


def hangs(i: int) -> None:
    time.sleep(60)


def spins_first() -> int:
    attempt = sg.current_attempt().attempt
    if attempt == 0:
        while True:
            pass
    return attempt


def assigned() -> dict:
    return dict(ray.get_runtime_context().get_assigned_resources())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent reaps it later).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _nodes(cluster) -> list[str]:
    return sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])


def test_copies_of_a_slow_nodes_stragglers_run_on_other_nodes_and_win(cluster):
    slow = cluster.list_all_nodes()[1].node_id
    n = 12
    with sg.SpeculativeExecutor("ray", policy=POLICY) as ex:
        futures = [ex.submit(on_slow_node, i, slow) for i in range(n)]
        values = [f.result(timeout=60) for f in futures]
    assert [v[0] for v in values] == list(range(n))
    stats = ex.stats()
    assert stats.speculative >= 1 and stats.speculative_wins >= 1 and stats.failures == 0
    engine = ex._engine
    events = ex.events()
    on_slow = {e.task for e in events if e.kind == "start" and e.attempt == 0 and engine.describe_node(e.node) == slow}
    copies = [e for e in events if e.kind == "start" and e.speculative and e.task in on_slow]
    # The slow node's stragglers were copied, never onto the slow node. (Spark's rule knows no
    # slow nodes: on a loaded machine a fast node's attempt may straggle and be copied anywhere.)
    assert on_slow and copies and all(engine.describe_node(e.node) != slow for e in copies)
    # Every task whose original ran on the slow node was won by a copy elsewhere.
    assert all(node != slow for _, node, _ in values), values
    assert any(attempt > 0 for _, _, attempt in values)
    # The node numbers the tasks saw are the executor's.
    assert {engine.describe_node(e.node) for e in ex.events() if e.kind == "start"} <= set(_nodes(cluster))


def test_a_node_removed_mid_job_loses_no_task_and_fails_none(cluster):
    victim = cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    n = 24
    with sg.SpeculativeExecutor("ray", policy=POLICY) as ex:
        # Long on the victim, so that an attempt still runs there when it is removed.
        futures = [ex.submit(beats_for, 0.3, i, victim.node_id) for i in range(n)]
        engine = ex._engine
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Once an attempt has started on the victim, remove it.
            if any(e.kind == "start" and engine.describe_node(e.node) == victim.node_id for e in ex.events()):
                break
            time.sleep(0.01)
        else:
            pytest.fail("no attempt started on the node to remove")
        cluster.remove_node(victim)
        values = [f.result(timeout=60) for f in futures]
        assert ex._scheduler.thread.is_alive()
    assert [v[0] for v in values] == list(range(n))
    assert all(v[1] != victim.node_id for v in values)  # no result from the dead node
    stats = ex.stats()
    assert stats.lost >= 1 and stats.failures == 0 and stats.tasks == n
    ends = [e for e in ex.events() if e.kind != "start"]
    assert sum(e.kind == "finish" for e in ends) == n  # each task finished once


def test_a_loser_that_never_heartbeats_is_cancelled_and_its_worker_ended(cluster, tmp_path):
    with sg.SpeculativeExecutor("ray", policy=POLICY, stop_grace=0.2) as ex:
        values = list(ex.map(sleeps_first, range(6), [str(tmp_path)] * 6))
    assert values[0] == (0, 1) and [v[0] for v in values] == list(range(6))
    stats = ex.stats()
    assert stats.speculative_wins == 1 and stats.killed == 1 and stats.failures == 0
    loser = [e for e in ex.events() if e.task == 0 and e.attempt == 0 and e.kind != "start"]
    assert [e.kind for e in loser] == ["kill"]
    # time.sleep ignores ray.cancel's KeyboardInterrupt: the ladder's last step ended its worker.
    pid = int((tmp_path / "loser").read_text())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_ray_cancel_stops_a_spinning_attempt_at_the_second_step(cluster, caplog):
    # A pure-Python loop takes ray.cancel's KeyboardInterrupt: no force needed.
    with caplog.at_level(logging.INFO, logger="straggler"):
        # A grace long enough for the interrupt to land on a loaded machine.
        with sg.SpeculativeExecutor("ray", policy=None, timeout=0.3, stop_grace=3.0, max_failures=2) as ex:
            assert ex.submit(spins_first).result(timeout=60) == 1
    stats = ex.stats()
    assert stats.timeouts == 1 and stats.failures == 1
    assert not any("forcing" in r.getMessage() for r in caplog.records)


def test_a_timed_out_attempt_is_retried_and_the_retry_gives_the_value(cluster):
    with sg.SpeculativeExecutor("ray", policy=None, stop_grace=0.2) as ex:
        value = ex.submit(sg.options(hangs_first, timeout=0.5), 7).result(timeout=60)
    assert value == (7, 1)
    stats = ex.stats()
    assert stats.timeouts == 1 and stats.failures == 1 and stats.tasks == 1


def test_the_last_timed_out_attempt_fails_the_future_with_attempt_timeout(cluster):
    with sg.SpeculativeExecutor("ray", policy=None, timeout=0.3, stop_grace=0.2, max_failures=2) as ex:
        error = ex.submit(hangs, 1).exception(timeout=60)
    assert isinstance(error, sg.AttemptTimeout) and error.limit == "timeout" and error.attempt == 1
    assert ex.stats().timeouts == 2


def silent_first(i: int) -> tuple[int, int]:
    """The first attempt beats once and then goes silent (a pure-Python loop); a retry beats
    every 20 ms for 1.5 s, longer than the heartbeat timeout, and returns."""
    attempt = sg.current_attempt().attempt
    sg.heartbeat()
    if attempt == 0:
        while True:
            pass
    start = time.monotonic()
    while time.monotonic() - start < 1.5:
        sg.heartbeat()
        time.sleep(0.02)
    return i, attempt


def test_heartbeat_timeout_stops_a_silent_attempt_and_spares_a_beating_one(cluster):
    with sg.SpeculativeExecutor("ray", policy=None, heartbeat_timeout=1.0, stop_grace=0.2) as ex:
        assert ex.submit(silent_first, 3).result(timeout=60) == (3, 1)
    stats = ex.stats()
    assert stats.timeouts == 1 and stats.failures == 1
    timed_out = [e for e in ex.events() if e.kind == "fail"]
    assert [(e.task, e.attempt) for e in timed_out] == [(0, 0)]


def test_task_resources_become_the_ray_tasks_resources(cluster):
    with sg.SpeculativeExecutor(ray, policy=None) as ex:  # the module names the engine too
        default = ex.submit(assigned).result(timeout=60)
        half = ex.submit(sg.options(assigned, cpus=0.5, memory=2**20)).result(timeout=60)
        none = ex.submit(sg.options(assigned, cpus=0)).result(timeout=60)
    assert default.get("CPU") == 1
    assert half.get("CPU") == 0.5 and half.get("memory") == 2**20
    assert "CPU" not in none


def test_a_restarted_report_actor_loses_no_task(cluster, caplog):
    with caplog.at_level(logging.WARNING, logger="straggler"):
        with sg.SpeculativeExecutor("ray", policy=POLICY) as ex:
            futures = [ex.submit(beats_for, 0.1, i) for i in range(12)]
            futures[0].result(timeout=60)
            engine = ex._engine
            deadline = time.monotonic() + 60
            while not engine.generation and time.monotonic() < deadline:
                time.sleep(0.02)  # results arrive without the report actor: wait for its first drain
            generation = engine.generation
            assert generation
            ray.kill(engine.reports, no_restart=False)
            deadline = time.monotonic() + 60
            while engine.generation == generation and time.monotonic() < deadline:
                time.sleep(0.02)
            assert engine.generation != generation  # the poll thread reached the restarted actor
            values = [f.result(timeout=60) for f in futures]
            more = [ex.submit(beats_for, 0.05, i).result(timeout=60) for i in range(3)]
    assert [v[0] for v in values] == list(range(12)) and [v[0] for v in more] == [0, 1, 2]
    assert ex.stats().failures == 0
    assert any("report actor was restarted" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(cpus=-1), ValueError, "cpus must be in"),
        (dict(cpus=1.5), ValueError, "cpus must be a fraction below 1 or a whole number, got 1.5"),
        (dict(cpus="2"), TypeError, "cpus must be a number, got '2'"),
        (dict(gpus=True), TypeError, "gpus must be a number, got True"),
        (dict(gpus=float("nan")), ValueError, "gpus must be a finite number"),
        (dict(memory=0), ValueError, "memory must be >= 1, got 0"),
        (dict(memory=1.5), TypeError, "memory must be an int, got 1.5"),
    ],
)
def test_bad_resources_are_refused_naming_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        sg.options(assigned, **kwargs)


def test_bad_engine_arguments_are_refused(cluster):
    with pytest.raises(ValueError, match="max_workers: a Ray cluster's slots are its nodes' CPUs; got max_workers=2"):
        sg.SpeculativeExecutor("ray", max_workers=2)
    with pytest.raises(ValueError, match="unknown engine name 'rays'"):
        sg.SpeculativeExecutor("rays")
    with pytest.raises(ValueError, match="stop_grace must be in"):
        sg.SpeculativeExecutor("ray", stop_grace=-1)


def test_without_ray_installed_the_engine_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ImportError, match=r'the Ray engine needs Ray: pip install "straggler\[ray\]"'):
        sg.SpeculativeExecutor("ray")
