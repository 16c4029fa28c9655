"""``simulate_stages``: stages one after another, per-node slots and speeds, given task sizes."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from straggler import simulation
from straggler.simulation import POLICY_NAMES, simulate_stages

POLICIES = [None, *POLICY_NAMES]


def attempts(result):
    """(task, attempt) -> (start, end, outcome, node, stage)."""
    begun, done = {}, {}
    for e in result.events:
        if e.kind == "start":
            begun[e.task, e.attempt] = e
        else:
            s = begun.pop((e.task, e.attempt))
            done[e.task, e.attempt] = (s.time, e.time, e.kind, s.node, s.stage)
    assert not begun
    return done


@settings(max_examples=30, deadline=None)
@given(policy=st.sampled_from(POLICIES), seed=st.integers(0, 1000), nodes=st.integers(1, 6),
       slots=st.integers(1, 3), slow=st.integers(0, 2))
def test_one_stage_is_the_simulate_run_with_the_same_sizes(policy, seed, nodes, slots, slow):
    # The reference: simulate() builds sizes and speeds from its seed; one stage given the same
    # sizes, slots and speeds must decide and time every attempt alike.
    kwargs = dict(tasks=30, nodes=nodes, slow_nodes=min(slow, nodes), slow_factor=4.0, policy=policy, seed=seed,
                  slots_per_node=slots, task_time=10.0, sigma=0.6)
    reference = simulation._build(**kwargs)
    expected = simulation.simulate(**kwargs)
    got = simulate_stages([reference.sizes], [slots] * nodes, [reference.speed], policy, names=["sim"],
                          slow_nodes=reference.slow, interval=reference.interval)
    assert list(got.events) == list(expected.events)
    for field in ("makespan", "task_p50", "task_p99", "speculative", "speculative_wins", "attempts", "killed",
                  "useful_seconds", "wasted_seconds", "wasted_fraction", "slow_nodes", "tasks", "nodes"):
        assert getattr(got, field) == pytest.approx(getattr(expected, field)), field


def test_each_stage_starts_after_the_one_before_plus_its_gap():
    r = simulate_stages([[2.0, 2.0, 2.0], [1.0, 1.0]], [1, 1], [[1.0, 1.0], [1.0, 1.0]], gaps=[0.5, 3.0],
                        names=["map", "reduce"])
    spans = attempts(r)
    maps = [s for s in spans.values() if s[4] == "map"]
    reduces = [s for s in spans.values() if s[4] == "reduce"]
    assert min(s[0] for s in maps) == 0.5
    # Three tasks of 2 s on two slots: the map ends at 0.5 + 4; the reduce starts 3 s later.
    assert max(s[1] for s in maps) == pytest.approx(4.5)
    assert min(s[0] for s in reduces) == pytest.approx(7.5)
    assert r.makespan == pytest.approx(8.5)
    # Task ids run on across stages; task times count from each stage's start.
    assert sorted({task for task, _ in spans}) == [0, 1, 2, 3, 4]
    # Completion times from each stage's start: 2, 2, 4 (map) and 1, 1 (reduce).
    assert r.task_p99 == pytest.approx(float(np.percentile([2, 2, 4, 1, 1], 99))) and r.tasks == 5
    assert r.task_p50 == pytest.approx(2.0)


def test_nodes_have_their_own_slots_and_a_node_without_slots_runs_nothing():
    r = simulate_stages([[1.0] * 8], [3, 0, 1], [[1.0, 1.0, 1.0]])
    spans = attempts(r)
    per_node = Counter(s[3] for s in spans.values())
    assert per_node == {0: 6, 2: 2}
    assert r.makespan == pytest.approx(2.0)


def test_an_attempt_takes_its_size_times_its_node_speed_in_its_stage():
    sizes = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0]]
    speed = [[1.0, 3.0], [2.0, 0.5]]
    r = simulate_stages(sizes, [1, 1], speed)
    flat = [s for stage in sizes for s in stage]
    stage_of = [0, 0, 0, 0, 1, 1]
    for (task, _), (start, end, outcome, node, _) in attempts(r).items():
        assert outcome == "finish"
        assert end - start == pytest.approx(flat[task] * speed[stage_of[task]][node])


@pytest.mark.parametrize("policy", POLICIES)
def test_a_slow_node_in_every_stage_and_each_policy_runs_to_the_end(policy):
    sizes = [[60.0] * 40, [90.0] * 10]
    speed = [[1.0, 1.0, 1.0, 6.0]] * 2
    r = simulate_stages(sizes, [2, 2, 2, 2], speed, policy)
    finishes = Counter(task for (task, _), s in attempts(r).items() if s[2] == "finish")
    assert sorted(finishes) == list(range(50)) and set(finishes.values()) == {1}
    assert r.useful_seconds + r.wasted_seconds == pytest.approx(sum(e - s for s, e, *_ in attempts(r).values()))
    assert math.isfinite(r.makespan)


@pytest.mark.parametrize(("kwargs", "named"), [
    (dict(stages=[]), "stages"),
    (dict(stages=[[]]), "stages[0]"),
    (dict(stages=[[1.0]], slots_per_node=[]), "slots_per_node"),
    (dict(stages=[[1.0]], slots_per_node=[0, 0], speed=[[1.0, 1.0]]), "slots_per_node"),
    (dict(stages=[[1.0]], slots_per_node=[-1], speed=[[1.0]]), "slots_per_node[0]"),
    (dict(stages=[[1.0]], speed=[[1.0], [1.0]]), "speed"),
    (dict(stages=[[1.0]], speed=[[1.0, 2.0]]), "speed[0]"),
    (dict(stages=[[1.0]], speed=[[0.0]]), "speed[0][0]"),
    (dict(stages=[[1.0]], speed=[[math.nan]]), "speed[0][0]"),
    (dict(stages=[[-1.0]]), "stages[0][0]"),
    (dict(stages=[[1.0]], gaps=[-2.0]), "gaps[0]"),
    (dict(stages=[[1.0]], gaps=[1.0, 2.0]), "gaps"),
    (dict(stages=[[1.0]], names=["a", "b"]), "names"),
    (dict(stages=[[1.0]], policy="nope"), "policy"),
    (dict(stages=[[1.0]], interval=0.0), "interval"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, named):
    args = dict(slots_per_node=[1], speed=[[1.0]] * len(kwargs.get("stages", [[1.0]])) or [[1.0]])
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        simulate_stages(**args)
    assert str(info.value).startswith(named), str(info.value)


@pytest.mark.parametrize("policy", POLICIES)
def test_tasks_of_no_work_complete_when_they_start(policy):
    # A log can hold tasks that took 0 ms: they take no time under any policy.
    r = simulate_stages([[0.0] * 5, [0.0, 2.0]], [1, 2], [[1.0, 3.0], [1.0, 3.0]], policy)
    spans = attempts(r)
    assert {outcome for _, _, outcome, _, _ in spans.values()} <= {"finish", "kill"}
    # Tasks 0-5 have no work: each winner ends when it starts.
    assert all(end == start for (task, _), (start, end, outcome, _, _) in spans.items()
               if task < 6 and outcome == "finish")
    assert r.makespan <= 6.0
