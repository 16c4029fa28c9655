"""A task that ends without success leaves its stage's denominator (issue 11, item 5).

``Detector.drop_task(task)`` says a task will get no more attempts: its Future was cancelled
before it ran, or it failed for good. Such a task no longer counts in its stage's size, so the
gates that compare successes with the size (Spark's quantile of the stage, Flink's finished
ratio) open once the tasks that remain have succeeded. Every test runs against both the Rust
Detector and the reference model.
"""

from __future__ import annotations

import math

import pytest
from straggler.policies import (
    FlinkPolicy,
    LatePolicy,
    MantriPolicy,
    SmallpondPolicy,
    SparkPolicy,
)


def listed(result) -> list[int]:
    return sorted(result.task.tolist())


# --- Spark: successes >= max(floor(quantile * n), 1), n = tasks that may still succeed ---------


@pytest.mark.parametrize("declared", [True, False])
def test_spark_gate_opens_once_the_tasks_that_remain_succeeded(detector_cls, declared):
    # 40 tasks; 20 run, 20 wait and are cancelled. 15 of the 20 that ran succeed at 1 s:
    # 15 / (40 - 20) = 75 %, the gate opens and the 5 still running at 2 s (> 1.5 x 1 s) are
    # copied. Counted against 40 the gate needs 30 successes and never opens.
    det = detector_cls(SparkPolicy())
    stage = det.add_stage(num_tasks=40 if declared else None)
    tasks = det.add_tasks(stage, 40).tolist()
    ran, waiting = tasks[:20], tasks[20:]
    attempts = det.start_many(ran, 0.0).tolist()
    for attempt in attempts[:14]:
        det.finish(attempt, 1.0)
    for task in waiting:
        det.drop_task(task)
    assert len(det.check(2.0)) == 0  # 14 of 20: under the gate
    det.finish(attempts[14], 1.0)
    result = det.check(2.0)
    assert listed(result) == ran[15:]
    assert result.threshold.tolist() == [1.5] * 5
    assert det.stage_stats(stage)["dropped"] == 20


def test_spark_gate_counts_every_task_without_drops(detector_cls):
    # The same stage with the 20 waiting tasks still counted: 15 / 40 never reaches 75 %.
    det = detector_cls(SparkPolicy())
    stage = det.add_stage(num_tasks=40)
    tasks = det.add_tasks(stage, 40).tolist()
    attempts = det.start_many(tasks[:20], 0.0).tolist()
    for attempt in attempts[:15]:
        det.finish(attempt, 1.0)
    assert len(det.check(1000.0)) == 0


def test_spark_tasks_that_failed_for_good_leave_the_gate(detector_cls):
    # 40 tasks, 12 fail four times each (spark.task.maxFailures) and are dropped; 21 of the
    # other 28 succeed: floor(0.75 x 28) = 21, the gate opens. Against 40 it needs 30.
    det = detector_cls(SparkPolicy())
    stage = det.add_stage(num_tasks=40)
    tasks = det.add_tasks(stage, 40).tolist()
    failing, good = tasks[:12], tasks[12:]
    now = 0.0
    for _ in range(4):
        for attempt in det.start_many(failing, now).tolist():
            det.finish(attempt, now + 0.1, ok=False)
        now += 0.1
    attempts = det.start_many(good, now).tolist()
    for attempt in attempts[:21]:
        det.finish(attempt, now + 1.0)
    assert len(det.check(now + 2.0)) == 0  # 21 of 40
    for task in failing:
        det.drop_task(task)
    assert listed(det.check(now + 2.0)) == good[21:]


def test_spark_a_stage_left_with_one_task_is_not_speculated(detector_cls):
    # Spark never speculates a task set of one task (no statistics to judge it by) unless a
    # duration threshold is set; a stage that drops to one task counts as such a stage.
    for threshold, expected in ((None, 0), (10.0, 1)):
        det = detector_cls(SparkPolicy(quantile=0.5, task_duration_threshold=threshold))
        stage = det.add_stage(num_tasks=2)
        first, second = det.add_tasks(stage, 2).tolist()
        det.start(first, 0.0)
        det.drop_task(second)
        assert len(det.check(1000.0)) == expected


