"""The simulator's speed (pytest-benchmark; not part of the test run).

    python -m pytest benches/bench_simulate.py --benchmark-only -p no:cacheprovider -s

100,000 tasks on 1,000 nodes (100 of them 5x slower), 1 % failures: one policy per case.
Target (issue 7): under 60 s each. LATE sends a heartbeat per running attempt at every check;
Flink checks every second whether or not a slot is free (its check also blocks nodes), so these
two are the costly ones.
"""

from __future__ import annotations

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
