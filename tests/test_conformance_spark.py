"""Spark's own speculation scenarios, replayed against our Detector with a SparkPolicy.

Each test ports one test of Apache Spark's ``TaskSetManagerSuite`` (named in its comment): the
scenario and the expectation, in seconds instead of milliseconds. Spark's
``checkSpeculatableTasks`` marks a task once and then remembers it; our ``check`` is a pure
query, so where Spark asserts "not submitted twice" we assert that the task drops out once
its copy runs (the scheduler's part of the same contract).
"""

from __future__ import annotations

import numpy as np
import pytest
from straggler.policies import SparkPolicy

# Spark's ManualClock advances 1 ms between events in these tests.
TICK = 0.001
# Spark's efficiency tests run every task for RUNTIME = 20 s.
RUNTIME = 20.0
RECORDS = 10_000.0


def listed(result) -> list[int]:
    return sorted(result.task.tolist())


def start_all(det, n, *, num_tasks=None, input_bytes=None, nodes=None, now=0.0):
    stage = det.add_stage(num_tasks=num_tasks if num_tasks is not None else n)
    tasks = det.add_tasks(stage, n, input_bytes=input_bytes)
    attempts = det.start_many(tasks, now, nodes=nodes)
    return stage, tasks.tolist(), attempts.tolist()


# --- the few-tasks path ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold_provided", "num_tasks", "num_slots"),
    [
        # "SPARK-29976 when a speculation time threshold is provided, should speculative run the
        # task even if there are not enough successful runs, total tasks: 1" (and ": 2")
        (True, 1, 1), (True, 2, 2),
        # "SPARK-29976: when the speculation time threshold is not provided,don't speculative
        # run if there are not enough successful runs, total tasks: 1" (and ": 2")
        (False, 1, 1), (False, 2, 2),
        # "SPARK-29976 when a speculation time threshold is provided, should not speculative if
        # there are too many tasks in the stage even though time threshold is provided"
        (True, 2, 1),
    ],
)
def test_spark_29976_duration_threshold(detector_cls, threshold_provided, num_tasks, num_slots):
    # Spark's testSpeculationDurationThreshold: quantile 1.0 so the regular path never opens,
    # threshold 60 min, checked at exactly 60 min and at 60 min + 1 s.
    policy = SparkPolicy(quantile=1.0, multiplier=1.5, min_runtime=0.0,
                         task_duration_threshold=3600.0 if threshold_provided else None,
                         slots_per_executor=num_slots)
    det = detector_cls(policy)
    _, tasks, attempts = start_all(det, num_tasks, nodes=list(range(num_tasks)))
    assert len(det.check(3600.0)) == 0  # strict: equal to the threshold is not over it
    result = det.check(3601.0)
    if threshold_provided and num_slots >= num_tasks:
        assert listed(result) == tasks
        assert result.threshold.tolist() == [3600.0] * num_tasks
        # Spark: "Should not submit duplicated tasks" -- here: once copies run, nothing more.
        det.start_many(result.task, 3601.0, nodes=[9] * num_tasks)
        assert len(det.check(3602.0)) == 0
    else:
        assert len(result) == 0


def test_spark_29976_regular_speculation_configs_still_take_effect(detector_cls):
    # "SPARK-29976 Regular speculation configs should still take effect even when a threshold
    # is provided": quantile 0.5 of 2 tasks is met after one success, and the regular
    # threshold 1.5 x median (1.5 s) fires long before the 60 min duration threshold.
    policy = SparkPolicy(quantile=0.5, multiplier=1.5, min_runtime=0.0,
                         task_duration_threshold=3600.0, slots_per_executor=2)
    det = detector_cls(policy)
    _, tasks, attempts = start_all(det, 2)
    assert det.finish(attempts[0], 1.0) is True
    result = det.check(2.0)
    assert listed(result) == [tasks[1]]
    assert result.threshold.tolist() == [1.5]


