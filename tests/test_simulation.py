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
        ("input_sizes", 1, TypeError), ("input_sizes", None, TypeError),
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


@pytest.mark.parametrize("input_sizes", [False, True])
def test_mantri_starts_no_copy_when_every_task_is_the_same_length(input_sizes):
    """The issue's no-straggler workload: equal tasks, no slow node (sizes known or not)."""
    settings = dict(tasks=400, nodes=50, slots_per_node=2, sigma=0.0, seed=3)
    mantri = sg.simulate(policy="mantri", input_sizes=input_sizes, **settings)
    none = sg.simulate(policy=None, **settings)
    assert mantri.speculative == 0
    assert mantri.makespan <= 1.02 * none.makespan


def test_mantri_restarts_kill_the_attempt_and_start_a_new_one():
    r = sg.simulate(tasks=200, nodes=20, slow_nodes=4, slow_factor=4.0, policy="mantri", seed=0)
    kinds = [e.kind for e in r.events]
    assert r.killed > 0 and "kill" in kinds
    assert r.speculative > 0


# --- input_sizes: the Detector learns each task's size as its input bytes ------------------------

LATE_SETTING = dict(tasks=800, nodes=200, slots_per_node=2, slow_nodes=40, slow_factor=4.0, sigma=0.3)


def test_input_sizes_are_the_task_sizes_in_bytes_proportional_to_the_median():
    from straggler import simulation

    sizes = np.array([60.0, 120.0, 30.0, 90.0, 1e-9])
    assert simulation._input_bytes(sizes, 60.0) == [2**20, 2**21, 2**19, 3 * 2**19, 1]
    # The Detector was told them: Flink compares time per byte, so its copies change.
    flink = [sg.simulate(**LATE_SETTING, policy="flink", seed=1, input_sizes=known) for known in (False, True)]
    assert flink[0].events != flink[1].events


@pytest.mark.parametrize("policy", [None, "spark", "smallpond", "late"])
def test_input_sizes_change_nothing_for_policies_that_read_no_bytes(policy):
    runs = [sg.simulate(tasks=200, nodes=20, slow_nodes=4, slow_factor=4.0, policy=policy, seed=2,
                        input_sizes=known) for known in (False, True)]
    assert runs[0].events == runs[1].events


def test_mantri_with_input_sizes_restarts_fewer_tasks_and_wastes_less():
    # Without sizes a healthy task that is merely large looks like an outlier and is restarted.
    blind, sized = (sg.simulate(**LATE_SETTING, policy="mantri", seed=0, input_sizes=known)
                    for known in (False, True))
    assert sized.speculative < blind.speculative / 2
    assert sized.wasted_fraction < blind.wasted_fraction
    assert sized.makespan < blind.makespan


@pytest.mark.parametrize(("argument", "value"), [("sigma", 2.2), ("shape", 1.4)])
def test_input_sizes_refuse_a_spread_whose_largest_task_overflows_the_byte_count(argument, value):
    distribution = "lognormal" if argument == "sigma" else "pareto"
    with pytest.raises(ValueError, match=rf"^{argument} must keep .* input_sizes .*{value!r}"):
        sg.simulate(tasks=10, nodes=2, distribution=distribution, input_sizes=True, **{argument: value})
    sg.simulate(tasks=10, nodes=2, distribution=distribution, **{argument: value})  # fine without sizes


# --- long jobs: the simulator jumps between events -------------------------------------------------

# Four equal tasks on nodes 0-3 of five, node 0 four times slower (seed 0 picks it): three
# tasks end at task_time, the fourth would end at 4 x task_time; node 4 is free for a copy.
ONE_SLOW = dict(tasks=4, nodes=5, slow_nodes=1, slow_factor=4.0, sigma=0.0, seed=0)


def test_one_slow_task_of_a_billion_seconds_is_copied_at_the_first_tick_past_the_threshold():
    r = sg.simulate(**ONE_SLOW, task_time=1e9, policy="spark")
    assert r.slow_nodes == (0,)
    # Spark: once 3 of 4 succeeded, copy an attempt running > 1.5 x the median (strictly): the
    # first 1 s tick after 1.5e9; the copy takes 1e9 on the healthy node 4 and wins.
    assert (r.speculative, r.speculative_wins) == (1, 1)
    assert r.makespan == 1.5e9 + 1.0 + 1e9
    # Flink's test is inclusive (elapsed >= 1.5 x the median): the tick at 1.5e9 itself.
    assert sg.simulate(**ONE_SLOW, task_time=1e9, policy="flink").makespan == 2.5e9


def test_a_billion_second_job_that_smallpond_never_copies_runs_to_its_end():
    # smallpond needs 20 successes.
    r = sg.simulate(**ONE_SLOW, task_time=1e9, policy="smallpond")
    assert r.makespan == 4e9 and r.speculative == 0


