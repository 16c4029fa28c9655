"""The simulator's speed (pytest-benchmark; not part of the test run).

    python -m pytest benches/bench_simulate.py --benchmark-only -p no:cacheprovider -s

100,000 tasks on 1,000 nodes (100 of them 5x slower), 1 % failures: one policy per case.
Target (issue 7): under 60 s each. LATE sends a heartbeat per running attempt at every check;
Flink checks whether or not a slot is free (its check also blocks nodes), so these two are the
costly ones.

A small job of hour-long tasks, run as ``simulate`` runs it (jumping between events) and with a
check at every 1 s tick: the same result, and the speed-up (issue 11).
"""

from __future__ import annotations

import time

import pytest
import straggler as sg

N_TASKS = 100_000
SETTING = dict(tasks=N_TASKS, nodes=1000, slow_nodes=100, slow_factor=5.0, failure_rate=0.01, seed=0)


@pytest.mark.parametrize("policy", ["late", "flink", None])
def test_simulate_100k_tasks(benchmark, policy):
    result = benchmark.pedantic(sg.simulate, kwargs=dict(SETTING, policy=policy), rounds=1, iterations=1)
    assert result.tasks == N_TASKS and result.failed_tasks == 0
    assert benchmark.stats.stats.max < 60.0
    print(f"\n{policy}: {benchmark.stats.stats.max:.2f} s for {N_TASKS} tasks; makespan {result.makespan:.0f} s, "
          f"{result.speculative} copies")


LONG = dict(tasks=40, nodes=10, slow_nodes=2, slow_factor=4.0, task_time=3600.0, seed=0)


@pytest.mark.parametrize("policy", ["spark", "flink", "late"])
def test_simulate_hour_long_tasks_against_a_check_every_tick(benchmark, policy):
    from straggler import simulation

    ticking = simulation._build(**LONG, policy=policy)
    ticking.jump = False
    start = time.perf_counter()
    reference = ticking.run()
    tick_seconds = time.perf_counter() - start
    result = benchmark.pedantic(sg.simulate, kwargs=dict(LONG, policy=policy), rounds=3, iterations=1)
    assert result == reference
    jump_seconds = benchmark.stats.stats.min
    print(f"\n{policy}: {jump_seconds * 1e3:.1f} ms jumping between events, {tick_seconds * 1e3:.0f} ms checking "
          f"every tick: {tick_seconds / jump_seconds:.0f}x; makespan {result.makespan:.0f} s, "
          f"{result.speculative} copies")