def test_spark_30417_task_cpus_without_executor_cores_speculates_a_single_task(detector_cls):
    # "SPARK-30417 when spark.task.cpus is greater than spark.executor.cores due to standalone
    # settings, speculate if there is only one task in the stage": executor cores unknown,
    # so one slot is assumed and the one-task stage takes the few-tasks path.
    policy = SparkPolicy.from_conf({
        "spark.speculation": "true",
        "spark.speculation.quantile": "1.0",
        "spark.task.cpus": "2",
        "spark.speculation.task.duration.threshold": "60min",
    })
    assert policy.slots_per_executor == 1
    det = detector_cls(policy)
    _, tasks, _ = start_all(det, 1)
    assert len(det.check(3600.0)) == 0
    assert listed(det.check(3601.0)) == tasks


def test_spark_32170_speculation_for_task_set_with_single_task(detector_cls):
    # "SPARK-32170: test speculation for TaskSet with single task": a duration threshold of 0
    # leaves a one-task stage alone; a positive one (15, read in ms) speculates it.
    for threshold, expected in (("0", []), ("15", [0])):
        policy = SparkPolicy.from_conf({"spark.speculation": "true",
                                        "spark.speculation.task.duration.threshold": threshold})
        det = detector_cls(policy)
        start_all(det, 1)
        assert listed(det.check(RUNTIME)) == expected


# --- the minimum runtime --------------------------------------------------------------------------


def test_spark_33741_minimum_task_runtime_before_speculation(detector_cls):
    # "SPARK-33741 Test minimum amount of time a task runs before being considered for
    # speculation": median 1 s x 1.5 = 1.5 s is raised to minTaskRuntime = 3 s.
    policy = SparkPolicy.from_conf({
        "spark.speculation.quantile": "0.5", "spark.speculation.multiplier": "1.5",
        "spark.executor.cores": "2", "spark.task.cpus": "1",
        "spark.speculation.minTaskRuntime": "3000",
    })
    det = detector_cls(policy)
    _, tasks, attempts = start_all(det, 2)
    det.finish(attempts[0], 1.0)
    assert len(det.check(2.0)) == 0
    assert len(det.check(3.0)) == 0  # our boundary check: elapsed == 3 s is not over it
    result = det.check(4.0)
    assert listed(result) == [tasks[1]]
    assert result.threshold.tolist() == [3.0]


# --- the efficiency test -----------------------------------------------------------------------------


def efficiency_scenario(det, n, rate_factors, finished=(0, 1, 2)):
    """Spark's SPARK-32170 setup: every task runs RUNTIME; the finished ones processed
    RECORDS per input kind (input + shuffle, so 2 x RECORDS); the running ones report
    ``factor x`` that in a heartbeat at RUNTIME."""
    _, tasks, attempts = start_all(det, n)
    for task, factor in rate_factors.items():
        det.heartbeat(attempts[task], RUNTIME, records=2 * RECORDS * factor)
    for task in finished:
        det.finish(attempts[task], RUNTIME, records=2 * RECORDS)
    return tasks


@pytest.mark.parametrize(("min_runtime", "expected"), [(0.0, [3, 4]), (10.0, [3]), (50.0, [])])
def test_spark_32170_min_threshold_for_speculating_inefficient_tasks(
    detector_cls, min_runtime, expected
):
    # "SPARK-32170: test SPECULATION_MIN_THRESHOLD for speculating inefficient tasks":
    # multiplier 0 makes minTaskRuntime the threshold. At 0 s both running tasks are past
    # 2 x threshold; at 10 s only the slow one (rate 0.4 of the stage's) passes; at 50 s the
    # 20 s runtime is under the threshold.
    policy = SparkPolicy(quantile=0.75, multiplier=0.0, min_runtime=min_runtime, efficiency=True)
    det = detector_cls(policy)
    efficiency_scenario(det, 5, {3: 0.4, 4: 5.0})
    assert listed(det.check(RUNTIME)) == expected