def test_spark_declared_stage_still_takes_its_remaining_tasks(detector_cls):
    # A declared stage keeps room for the tasks not yet added; its size is the declared count
    # minus the dropped tasks.
    det = detector_cls(SparkPolicy(quantile=0.5))
    stage = det.add_stage(num_tasks=6)
    dropped = det.add_tasks(stage, 2).tolist()
    for task in dropped:
        det.drop_task(task)
    tasks = det.add_tasks(stage, 4).tolist()  # the declared 6 are now all added
    with pytest.raises(ValueError):
        det.add_task(stage)
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    assert len(det.check(5.0)) == 0  # 1 of 4: floor(0.5 x 4) = 2
    det.finish(attempts[1], 1.0)
    assert listed(det.check(5.0)) == tasks[2:]


# --- Flink: finished / n >= baseline_ratio, N = round(n x ratio) -------------------------------


def test_flink_finished_ratio_counts_the_tasks_that_remain(detector_cls):
    # 8 tasks, 4 dropped, 3 of the other 4 finished (at 1, 2, 3 s): 3 / 4 = 0.75, examined;
    # N = round(4 x 0.75) = 3, baseline = 1.5 x the 2nd of the 3 fastest = 3 s. Counted
    # against 8 (3 / 8) the stage is never examined.
    det = detector_cls(FlinkPolicy(baseline_lower_bound=0.0))
    stage = det.add_stage(num_tasks=8)
    tasks = det.add_tasks(stage, 8).tolist()
    attempts = det.start_many(tasks[:4], 0.0).tolist()
    for attempt, end in zip(attempts[:3], (1.0, 2.0, 3.0)):
        det.finish(attempt, end)
    assert len(det.check(100.0)) == 0
    for task in tasks[4:]:
        det.drop_task(task)
    assert len(det.check(2.999)) == 0
    result = det.check(3.0)  # inclusive
    assert listed(result) == [tasks[3]]
    assert result.threshold.tolist() == [3.0]


def test_flink_open_ended_stage(detector_cls):
    det = detector_cls(FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=1.0,
                                   baseline_lower_bound=0.0))
    stage = det.add_stage()
    tasks = det.add_tasks(stage, 6).tolist()
    attempts = det.start_many(tasks[:2], 0.0).tolist()
    det.finish(attempts[0], 1.0)
    assert len(det.check(10.0)) == 0  # 1 / 6
    for task in tasks[2:]:
        det.drop_task(task)
    assert listed(det.check(10.0)) == [tasks[1]]  # 1 / 2


def test_flink_a_dropped_task_of_unknown_size_leaves_the_byte_test(detector_cls):
    # A stage whose tasks all have known input bytes compares time per byte. A task of
    # unknown size made it compare raw times; once dropped, it no longer counts.
    det = detector_cls(FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=1.0,
                                   baseline_lower_bound=0.0))
    stage = det.add_stage(num_tasks=3)
    small, big, unknown = det.add_tasks(stage, 3, input_bytes=[10, 1000, -1]).tolist()
    first, second = det.start_many([small, big], 0.0).tolist()
    det.drop_task(unknown)
    det.finish(first, 1.0)  # 0.1 s per byte
    # Raw time would call the big task slow at 1 s; per byte it is slow from 100 s on.
    assert len(det.check(99.0)) == 0
    result = det.check(100.0)
    assert listed(result) == [big]
    assert result.threshold.tolist() == [100.0]


# --- the policies that do not count the stage's size -----------------------------------------


def test_smallpond_gate_is_a_count_of_successes_and_drops_leave_it(detector_cls):
    # smallpond's gate is min_samples successes, whatever the stage's size: dropping tasks
    # neither opens nor closes it, and a dropped task is never examined.
    det = detector_cls(SmallpondPolicy(min_samples=3, probe_timeout=0.0))
    stage = det.add_stage(num_tasks=10)
    tasks = det.add_tasks(stage, 10).tolist()
    attempts = det.start_many(tasks[:6], 0.0).tolist()
    for attempt in attempts[:2]:
        det.finish(attempt, 1.0)
    for task in tasks[6:]:
        det.drop_task(task)
    assert len(det.check(5.0)) == 0  # 2 successes < 3
    det.finish(attempts[2], 1.0)
    result = det.check(5.0)
    assert listed(result) == tasks[3:6]
    assert det.stage_stats(stage)["dropped"] == 4


