"""The Detector's rules, one behaviour per test, with exact boundaries.

These run against every implementation (``detector_cls``): the reference model in
``straggler._reference`` and, once built, the Rust ``straggler.Detector``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from straggler.policies import FlinkPolicy, LatePolicy, SmallpondPolicy, SparkPolicy

SPARK0 = SparkPolicy(quantile=0.5, multiplier=1.0, min_runtime=0.0)


def tasks_of(result) -> list[int]:
    return result.task.tolist()


def stage_with(det, n, *, declared=True, input_bytes=None):
    stage = det.add_stage(num_tasks=n if declared else None)
    return stage, det.add_tasks(stage, n, input_bytes=input_bytes).tolist()


# --- ids and building ------------------------------------------------------------------------------


def test_ids_are_dense_from_zero_across_the_detector(detector_cls):
    det = detector_cls(None)
    assert det.add_stage(num_tasks=2, name="map") == 0
    assert det.add_stage() == 1
    assert det.add_task(0) == 0
    assert det.add_tasks(1, 3).tolist() == [1, 2, 3]
    assert det.add_task(0, input_bytes=None) == 4
    assert det.start(3, 0.0) == 0
    assert det.start_many([0, 1], 0.0, nodes=[2, 3]).tolist() == [1, 2]
    assert det.add_tasks(1, 0).dtype == np.int64


def test_stage_stats(detector_cls):
    det = detector_cls(None)
    stage, tasks = stage_with(det, 4)
    attempts = det.start_many(tasks, 0.0).tolist()
    empty = det.stage_stats(stage)
    assert (empty["name"], empty["num_tasks"], empty["tasks"]) == (None, 4, 4)
    assert (empty["successes"], empty["running"]) == (0, 4)
    assert all(math.isnan(empty[k]) for k in ("p50", "p95", "p99"))
    det.finish(attempts[0], 1.0)
    det.finish(attempts[1], 2.0)
    det.finish(attempts[2], 4.0, ok=False)
    stats = det.stage_stats(stage)
    assert (stats["successes"], stats["running"]) == (2, 1)
    for key, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        assert stats[key] == pytest.approx(float(np.percentile([1.0, 2.0], q)))
    named = det.add_stage(name="reduce")
    assert det.stage_stats(named)["name"] == "reduce"
    assert det.stage_stats(named)["num_tasks"] is None


def test_finish_is_true_only_for_the_first_success(detector_cls):
    det = detector_cls(None)
    _, (task,) = stage_with(det, 1)
    first, second, third = (det.start(task, 0.0) for _ in range(3))
    assert det.running(task) == 3
    assert det.finish(first, 1.0, ok=False) is False
    assert not det.task_done(task)
    assert det.finish(second, 2.0) is True
    assert det.task_done(task)
    assert det.finish(third, 3.0) is False
    assert det.running(task) == 0
    # The first success's duration is the statistic; the failure and the late success are not.
    assert det.stage_stats(0)["p50"] == 2.0


def test_open_stage_counts_the_tasks_added_so_far(detector_cls):
    # Spark gate with num_tasks=None: quantile 0.5 of 2 added tasks needs 1 success.
    det = detector_cls(SPARK0)
    stage, tasks = stage_with(det, 2, declared=False)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    assert tasks_of(det.check(1.5)) == [tasks[1]]
    # Two more tasks: the gate is now 2 successes, so nothing is speculated.
    det.add_tasks(stage, 2)
    assert len(det.check(1.5)) == 0


# --- validation --------------------------------------------------------------------------------------


def test_unknown_ids_are_key_errors(detector_cls):
    det = detector_cls(SPARK0)
    _, (task,) = stage_with(det, 1)
    attempt = det.start(task, 0.0)
    for call in (
        lambda: det.add_task(5), lambda: det.add_tasks(-1, 2), lambda: det.stage_stats(1),
        lambda: det.start(1, 0.0), lambda: det.start(-1, 0.0), lambda: det.task_done(7),
        lambda: det.running(7), lambda: det.heartbeat(attempt + 1, 1.0),
        lambda: det.finish(attempt + 1, 1.0), lambda: det.start_many([0, 3], 0.0),
        lambda: det.heartbeat_many([0, 9], 1.0),
    ):
        with pytest.raises(KeyError):
            call()


@pytest.mark.parametrize(("call", "argument", "shown"), [
    (lambda d: d.add_stage(num_tasks=0), "num_tasks", "0"),
    (lambda d: d.add_task(0, input_bytes=-2), "input_bytes", "-2"),
    (lambda d: d.start(0, math.nan), "now", "nan"),
    (lambda d: d.start(0, math.inf), "now", "inf"),
    (lambda d: d.start(0, 1.0, node=-1), "node", "-1"),
    (lambda d: d.heartbeat(0, 5.0, progress=1.5), "progress", "1.5"),
    (lambda d: d.heartbeat(0, 5.0, progress=math.nan), "progress", "nan"),
    (lambda d: d.heartbeat(0, 5.0, progress=-0.1), "progress", "-0.1"),
    (lambda d: d.heartbeat(0, 5.0, records=-1), "records", "-1"),
    (lambda d: d.heartbeat(0, 5.0, records=math.nan), "records", "nan"),
    (lambda d: d.heartbeat(0, 0.5), "now", "0.5"),          # before the attempt's start (1.0)
    (lambda d: d.finish(0, 0.5), "now", "0.5"),
    (lambda d: d.finish(0, 5.0, records=-3), "records", "-3"),
    (lambda d: d.check(math.nan), "now", "nan"),
    (lambda d: d.check(1.0, pending=-1), "pending", "-1"),
    (lambda d: d.slow_nodes(math.nan), "now", "nan"),
])
def test_bad_values_are_value_errors_naming_the_argument(detector_cls, call, argument, shown):
    det = detector_cls(SPARK0)
    stage_with(det, 2)
    det.start(0, 1.0)
    with pytest.raises(ValueError) as caught:
        call(det)
    assert argument in str(caught.value)
    assert shown in str(caught.value)


def test_time_may_not_run_backwards_for_an_attempt(detector_cls):
    det = detector_cls(None)
    _, (task,) = stage_with(det, 1)
    attempt = det.start(task, 1.0)
    det.heartbeat(attempt, 1.0)  # equal to the start: fine
    det.heartbeat(attempt, 3.0, progress=0.5)
    with pytest.raises(ValueError, match="now"):
        det.heartbeat(attempt, 2.9)
    with pytest.raises(ValueError, match="now"):
        det.finish(attempt, 2.9)
    assert det.finish(attempt, 3.0) is True


def test_finishing_twice_and_restarting_a_done_task_are_errors(detector_cls):
    det = detector_cls(None)
    _, (task,) = stage_with(det, 1)
    attempt = det.start(task, 0.0)
    det.finish(attempt, 1.0)
    with pytest.raises(ValueError, match="already finished"):
        det.finish(attempt, 2.0)
    with pytest.raises(ValueError, match="succeeded"):
        det.start(task, 2.0)


def test_too_many_tasks_for_a_declared_stage(detector_cls):
    det = detector_cls(None)
    stage, _ = stage_with(det, 2)
    with pytest.raises(ValueError, match="num_tasks"):
        det.add_task(stage)
    other = det.add_stage(num_tasks=3)
    with pytest.raises(ValueError, match="num_tasks"):
        det.add_tasks(other, 4)
    assert det.stage_stats(other)["tasks"] == 0  # the rejected batch added nothing
    assert det.add_task(other) == 2


def test_mismatched_lengths_are_value_errors(detector_cls):
    det = detector_cls(None)
    stage, tasks = stage_with(det, 3)
    with pytest.raises(ValueError):
        det.start_many(tasks, [0.0, 1.0])
    with pytest.raises(ValueError):
        det.start_many(tasks, 0.0, nodes=[1, 2])
    with pytest.raises(ValueError):
        det.add_tasks(det.add_stage(), 2, input_bytes=[1, 2, 3])
    attempts = det.start_many(tasks, 0.0)
    with pytest.raises(ValueError):
        det.heartbeat_many(attempts, 1.0, progress=[0.1, 0.2])
    with pytest.raises(ValueError):
        det.heartbeat_many(attempts, 1.0, records=[1.0])


def test_rejected_start_many_changes_nothing(detector_cls):
    det = detector_cls(None)
    _, tasks = stage_with(det, 3)
    with pytest.raises(ValueError):
        det.start_many(tasks, [0.0, 0.0, math.nan])
    assert [det.running(t) for t in tasks] == [0, 0, 0]
    assert det.start(tasks[0], 0.0) == 0  # no attempt id was used up


def test_rejected_heartbeat_batch_changes_nothing(detector_cls):
    # Rows apply in order: the second row of attempt 0 goes back from 5.0 to 4.0.
    det = detector_cls(None)
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    with pytest.raises(ValueError, match="now"):
        det.heartbeat_many([attempts[0], attempts[1], attempts[0]], [5.0, 5.0, 4.0])
    with pytest.raises(ValueError, match="progress"):
        det.heartbeat_many(attempts, 5.0, progress=[0.5, 2.0])
    # Had the first row applied, finishing at 4.5 would go back in time.
    assert det.finish(attempts[0], 4.5) is True
    det.heartbeat_many(attempts[1:], np.array([6.0]), progress=np.array([0.5]))
    with pytest.raises(ValueError, match="now"):
        det.finish(attempts[1], 5.5)


def test_heartbeat_after_finish_is_ignored(detector_cls):
    # A worker's last heartbeat can be flushed after its attempt finished.
    det = detector_cls(None)
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 2.0)
    det.heartbeat(attempts[0], 1.0, progress=0.9)
    det.heartbeat_many(attempts, 3.0, progress=[1.0, 0.5])
    assert det.task_done(tasks[0]) and det.running(tasks[0]) == 0
    with pytest.raises(ValueError, match="progress"):
        det.heartbeat(attempts[0], 3.0, progress=7.0)  # values are still checked


def test_check_is_pure(detector_cls):
    det = detector_cls(SPARK0)
    _, tasks = stage_with(det, 4)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    det.finish(attempts[1], 1.0)
    first = det.check(5.0)
    second = det.check(5.0)
    for column in ("task", "attempt", "stage", "node", "elapsed", "threshold"):
        assert getattr(first, column).tolist() == getattr(second, column).tolist()
    assert [det.running(t) for t in tasks] == [0, 0, 1, 1]


def test_check_columns_types(detector_cls):
    det = detector_cls(SPARK0)
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0, nodes=[4, 7]).tolist()
    det.finish(attempts[0], 1.0)
    result = det.check(3.0)
    assert len(result) == 1
    for column in ("task", "attempt", "stage", "node"):
        assert getattr(result, column).dtype == np.int64
    for column in ("elapsed", "threshold"):
        assert getattr(result, column).dtype == np.float64
    assert (result.task[0], result.attempt[0], result.stage[0], result.node[0]) == (1, 1, 0, 7)
    assert (result.elapsed[0], result.threshold[0]) == (3.0, 1.0)


@pytest.mark.parametrize("policy", [None, SPARK0, FlinkPolicy(baseline_ratio=0.0, baseline_lower_bound=0.0),
                                    SmallpondPolicy(min_samples=1, probe_timeout=0.0),
                                    LatePolicy(min_runtime=0.0, require_benefit=False)])
def test_unspeculatable_and_done_tasks_never_appear(detector_cls, policy):
    det = detector_cls(policy)
    stage = det.add_stage(num_tasks=4)
    locked = det.add_task(stage, speculatable=False)
    free = det.add_tasks(stage, 3).tolist()
    attempts = det.start_many([locked] + free, 0.0).tolist()
    det.heartbeat_many(attempts, 1.0, progress=[0.0, 0.0, 0.5, 0.5])
    det.finish(attempts[3], 1.0)
    shown = tasks_of(det.check(1000.0))
    assert locked not in shown and free[2] not in shown
    if policy is None:
        assert shown == []


# --- Spark ---------------------------------------------------------------------------------------------


def test_spark_gate_uses_the_ieee_product(detector_cls):
    # 0.29 * 100 == 28.999999999999996 in doubles: the gate is 28 successes, not 29.
    det = detector_cls(SparkPolicy(quantile=0.29, multiplier=1.0, min_runtime=0.0))
    _, tasks = stage_with(det, 100)
    attempts = det.start_many(tasks, 0.0).tolist()
    for a in attempts[:27]:
        det.finish(a, 1.0)
    assert len(det.check(10.0)) == 0
    det.finish(attempts[27], 1.0)
    assert len(det.check(10.0)) == 72


def test_spark_median_is_the_upper_middle(detector_cls):
    # Spark 3.5+: sorted[n // 2]; durations 1, 2, 3, 4 give 3, so threshold 1.5 x 3 = 4.5.
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=1.5, min_runtime=0.0))
    _, tasks = stage_with(det, 8)
    attempts = det.start_many(tasks, 0.0).tolist()
    for a, end in zip(attempts[:4], (4.0, 1.0, 3.0, 2.0)):
        det.finish(a, end)
    assert len(det.check(4.5)) == 0  # strict
    result = det.check(4.5001)
    assert len(result) == 4 and set(result.threshold.tolist()) == {4.5}


def test_spark_min_runtime_raises_the_threshold(detector_cls):
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=1.5, min_runtime=10.0))
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    assert len(det.check(10.0)) == 0
    assert det.check(10.5).threshold.tolist() == [10.0]


def test_spark_one_task_stage_never_speculates_without_a_duration_threshold(detector_cls):
    det = detector_cls(SparkPolicy(quantile=0.0, multiplier=0.0, min_runtime=0.0,
                                   task_duration_threshold=0.0))
    _, (task,) = stage_with(det, 1)
    det.start(task, 0.0)
    assert len(det.check(1e6)) == 0


def test_spark_few_tasks_path_ignores_min_runtime(detector_cls):
    det = detector_cls(SparkPolicy(min_runtime=100.0, task_duration_threshold=5.0,
                                   slots_per_executor=2))
    _, tasks = stage_with(det, 2)
    det.start_many(tasks, 0.0)
    assert len(det.check(5.0)) == 0
    result = det.check(5.5)
    assert tasks_of(result) == tasks and result.threshold.tolist() == [5.0, 5.0]


def test_spark_only_tasks_with_exactly_one_running_attempt(detector_cls):
    det = detector_cls(SPARK0)
    _, tasks = stage_with(det, 4)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    det.finish(attempts[1], 1.0)
    det.start(tasks[2], 0.5)  # a copy of task 2 already runs
    det.finish(attempts[3], 2.0, ok=False)  # task 3 failed, nothing of it runs
    assert len(det.check(10.0)) == 0
    det.start(tasks[3], 3.0)
    assert tasks_of(det.check(10.0)) == [tasks[3]]


def test_spark_order_is_most_overdue_first_then_task_id(detector_cls):
    det = detector_cls(SparkPolicy(quantile=0.2, multiplier=1.0, min_runtime=0.0))
    _, tasks = stage_with(det, 5)
    det.finish(det.start(tasks[0], 0.0), 1.0)
    det.start_many([tasks[4], tasks[1], tasks[3], tasks[2]], [0.0, 1.0, 0.0, 2.0])
    result = det.check(5.0)
    assert tasks_of(result) == [tasks[3], tasks[4], tasks[1], tasks[2]]
    assert result.elapsed.tolist() == [5.0, 5.0, 4.0, 3.0]


def test_spark_efficiency_without_records_anywhere_keeps_speculating(detector_cls):
    # No success reported records: the stage rate is infinite, so every candidate passes.
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=1.0, min_runtime=0.0,
                                   efficiency=True))
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.heartbeat(attempts[1], 1.0, records=1e9)
    det.finish(attempts[0], 1.0)
    assert tasks_of(det.check(1.5)) == [tasks[1]]


def test_spark_efficiency_rate_boundaries(detector_cls):
    # Stage rate: 100 records / 10 s = 10/s; x 0.75 = 7.5/s. An attempt at exactly 7.5/s is
    # efficient (strict <); at 7.4/s it is not. Threshold 10 s, long-run factor 2 → 20 s.
    det = detector_cls(SparkPolicy(quantile=0.3, multiplier=1.0, min_runtime=0.0,
                                   efficiency=True))
    _, tasks = stage_with(det, 3)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 10.0, records=100)
    det.heartbeat(attempts[1], 12.0, records=7.5 * 12)
    det.heartbeat(attempts[2], 12.0, records=7.4 * 12)
    assert tasks_of(det.check(15.0)) == [tasks[2]]
    assert tasks_of(det.check(20.0)) == [tasks[2]]        # 20 is not > 2 x 10
    assert sorted(tasks_of(det.check(20.5))) == tasks[1:]  # long-running now


def test_spark_efficiency_no_records_heartbeat_means_rate_zero(detector_cls):
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=1.0, min_runtime=0.0,
                                   efficiency=True))
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0, records=10)
    det.heartbeat(attempts[1], 1.2, progress=0.5)  # progress but no records
    assert tasks_of(det.check(1.5)) == [tasks[1]]


# --- Flink -------------------------------------------------------------------------------------------


def test_flink_baseline_is_the_upper_median_of_the_n_fastest(detector_cls):
    # n = 4, ratio 0.5: N = floor(2 + 0.5) = 2; the two fastest of 1, 2, 5 are 1, 2; index
    # N // 2 = 1 → 2 s; multiplier 1.5 → baseline 3 s.
    det = detector_cls(FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=1.5,
                                   baseline_lower_bound=0.0))
    _, tasks = stage_with(det, 4)
    attempts = det.start_many(tasks, 0.0).tolist()
    for a, end in zip(attempts[:3], (5.0, 1.0, 2.0)):
        det.finish(a, end)
    assert len(det.check(2.999)) == 0
    result = det.check(3.0)  # inclusive
    assert tasks_of(result) == [tasks[3]] and result.threshold.tolist() == [3.0]


def test_flink_lower_bound_is_inclusive(detector_cls):
    det = detector_cls(FlinkPolicy(baseline_ratio=0.25, baseline_multiplier=1.0,
                                   baseline_lower_bound=60.0))
    _, tasks = stage_with(det, 4)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    assert len(det.check(59.999)) == 0
    result = det.check(60.0)
    assert len(result) == 3 and set(result.threshold.tolist()) == {60.0}


def test_flink_reports_the_slowest_attempt_once(detector_cls):
    det = detector_cls(FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=1.0,
                                   baseline_lower_bound=0.0, max_concurrent_executions=4))
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    copy = det.start(tasks[1], 0.0, node=5)   # same start: tie → lowest attempt id
    det.start(tasks[1], 2.0, node=6)          # not slow yet at 2.5
    result = det.check(2.5)
    assert tasks_of(result) == [tasks[1]]
    assert result.attempt.tolist() == [attempts[1]] and copy > attempts[1]


def test_flink_skips_tasks_at_max_concurrent_executions(detector_cls):
    det = detector_cls(FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=1.0,
                                   baseline_lower_bound=0.0, max_concurrent_executions=2))
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    assert tasks_of(det.check(2.0)) == [tasks[1]]
    det.start(tasks[1], 2.0)
    assert len(det.check(5.0)) == 0


def test_flink_threshold_column_is_a_time_for_byte_stages(detector_cls):
    # 100 bytes in 10 s: 0.1 s/byte; multiplier 1; a 300-byte task is slow from 30 s.
    det = detector_cls(FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=1.0,
                                   baseline_lower_bound=5.0))
    _, tasks = stage_with(det, 2, input_bytes=[100, 300])
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 10.0)
    assert len(det.check(29.99)) == 0
    result = det.check(30.0)
    assert tasks_of(result) == [tasks[1]]
    assert result.threshold[0] == pytest.approx(30.0)


# --- smallpond ---------------------------------------------------------------------------------------


def smallpond_stage(det, n, *, normal=10.0, slow_every=20):
    """smallpond's test_speculative_scheduling idea: every ``slow_every``-th task is far slower.
    The normal tasks finish at ``normal`` plus a small spread; the slow ones keep running."""
    _, tasks = stage_with(det, n)
    attempts = det.start_many(tasks, 0.0).tolist()
    slow = [t for t in tasks if t % slow_every == 0]
    for t, a in zip(tasks, attempts):
        if t % slow_every:
            det.finish(a, normal + (t % 7) * 0.01)
    return tasks, attempts, slow


def test_smallpond_copies_exactly_the_slow_tasks(detector_cls):
    det = detector_cls(SmallpondPolicy())
    tasks, attempts, slow = smallpond_stage(det, 200)
    p50 = det.stage_stats(0)["p50"]
    # Queue empty: excess = max(180, p95 - p50) = 180.
    assert len(det.check(p50 + 179.999)) == 0
    result = det.check(p50 + 180.0)  # inclusive
    assert sorted(tasks_of(result)) == slow
    assert set(result.threshold.tolist()) == {p50 + 180.0}


def test_smallpond_needs_min_samples(detector_cls):
    det = detector_cls(SmallpondPolicy(min_samples=20, probe_timeout=1.0))
    _, tasks = stage_with(det, 21)
    attempts = det.start_many(tasks, 0.0).tolist()
    for a in attempts[:19]:
        det.finish(a, 1.0)
    assert len(det.check(1000.0)) == 0
    det.finish(attempts[19], 1.0)
    assert tasks_of(det.check(1000.0)) == [tasks[20]]


def test_smallpond_queue_pressure_and_aggressive(detector_cls):
    # p50 = 10 s, p95 = p99 = 10 s (all equal): excess is T = 5 s, doubled by (2 + 0) when
    # the queue is full and not aggressive.
    for aggressive, full_queue_excess in ((False, 10.0), (True, 5.0)):
        det = detector_cls(SmallpondPolicy(min_samples=2, probe_timeout=5.0,
                                           aggressive=aggressive))
        _, tasks = stage_with(det, 3)
        attempts = det.start_many(tasks, 0.0).tolist()
        det.finish(attempts[0], 10.0)
        det.finish(attempts[1], 10.0)
        assert det.check(15.0, pending=3, slots=4).threshold.tolist() == [15.0]
        assert det.check(15.0).threshold.tolist() == [15.0]   # slots=None: as if free
        full = det.check(30.0, pending=4, slots=4)
        assert full.threshold.tolist() == [10.0 + full_queue_excess]


def test_smallpond_examines_the_newest_attempt_until_the_retry_limit(detector_cls):
    det = detector_cls(SmallpondPolicy(min_samples=1, probe_timeout=1.0, max_retry_count=2))
    _, tasks = stage_with(det, 2)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    # newest attempt = a copy started at 5: elapsed 2 at t = 7 → 2 - 1 >= 1.
    copy = det.start(tasks[1], 5.0)
    result = det.check(7.0)
    assert result.attempt.tolist() == [copy] and result.elapsed.tolist() == [2.0]
    det.finish(copy, 7.0, ok=False)  # newest no longer runs: the old one is not examined
    assert len(det.check(100.0)) == 0
    det.start(tasks[1], 7.0)  # retry_count 2 == max_retry_count: no more copies
    assert len(det.check(100.0)) == 0


# --- LATE ----------------------------------------------------------------------------------------------


def late_stage(det, progress_at_10, *, start=0.0, nodes=None):
    _, tasks = stage_with(det, len(progress_at_10))
    attempts = det.start_many(tasks, start, nodes=nodes).tolist()
    det.heartbeat_many(attempts, start + 10.0, progress=progress_at_10)
    return tasks, attempts


def test_late_ranks_by_estimated_time_left(detector_cls):
    # Rates 0.01, 0.02, 0.05 x 5; quantile 0.5 of the 8 rates is 0.05: the first two are slow.
    det = detector_cls(LatePolicy(slow_task_quantile=0.5, min_runtime=0.0, require_benefit=False))
    tasks, _ = late_stage(det, [0.2, 0.1] + [0.5] * 6)
    result = det.check(20.0)
    # time left: 0.8 / 0.02 = 40 s for task 0, 0.9 / 0.01 = 90 s for task 1.
    assert tasks_of(result) == [tasks[1], tasks[0]]
    assert result.elapsed.tolist() == [20.0, 20.0]
    assert all(math.isnan(x) for x in result.threshold.tolist())


def test_late_rate_must_be_strictly_below_the_quantile(detector_cls):
    det = detector_cls(LatePolicy(slow_task_quantile=0.0, min_runtime=0.0, require_benefit=False))
    late_stage(det, [0.1, 0.1, 0.5])
    assert len(det.check(20.0)) == 0  # the minimum is not below itself


def test_late_no_progress_is_rate_zero_and_infinite_time_left(detector_cls):
    det = detector_cls(LatePolicy(slow_task_quantile=0.5, min_runtime=0.0, require_benefit=False))
    _, tasks = stage_with(det, 4)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.heartbeat_many(attempts[1:], 10.0, progress=[0.9, 0.5, 0.5])
    det.heartbeat(attempts[0], 10.0, records=5)  # a heartbeat without progress
    assert tasks_of(det.check(10.0)) == [tasks[0]]


def test_late_min_runtime_is_inclusive(detector_cls):
    det = detector_cls(LatePolicy(slow_task_quantile=0.5, min_runtime=60.0, require_benefit=False))
    tasks, _ = late_stage(det, [0.1, 0.5, 0.5])
    assert len(det.check(59.999)) == 0
    assert tasks_of(det.check(60.0)) == [tasks[0]]


def test_late_require_benefit_compares_with_the_stage_median(detector_cls):
    # Task 0: rate 0.01/s, progress 0.1 → 90 s left. A fresh copy takes the median: 50 s → kept;
    # with a 100 s median → dropped. With no success yet there is no estimate: kept.
    for successes, expected in (([], [0]), ([50.0], [0]), ([100.0], [])):
        det = detector_cls(LatePolicy(slow_task_quantile=0.5, min_runtime=0.0))
        stage = det.add_stage(num_tasks=4)
        tasks = det.add_tasks(stage, 4).tolist()
        for end in successes:
            det.finish(det.start(tasks[3], 0.0), end)
        attempts = det.start_many(tasks[:3], 0.0).tolist()
        det.heartbeat_many(attempts, 10.0, progress=[0.1, 0.5, 0.5])
        result = det.check(10.0)
        assert tasks_of(result) == expected
        if expected and successes:
            assert result.threshold.tolist() == successes


def test_late_cap_counts_running_speculative_attempts(detector_cls):
    det = detector_cls(LatePolicy(slow_task_quantile=0.75, speculative_cap=0.2, min_runtime=0.0,
                                  require_benefit=False, min_speculative=0))
    tasks, _ = late_stage(det, [0.1, 0.2, 0.3, 0.9, 0.9, 0.9, 0.9, 0.9])
    assert len(det.check(10.0)) == 3
    assert len(det.check(10.0, slots=10)) == 2  # floor(0.2 x 10)
    assert tasks_of(det.check(10.0, slots=10)) == [tasks[0], tasks[1]]
    assert len(det.check(10.0, slots=4)) == 0
    det.start(tasks[0], 10.0)  # one speculative attempt now runs
    assert tasks_of(det.check(10.0, slots=10)) == [tasks[1]]


def late_job_on_eight_slots(det):
    """32 tasks on 8 slots: 8 first attempts run, 4 of them 20x slower than the others."""
    stage = det.add_stage(num_tasks=32)
    tasks = det.add_tasks(stage, 32).tolist()
    attempts = det.start_many(tasks[:8], 0.0, nodes=list(range(8))).tolist()
    det.heartbeat_many(attempts, 100.0, progress=[0.025] * 4 + [0.5] * 4)
    return tasks


@pytest.mark.parametrize(("min_speculative", "copies"), [(1, 1), (2, 2), (0, 0)])
def test_late_cap_never_drops_below_min_speculative(detector_cls, min_speculative, copies):
    # floor(0.1 x 8 slots) = 0: only min_speculative lets LATE act on a pool this small.
    det = detector_cls(LatePolicy(slow_task_quantile=0.5, min_runtime=60.0,
                                  min_speculative=min_speculative))
    tasks = late_job_on_eight_slots(det)
    result = det.check(100.0, pending=24, slots=8)
    assert len(result) == copies
    assert set(tasks_of(result)) <= set(tasks[:4])


def test_late_default_copies_on_eight_slots_as_the_reference_does():
    import straggler as sg
    from straggler._reference import ReferenceDetector

    answers = []
    for cls in (ReferenceDetector, sg.Detector):
        det = cls(LatePolicy(slow_task_quantile=0.5))
        late_job_on_eight_slots(det)
        result = det.check(100.0, pending=24, slots=8)
        answers.append([getattr(result, c).tolist() for c in ("task", "attempt", "elapsed")])
    assert answers[0] == answers[1]
    assert len(answers[0][0]) == 1  # time left ties: the lowest task id, 0


def test_late_slow_nodes(detector_cls):
    # Node means: node 1: 0.01, node 2: 0.05, node 3: 0.09; quantile 0.25 of the three is 0.03.
    det = detector_cls(LatePolicy())
    late_stage(det, [0.1, 0.5, 0.9, 0.9], nodes=[1, 2, 3, 3])
    slow = det.slow_nodes(10.0)
    assert slow.dtype == np.int64 and slow.tolist() == [1]


def test_slow_nodes_is_empty_for_other_policies(detector_cls):
    det = detector_cls(SPARK0)
    _, tasks = stage_with(det, 2)
    det.start_many(tasks, 0.0, nodes=[1, 2])
    assert det.slow_nodes(5.0).tolist() == []


def test_flink_infinite_baseline_times_zero_bytes_is_the_lower_bound(detector_cls):
    # The median finished task read 0 bytes in 4 s: the baseline per byte is infinite. Only a
    # 0-byte task can reach it, and its threshold as a time is the lower bound (inf x 0 → 0).
    det = detector_cls(FlinkPolicy(baseline_ratio=0.3, baseline_multiplier=1.0,
                                   baseline_lower_bound=2.0))
    _, tasks = stage_with(det, 3, input_bytes=[0, 0, 10])
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 4.0)
    assert len(det.check(1.0)) == 0  # under the lower bound
    result = det.check(1e6)
    assert tasks_of(result) == [tasks[1]]
    assert result.threshold.tolist() == [2.0]