def test_late_copies_a_billion_second_straggler_once_its_min_runtime_passed():
    # LATE's cap is max(min_speculative=1, floor(0.1 x 5 slots)) = 1 copy; it copies the
    # slowest-progressing attempt at the first check past min_runtime (60 s), onto node 4.
    r = sg.simulate(**ONE_SLOW, task_time=1e9, policy="late")
    assert (r.speculative, r.speculative_wins) == (1, 1)
    assert r.makespan == 60.0 + 1e9


def test_a_nanosecond_interval_keeps_copies_on_its_grid():
    r = sg.simulate(**ONE_SLOW, task_time=60.0, policy="spark", interval=1e-9)
    (copy,) = [e for e in r.events if e.kind == "start" and e.speculative]
    # The first tick after 90 s (1.5 x the 60 s median), on the 1e-9 s grid.
    assert copy.time == pytest.approx(90.0, abs=2e-9) and copy.time > 90.0
    assert copy.time / 1e-9 == round(copy.time / 1e-9)
    assert r.makespan == pytest.approx(150.0, abs=2e-9)


def tick_every_interval(**kwargs):
    """The same run with a check at every interval tick (no jumping): the reference."""
    from straggler import simulation

    sim = simulation._build(**kwargs)
    sim.jump = False
    return sim.run()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jumping_between_events_decides_exactly_as_checking_every_tick(policy, seed):
    setting = dict(SMALL, policy=policy, seed=seed, failure_rate=0.05)
    assert sg.simulate(**setting) == tick_every_interval(**setting)


@pytest.mark.parametrize("policy", ["spark", "flink", "late"])
def test_jumping_matches_ticking_with_a_short_flink_block_and_odd_intervals(policy):
    for interval in (0.3, 2.5, 7.0):
        setting = dict(SMALL, policy=policy, seed=4, interval=interval, failure_rate=0.05)
        assert sg.simulate(**setting) == tick_every_interval(**setting), interval
    flink = sg.FlinkPolicy(baseline_lower_bound=5.0, block_slow_node_duration=0.5)
    setting = dict(SMALL, policy=flink, seed=5, failure_rate=0.05)
    assert sg.simulate(**setting) == tick_every_interval(**setting)


def test_flink_blocks_a_slow_node_for_as_long_as_its_attempt_is_slow():
    # One node: the fourth task's attempt is slow and no copy can go anywhere, so every check
    # blocks node 0 again; a task retried after a failure waits for the block to end.
    flink = sg.FlinkPolicy(baseline_lower_bound=1.0, block_slow_node_duration=30.0)
    setting = dict(tasks=12, nodes=2, slots_per_node=1, sigma=0.8, policy=flink, failure_rate=0.2, max_failures=10)
    for seed in range(4):
        assert sg.simulate(**setting, seed=seed) == tick_every_interval(**setting, seed=seed), seed


# --- arguments that would make times infinite ------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("slow_factor", 1e308), ("task_time", 1e300), ("sigma", 1000.0), ("sigma", 20.5),
        ("interval", 1e-12), ("tasks", 10**23), ("tasks", 3 * 10**9), ("nodes", 3 * 10**9),
        ("slots_per_node", 3 * 10**9),
    ],
)
def test_arguments_that_overflow_time_or_memory_are_refused_naming_the_argument(argument, value):
    kwargs = dict(tasks=10, nodes=12, slow_nodes=2, slow_factor=4.0)
    kwargs[argument] = value
    with pytest.raises(ValueError, match=rf"^{argument}\b"):
        sg.simulate(**kwargs)


def test_too_many_slots_in_all_are_refused_naming_slots_per_node():
    from straggler.simulation import MAX_SLOTS

    with pytest.raises(ValueError, match=rf"^slots_per_node\b.*{MAX_SLOTS}"):
        sg.simulate(tasks=10, nodes=1000, slots_per_node=MAX_SLOTS // 1000 + 1)


def test_the_largest_accepted_settings_give_finite_times():
    r = sg.simulate(tasks=4, nodes=5, slow_nodes=1, slow_factor=1e6, task_time=1e9, sigma=20.0, seed=0)
    assert math.isfinite(r.makespan) and r.makespan > 0
    r = sg.simulate(tasks=4, nodes=4, distribution="pareto", shape=1.0001, task_time=1e9, seed=0, policy="spark")
    assert math.isfinite(r.makespan) and r.makespan > 0


def test_numpy_numbers_are_accepted_as_the_python_numbers_they_stand_for():
    plain = sg.simulate(tasks=30, nodes=6, slow_nodes=1, slow_factor=3.0, seed=2, policy="spark",
                        slots_per_node=2, max_failures=3, task_time=50.0, interval=2.0, failure_rate=0.1)
    numpy = sg.simulate(tasks=np.int64(30), nodes=np.int32(6), slow_nodes=np.uint8(1), slow_factor=np.float32(3.0),
                        seed=np.int16(2), policy="spark", slots_per_node=np.int64(2), max_failures=np.int8(3),
                        task_time=np.float64(50.0), interval=np.float64(2.0), failure_rate=np.float64(0.1))
    assert numpy == plain
