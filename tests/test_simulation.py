"""``straggler.simulate``: the model, its accounting, and that it decides through the executor's seam."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np
import pytest
import straggler as sg
from straggler._scheduling import Situation, plan_copies
from straggler.simulation import POLICY_NAMES, resolve_policy

POLICIES = [None, *POLICY_NAMES]
# A small cluster with slow nodes and a few waves: every policy has stragglers to find.
SMALL = dict(tasks=120, nodes=12, slow_nodes=3, slow_factor=4.0, slots_per_node=2, sigma=0.4)


def spans(result):
    """(task, attempt) -> (start, end, outcome, node, speculative) from the events."""
    open_, done = {}, {}
    for e in result.events:
        key = (e.task, e.attempt)
        if e.kind == "start":
            assert key not in open_ and key not in done, key
            open_[key] = e
        else:
            start = open_.pop(key)
            done[key] = (start.time, e.time, e.kind, start.node, start.speculative)
    assert not open_, "every attempt that started ended"
    return done


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_same_seed_gives_the_same_result_and_events(policy):
    a = sg.simulate(**SMALL, policy=policy, seed=3, failure_rate=0.05)
    b = sg.simulate(**SMALL, policy=policy, seed=3, failure_rate=0.05)
    assert a == b
    assert list(a.events) == list(b.events)


def test_another_seed_gives_another_job():
    a = sg.simulate(**SMALL, policy="late", seed=1)
    b = sg.simulate(**SMALL, policy="late", seed=2)
    assert a.events != b.events and a.makespan != b.makespan


# --- conservation --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_every_task_completes_once_and_attempt_seconds_add_up(policy):
    r = sg.simulate(**SMALL, policy=policy, seed=5, failure_rate=0.1, max_failures=8)
    assert r.failed_tasks == 0
    attempts = spans(r)
    finishes = Counter(task for (task, _), s in attempts.items() if s[2] == "finish")
    assert sorted(finishes) == list(range(r.tasks)) and set(finishes.values()) == {1}

    seconds = defaultdict(float)
    for start, end, outcome, _, _ in attempts.values():
        assert end >= start
        seconds[outcome] += end - start
    assert math.isclose(r.useful_seconds, seconds["finish"], rel_tol=1e-12)
    assert math.isclose(r.wasted_seconds, seconds["fail"] + seconds["kill"], rel_tol=1e-12)
    total = sum(seconds.values())
    assert math.isclose(r.useful_seconds + r.wasted_seconds, total, rel_tol=1e-12)
    assert math.isclose(r.wasted_fraction, r.wasted_seconds / total, rel_tol=1e-12)

    outcomes = Counter(s[2] for s in attempts.values())
    assert r.attempts == len(attempts)
    assert r.failures == outcomes["fail"] > 0
    assert r.killed == outcomes["kill"]
    assert r.speculative == sum(s[4] for s in attempts.values())
    assert r.speculative_wins == sum(s[4] for s in attempts.values() if s[2] == "finish")
    completion = sorted(s[1] for s in attempts.values() if s[2] == "finish")
    assert r.makespan == max(e.time for e in r.events) == completion[-1]
    assert (r.task_p50, r.task_p99) == tuple(np.percentile(completion, [50, 99]).tolist())
    if policy is None:
        assert r.speculative == r.killed == 0


def test_a_loser_is_killed_when_its_task_wins():
    r = sg.simulate(**SMALL, policy="spark", seed=0)
    attempts = spans(r)
    win_time = {task: s[1] for (task, _), s in attempts.items() if s[2] == "finish"}
    kills = [(task, s[1]) for (task, _), s in attempts.items() if s[2] == "kill"]
    assert kills, "the scenario has races"
    assert all(time == win_time[task] for task, time in kills)


def test_tasks_fail_for_good_after_max_failures():
    r = sg.simulate(tasks=200, nodes=10, failure_rate=0.5, max_failures=2, seed=0)
    attempts = spans(r)
    per_task = defaultdict(list)
    for (task, _number), s in sorted(attempts.items()):
        per_task[task].append(s[2])
    failed = [t for t, outcomes in per_task.items() if "finish" not in outcomes]
    assert r.failed_tasks == len(failed) > 0
    assert all(per_task[t] == ["fail", "fail"] for t in failed)
    assert all(outcomes[-1] == "finish" and len(outcomes) <= 2 for t, outcomes in per_task.items() if t not in failed)


def test_no_copy_runs_where_its_task_runs_or_ran():
    for policy in ("spark", "flink", "smallpond", "late"):
        r = sg.simulate(**SMALL, policy=policy, seed=2)
        nodes_so_far = defaultdict(set)
        for e in r.events:
            if e.kind == "start":
                if e.speculative:
                    assert e.node not in nodes_so_far[e.task], (policy, e)
                nodes_so_far[e.task].add(e.node)


# --- the model -----------------------------------------------------------------------------------


def test_equal_tasks_in_waves_take_waves_times_task_time():
    r = sg.simulate(tasks=3 * 8, nodes=4, slots_per_node=2, sigma=0.0, task_time=90.0)
    assert r.makespan == 270.0 and r.task_p50 == 180.0


def test_slow_nodes_run_slow_factor_times_longer():
    r = sg.simulate(tasks=5, nodes=5, slow_nodes=5, slow_factor=3.0, sigma=0.0, task_time=60.0)
    assert r.makespan == 180.0 and r.slow_nodes == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("distribution", ["lognormal", "pareto"])
def test_task_time_is_the_median_task_size(distribution):
    # One wave on healthy nodes: a task's completion time is its size.
    r = sg.simulate(tasks=4000, nodes=4000, distribution=distribution, task_time=120.0, seed=1)
    assert r.task_p50 == pytest.approx(120.0, rel=0.05)


def test_pareto_has_the_heavier_tail():
    lognormal = sg.simulate(tasks=4000, nodes=4000, distribution="lognormal", sigma=0.5, seed=1)
    pareto = sg.simulate(tasks=4000, nodes=4000, distribution="pareto", shape=1.5, seed=1)
    assert pareto.task_p99 / pareto.task_p50 > 2 * lognormal.task_p99 / lognormal.task_p50


def test_spark_copies_nothing_when_every_task_takes_the_same_time():
    r = sg.simulate(tasks=100, nodes=10, sigma=0.0, policy="spark")
    assert r.speculative == 0


def test_speculation_beats_slow_nodes_in_the_late_setting():
    # The README's setting (LATE, Zaharia et al., OSDI 2008): a fifth of the nodes 4x slower.
    setting = dict(tasks=800, nodes=200, slots_per_node=2, slow_nodes=40, slow_factor=4.0, sigma=0.3, seed=1)
    none = sg.simulate(**setting)
    late = sg.simulate(**setting, policy="late")
    assert late.makespan < 0.7 * none.makespan
    assert late.speculative_wins > 0


# --- policies and arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(POLICY_NAMES))
def test_each_policy_name_is_accepted_and_named_in_the_result(name):
    r = sg.simulate(**SMALL, policy=name)
    assert r.policy == name
    assert r.speculative > 0


def test_spark4_is_spark_with_spark_4_defaults():
    assert resolve_policy("spark4") == ("spark4", sg.SparkPolicy.spark4())
    assert sg.simulate(**SMALL, policy="spark4") != sg.simulate(**SMALL, policy="spark")


def test_a_policy_object_is_used_as_given():
    never = sg.SparkPolicy(quantile=1.0, multiplier=1000.0)
    assert sg.simulate(**SMALL, policy=never).speculative == 0
    assert sg.simulate(**SMALL, policy=sg.SparkPolicy()).events == sg.simulate(**SMALL, policy="spark").events


@pytest.mark.parametrize(
    ("argument", "value", "error"),
    [
        ("tasks", 0, ValueError), ("tasks", 2.5, TypeError), ("tasks", True, TypeError),
        ("nodes", 0, ValueError), ("slow_nodes", -1, ValueError), ("slow_nodes", 13, ValueError),
        ("slow_factor", 0.5, ValueError), ("slow_factor", math.nan, ValueError), ("slow_factor", "5", TypeError),
        ("policy", "hadoop", ValueError), ("policy", 3, TypeError), ("seed", -1, ValueError),
        ("distribution", "normal", ValueError), ("failure_rate", 1.0, ValueError),
        ("failure_rate", -0.1, ValueError), ("slots_per_node", 0, ValueError), ("task_time", 0.0, ValueError),
        ("task_time", math.inf, ValueError), ("sigma", -1.0, ValueError), ("shape", 1.0, ValueError),
        ("max_failures", 0, ValueError), ("interval", 0.0, ValueError),
    ],
)
def test_bad_arguments_are_rejected_naming_the_argument(argument, value, error):
    kwargs = dict(tasks=10, nodes=12)
    kwargs[argument] = value
    with pytest.raises(error, match=rf"^{argument}\b.*{value!r}".replace("(", r"\(").replace(")", r"\)")):
        sg.simulate(**kwargs)


def test_the_check_interval_defaults_to_the_policys_but_at_least_a_second():
    # Copies start only at checks: on the check grid.
    for policy, grid in (("spark", 1.0), ("smallpond", 30.0)):
        r = sg.simulate(**SMALL, policy=policy, seed=4)
        copies = [e.time for e in r.events if e.kind == "start" and e.speculative]
        assert copies and all(t / grid == round(t / grid) for t in copies), policy
    r = sg.simulate(**SMALL, policy="spark", seed=4, interval=7.0)
    assert all((e.time / 7.0) == round(e.time / 7.0) for e in r.events if e.kind == "start" and e.speculative)


# --- the simulator decides with the executor's seam ---------------------------------------------


@pytest.mark.parametrize("policy", ["spark", "spark4", "smallpond"])
def test_copies_are_what_plan_copies_decides_for_the_replayed_detector(policy):
    """Replay the simulation's events into a fresh Detector and, at every check time, ask
    ``Detector.check`` and ``plan_copies`` what to copy: the simulator started exactly those."""
    setting = dict(SMALL, failure_rate=0.05)
    r = sg.simulate(**setting, policy=policy, seed=7)
    _, policy_obj = resolve_policy(policy)
    interval = max(policy_obj.interval, 1.0)
    slots_per_node, n_nodes = setting["slots_per_node"], setting["nodes"]

    detector = sg.Detector(policy=policy_obj)
    detector.add_tasks(detector.add_stage(num_tasks=r.tasks), r.tasks)
    ids, running, ran_on, spec = {}, defaultdict(set), defaultdict(list), set()
    done = set()

    def apply(e):
        key = (e.task, e.attempt)
        if e.kind == "start":
            ids[key] = detector.start(e.task, e.time, node=e.node)
            running[e.task].add(key)
            ran_on[e.task].append(e.node)
            if e.speculative:
                spec.add(key)
        else:
            detector.finish(ids[key], e.time, ok=e.kind == "finish")
            running[e.task].discard(key)
            spec.discard(key)
            if e.kind == "finish":
                done.add(e.task)

    events = list(r.events)
    node_of = {(e.task, e.attempt): e.node for e in events if e.kind == "start"}
    i, checks, compared = 0, 0, 0
    step = 1
    while i < len(events):
        now = step * interval
        step += 1
        # Events at the check's time come first; copies started at it are the check's answer.
        while i < len(events) and (events[i].time < now or (events[i].time == now and not (
                events[i].kind == "start" and events[i].speculative))):
            apply(events[i])
            i += 1
        copies = []
        while i < len(events) and events[i].time == now and events[i].kind == "start" and events[i].speculative:
            copies.append(events[i])
            i += 1
        started = [(e.task, e.node) for e in copies]
        live = [key for keys in running.values() for key in keys]
        if not live:
            assert not started
            continue
        per_node = Counter(node_of[key] for key in live)
        pending = sum(1 for t in range(r.tasks) if t not in done and not running[t])
        answer = detector.check(now, pending=pending, slots=n_nodes * slots_per_node)
        situation = Situation(
            pending=pending,
            free_slots=n_nodes * slots_per_node - len(live),
            slots=n_nodes * slots_per_node,
            attempts={t: len(running[t]) for t in answer.task.tolist()},
            speculative_running=len(spec),
            free_nodes={n: slots_per_node - per_node[n] for n in range(n_nodes) if per_node[n] < slots_per_node},
            task_nodes={t: ran_on[t] for t in answer.task.tolist()},
        )
        plan = plan_copies(answer, policy=policy_obj, situation=situation)
        assert [(c.task, c.node) for c in plan.copies] == started, now
        checks += 1
        compared += len(started)
        for e in copies:
            apply(e)
    assert checks > 10 and compared == r.speculative > 0


def test_mantri_starts_no_copy_when_every_task_is_the_same_length():
    """The issue's no-straggler workload: equal tasks, no slow node."""
    settings = dict(tasks=400, nodes=50, slots_per_node=2, sigma=0.0, seed=3)
    mantri = sg.simulate(policy="mantri", **settings)
    none = sg.simulate(policy=None, **settings)
    assert mantri.speculative == 0
    assert mantri.makespan <= 1.02 * none.makespan


def test_mantri_restarts_kill_the_attempt_and_start_a_new_one():
    r = sg.simulate(tasks=200, nodes=20, slow_nodes=4, slow_factor=4.0, policy="mantri", seed=0)
    kinds = [e.kind for e in r.events]
    assert r.killed > 0 and "kill" in kinds
    assert r.speculative > 0