@pytest.mark.parametrize(("process_rate_multiplier", "expected"), [(0.5, []), (0.8, [3])])
def test_spark_32170_process_rate_multiplier_for_speculating_inefficient_tasks(
    detector_cls, process_rate_multiplier, expected
):
    # "SPARK-32170: test SPECULATION_EFFICIENCY_TASK_PROCESS_RATE_MULTIPLIER for speculating
    # inefficient tasks": task 3 runs at 0.6 of the stage's rate; 0.5 < 0.6 < 0.8.
    policy = SparkPolicy(multiplier=0.0, min_runtime=15.0, efficiency=True,
                         process_rate_multiplier=process_rate_multiplier)
    det = detector_cls(policy)
    efficiency_scenario(det, 4, {3: 0.6})
    assert listed(det.check(RUNTIME)) == expected


@pytest.mark.parametrize(("factor", "expected"), [(1.0, [3]), (2.0, [])])
def test_spark_32170_duration_factor_for_speculating_tasks(detector_cls, factor, expected):
    # "SPARK-32170: test SPECULATION_EFFICIENCY_TASK_DURATION_FACTOR for speculating tasks":
    # the rate test fails (0.6 >= 0.5); 20 s > 1 x 15 s speculates, 20 s < 2 x 15 s does not.
    policy = SparkPolicy(multiplier=0.0, min_runtime=15.0, efficiency=True,
                         process_rate_multiplier=0.5, long_run_task_factor=factor)
    det = detector_cls(policy)
    efficiency_scenario(det, 4, {3: 0.6})
    assert listed(det.check(RUNTIME)) == expected


# --- copies and their outcomes ------------------------------------------------------------------------


def test_kill_other_task_attempts_when_one_attempt_belonging_to_the_same_task_succeeds(detector_cls):
    # "Kill other task attempts when one attempt belonging to the same task succeeds":
    # multiplier 0 (speculate as soon as the gate opens), quantile 0.75 of 4 tasks = 3.
    det = detector_cls(SparkPolicy(multiplier=0.0, min_runtime=0.0))
    _, tasks, attempts = start_all(det, 4, nodes=[1, 1, 2, 2])
    for task in (0, 1, 2):
        assert det.finish(attempts[task], TICK) is True
    result = det.check(2 * TICK)
    assert listed(result) == [3]
    assert result.node.tolist() == [2]
    copy = det.start(3, 2 * TICK, node=1)
    assert copy == 4  # Spark's speculative attempt is taskId 4 too: ids are dense
    assert det.running(3) == 2
    assert det.finish(copy, 3 * TICK) is True
    # The scheduler now kills the original; the task is done whatever the loser reports.
    assert det.task_done(3)
    assert len(det.check(4 * TICK)) == 0
    assert det.finish(attempts[3], 4 * TICK, ok=False) is False
    assert det.running(3) == 0
    assert det.stage_stats(0)["successes"] == 4


def test_killing_speculative_tasks_does_not_count_towards_aborting_the_taskset(detector_cls):
    # "Killing speculative tasks does not count towards aborting the taskset": tasks 3 and 4
    # fail three times each and are re-run; failures neither feed the statistics nor stop
    # the re-runs from being speculated; a killed loser ends without a success.
    det = detector_cls(SparkPolicy(quantile=0.6, multiplier=0.0, min_runtime=0.0))
    _, tasks, attempts = start_all(det, 5, nodes=[1, 1, 1, 2, 2])
    for task in (0, 1, 2):
        det.finish(attempts[task], TICK)
    current = {3: attempts[3], 4: attempts[4]}
    for _ in range(3):
        for task in (3, 4):
            assert det.finish(current[task], TICK, ok=False) is False
            current[task] = det.start(task, TICK, node=2)
    assert det.stage_stats(0)["successes"] == 3
    result = det.check(2 * TICK)
    assert listed(result) == [3, 4]
    assert sorted(result.attempt.tolist()) == sorted(current.values())
    copy = det.start(3, 2 * TICK, node=1)
    assert copy == 11  # Spark: the speculative task is taskId 11
    assert det.finish(copy, 3 * TICK) is True
    assert det.finish(current[3], 3 * TICK, ok=False) is False  # killed, not a success
    assert listed(det.check(3 * TICK)) == [4]
    copy2 = det.start(4, 3 * TICK, node=1)
    assert det.finish(copy2, 4 * TICK) is True
    assert det.stage_stats(0)["successes"] == 5