@pytest.mark.parametrize("policy", [
    LatePolicy(min_runtime=0.0), MantriPolicy(min_samples=1), SparkPolicy(quantile=0.5),
    FlinkPolicy(baseline_lower_bound=0.0), SmallpondPolicy(min_samples=1, probe_timeout=0.0),
])
def test_a_dropped_task_is_never_a_candidate(detector_cls, policy):
    det = detector_cls(policy)
    stage = det.add_stage(num_tasks=4)
    tasks = det.add_tasks(stage, 4).tolist()
    attempts = det.start_many(tasks, 0.0).tolist()
    det.finish(attempts[0], 1.0)
    det.heartbeat(attempts[1], 1.0, progress=0.5)
    det.heartbeat(attempts[2], 1.0, progress=0.01)
    det.finish(attempts[3], 1.0, ok=False)
    det.drop_task(tasks[3])
    assert tasks[3] not in det.check(50.0, pending=2, slots=4).task.tolist()


# --- the call's contract ------------------------------------------------------------------------


def test_drop_refuses_a_task_with_running_attempts_and_changes_nothing(detector_cls):
    det = detector_cls(SparkPolicy(quantile=0.5))
    stage = det.add_stage(num_tasks=2)
    done, running = det.add_tasks(stage, 2).tolist()
    first, second = det.start_many([done, running], 0.0).tolist()
    det.finish(first, 1.0)
    before = (listed(det.check(5.0)), det.stage_stats(stage), det.running(running))
    with pytest.raises(ValueError, match=rf"task {running}\b.*1 running attempt"):
        det.drop_task(running)
    assert (listed(det.check(5.0)), det.stage_stats(stage), det.running(running)) == before
    # Ended without success, it may go.
    det.finish(second, 6.0, ok=False)
    det.drop_task(running)
    assert det.running(running) == 0 and det.task_done(running) is False


def test_drop_of_a_succeeded_or_dropped_task_is_a_value_error(detector_cls):
    det = detector_cls(SparkPolicy())
    stage = det.add_stage()
    done, other = det.add_tasks(stage, 2).tolist()
    det.finish(det.start(done, 0.0), 1.0)
    with pytest.raises(ValueError, match=rf"task {done}\b.*succeeded"):
        det.drop_task(done)
    det.drop_task(other)
    with pytest.raises(ValueError, match=rf"task {other}\b.*dropped"):
        det.drop_task(other)
    assert det.stage_stats(stage)["dropped"] == 1


def test_a_dropped_task_cannot_start_again(detector_cls):
    det = detector_cls(SparkPolicy())
    stage = det.add_stage()
    keep, gone = det.add_tasks(stage, 2).tolist()
    det.drop_task(gone)
    with pytest.raises(ValueError, match=rf"task {gone}\b.*dropped"):
        det.start(gone, 0.0)
    with pytest.raises(ValueError, match=rf"task {gone}\b.*dropped"):
        det.start_many([keep, gone], 0.0)
    assert det.running(keep) == 0  # the rejected batch started nothing


def test_drop_of_an_unknown_task_is_a_key_error(detector_cls):
    det = detector_cls(SparkPolicy())
    stage = det.add_stage()
    (task,) = det.add_tasks(stage, 1).tolist()
    for bad in (-1, 1, 2**40):
        with pytest.raises(KeyError):
            det.drop_task(bad)
    for bad in (True, "0", 0.0, None):
        with pytest.raises(TypeError):
            det.drop_task(bad)
    det.drop_task(task)
    det.remove_stage(stage)  # a stage of dropped tasks is removed like any other
    with pytest.raises(KeyError):
        det.drop_task(task)
    with pytest.raises(KeyError):
        det.stage_stats(stage)


def test_stage_stats_counts_dropped_tasks(detector_cls):
    det = detector_cls(None)
    stage = det.add_stage(num_tasks=5, name="map")
    tasks = det.add_tasks(stage, 3).tolist()
    det.drop_task(tasks[0])
    stats = det.stage_stats(stage)
    assert (stats["num_tasks"], stats["tasks"], stats["dropped"]) == (5, 3, 1)
    assert (stats["successes"], stats["running"]) == (0, 0)
    assert math.isnan(stats["p50"])