def test_spark_13343_a_second_success_is_not_counted(detector_cls):
    # "SPARK-13343 speculative tasks that didn't commit shouldn't be marked as success": the
    # original finishes first; the copy's late success is discarded.
    det = detector_cls(SparkPolicy(multiplier=0.0, min_runtime=0.0))
    _, tasks, attempts = start_all(det, 4)
    for task in (0, 1, 2):
        det.finish(attempts[task], TICK)
    assert listed(det.check(2 * TICK)) == [3]
    copy = det.start(3, 2 * TICK, node=1)
    assert det.finish(attempts[3], 3 * TICK) is True
    assert det.finish(copy, 3 * TICK) is False
    stats = det.stage_stats(0)
    assert stats["successes"] == 4
    # The duration that counts is the original's (3 ms), not the copy's (1 ms).
    assert stats["p99"] == pytest.approx(float(np.percentile([TICK, TICK, TICK, 3 * TICK], 99)))


def test_spark_26755_a_speculative_task_is_submitted_only_once(detector_cls):
    # "SPARK-26755 Ensure that a speculative task is submitted only once for execution".
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=0.0, min_runtime=0.0))
    _, tasks, attempts = start_all(det, 4, nodes=[1, 1, 2, 2])
    for task in (0, 2):
        det.finish(attempts[task], TICK)
    result = det.check(2 * TICK)
    assert listed(result) == [1, 3]
    assert det.running(1) == 1 and det.running(3) == 1
    copies = det.start_many(result.task, 2 * TICK, nodes=[2, 1])
    assert copies.tolist() == [4, 5]
    assert det.running(1) == 2 and det.running(3) == 2
    # "Running checkSpeculatableTasks again should return false"
    assert len(det.check(3 * TICK)) == 0


def test_spark_26755_speculative_task_obeys_original_locality_preferences(detector_cls):
    # "SPARK-26755 Ensure that a speculative task obeys original locality preferences": the
    # locality itself is the scheduler's; the Detector's part is to report each straggler
    # with the node it runs on, so the copy can avoid it.
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=0.0, min_runtime=0.0))
    _, tasks, attempts = start_all(det, 3, nodes=[1, 2, 3])
    det.finish(attempts[2], TICK)
    result = det.check(2 * TICK)
    assert result.task.tolist() == [0, 1]  # equal urgency: by task id
    assert result.node.tolist() == [1, 2]
    det.start(0, 2 * TICK, node=3)
    det.start(1, 2 * TICK, node=4)
    assert len(det.check(3 * TICK)) == 0


def test_spark_24755_executor_loss_can_cause_task_to_not_be_resubmitted(detector_cls):
    # "SPARK-24755 Executor loss can cause task to not be resubmitted": the speculation part;
    # quantile 0.5 of 4 tasks after two successes, both running tasks exceed threshold 0.
    det = detector_cls(SparkPolicy(quantile=0.5, multiplier=0.0, min_runtime=0.0))
    _, tasks, attempts = start_all(det, 4, nodes=[1, 1, 3, 2])
    for task in (0, 1):
        det.finish(attempts[task], TICK)
    assert listed(det.check(2 * TICK)) == [2, 3]
    copy = det.start(2, 2 * TICK, node=2)
    assert copy == 4
    assert det.finish(copy, 3 * TICK) is True
    assert listed(det.check(3 * TICK)) == [3]


def test_spark_24677_no_successful_durations_means_no_speculation(detector_cls):
    # "SPARK-24677: Avoid NoSuchElementException from MedianHeap": quantile 0.1 of 10 tasks,
    # 8 running and none succeeded here; check must simply find nothing.
    det = detector_cls(SparkPolicy(quantile=0.1, multiplier=0.0, min_runtime=0.0))
    stage = det.add_stage(num_tasks=10)
    tasks = det.add_tasks(stage, 10)
    det.start_many(tasks[:8], 0.0)
    assert len(det.check(100.0)) == 0
