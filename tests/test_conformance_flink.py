"""Flink's slow-task detector scenarios, replayed against our Detector with a FlinkPolicy.

Each test ports one test of Apache Flink's ``ExecutionTimeBasedSlowTaskDetectorTest`` (named
in its comment), in seconds. Flink's tests run on the wall clock with every task deployed at
once; here the times are explicit. Flink returns a map of slow tasks; we compare the task ids.

Not ported: ``testHandleNotifySlowTasksException`` -- it covers Flink's periodic timer handing
a listener's exception to the fatal-error handler; our Detector has no timer and no listener
(the executor calls ``check`` itself).
"""

from __future__ import annotations

from straggler._reference import normalised
from straggler.policies import FlinkPolicy

# Integer.MAX_VALUE milliseconds, Flink's "large lower bound".
JAVA_INT_MAX_MS = 2_147_483_647 / 1000.0


def flink(ratio: float, multiplier: float, lower_bound: float) -> FlinkPolicy:
    # Flink's createSlowTaskDetector(ratio, multiplier, lowerBoundMillis).
    return FlinkPolicy(baseline_ratio=ratio, baseline_multiplier=multiplier,
                       baseline_lower_bound=lower_bound)


def running_stage(det, n=3, input_bytes=None, now=0.0):
    stage = det.add_stage(num_tasks=n)
    tasks = det.add_tasks(stage, n, input_bytes=input_bytes)
    return stage, tasks.tolist(), det.start_many(tasks, now).tolist()


def slow(result) -> list[int]:
    return sorted(result.task.tolist())


def test_no_finished_task_but_ratio_is_zero(detector_cls):
    # testNoFinishedTaskButRatioIsZero: ratio 0 → N = 0 → baseline 0; every running task is slow.
    det = detector_cls(flink(0.0, 1.0, 0.0))
    _, tasks, _ = running_stage(det)
    assert slow(det.check(0.01)) == tasks


def test_all_tasks_in_created_and_no_slow_tasks(detector_cls):
    # testAllTasksInCreatedAndNoSlowTasks: tasks that never started are never slow.
    det = detector_cls(flink(0.0, 1.0, 0.0))
    stage = det.add_stage(num_tasks=3)
    det.add_tasks(stage, 3)
    assert len(det.check(10.0)) == 0


def test_finished_task_not_exceed_ratio(detector_cls):
    # testFinishedTaskNotExceedRatio: 1 of 3 finished is under ratio 0.5: stage not examined.
    det = detector_cls(flink(0.5, 1.0, 0.0))
    _, _, attempts = running_stage(det)
    det.finish(attempts[0], 0.001)
    assert len(det.check(0.01)) == 0


def test_finished_task_exceed_ratio(detector_cls):
    # testFinishedTaskExceedRatio: the finished task started last, so it has the shortest
    # time; the two running ones have run at least as long and are slow at multiplier 1.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    stage = det.add_stage(num_tasks=3)
    tasks = det.add_tasks(stage, 3).tolist()
    det.start_many(tasks[:2], 0.0)
    late = det.start(tasks[2], 0.001)
    det.finish(late, 0.005)
    assert slow(det.check(0.005)) == tasks[:2]


def test_large_lower_bound(detector_cls):
    # testLargeLowerBound: no task has run Integer.MAX_VALUE ms.
    det = detector_cls(flink(0.3, 1.0, JAVA_INT_MAX_MS))
    _, _, attempts = running_stage(det)
    det.finish(attempts[2], 0.001)
    assert len(det.check(0.01)) == 0


def test_large_multiplier(detector_cls):
    # testLargeMultiplier: 10 ms x 1,000,000 is far beyond every running task.
    det = detector_cls(flink(0.3, 1_000_000.0, 0.0))
    _, _, attempts = running_stage(det)
    det.finish(attempts[2], 0.010)
    assert len(det.check(0.011)) == 0


def test_multiple_job_vertex_finished_task_exceed_ratio(detector_cls):
    # testMultipleJobVertexFinishedTaskExceedRatio: two stages, one finished task each, two
    # slow tasks each.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    _, tasks1, attempts1 = running_stage(det)
    _, tasks2, attempts2 = running_stage(det)
    det.finish(attempts1[2], 0.001)
    det.finish(attempts2[2], 0.001)
    result = det.check(0.002)
    assert slow(result) == tasks1[:2] + tasks2[:2]
    assert sorted(result.stage.tolist()) == [0, 0, 1, 1]


def test_finished_task_exceed_ratio_in_dynamic_graph(detector_cls):
    # testFinishedTaskExceedRatioInDynamicGraph: the downstream vertex's parallelism is not
    # decided yet (an open stage with no tasks); it is skipped, the first one is examined.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    _, tasks1, attempts1 = running_stage(det)
    det.add_stage(num_tasks=None)
    det.finish(attempts1[2], 0.001)
    assert slow(det.check(0.002)) == tasks1[:2]


def test_balanced_input(detector_cls):
    # testBalancedInput: the second stage's tasks read 1024 bytes each; one finished, the
    # other two are slow per byte. The first stage has no finished task and is not examined.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    running_stage(det)
    _, tasks2, attempts2 = running_stage(det, input_bytes=1024)
    det.finish(attempts2[2], 0.001)
    assert slow(det.check(0.002)) == tasks2[:2]


def test_balanced_input_with_large_lower_bound(detector_cls):
    # testBalancedInputWithLargeLowerBound
    det = detector_cls(flink(0.3, 1.0, JAVA_INT_MAX_MS))
    running_stage(det)
    _, _, attempts2 = running_stage(det, input_bytes=1024)
    det.finish(attempts2[2], 0.001)
    assert len(det.check(0.002)) == 0


def test_unbalanced_input(detector_cls):
    # testUnbalancedInput: the finished task read 1024 bytes in 1 s; the running ones read
    # 1000x and 4000x more, so per byte they are far faster than the baseline.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    running_stage(det)
    _, _, attempts2 = running_stage(det, input_bytes=[1024, 1_024_000, 4_096_000])
    det.finish(attempts2[0], 1.0)
    assert len(det.check(1.001)) == 0


def test_sorted_execution_time_with_input_bytes():
    # testSortedExecutionTimeWithInputBytes, for the reference model's per-byte time.
    # Unbalanced input: the same time over more bytes is faster.
    assert normalised(10, 20) < normalised(10, 10)
    # Balanced input: the shorter time is faster.
    assert normalised(10, 10) < normalised(20, 10)
    # Zero bytes and a positive time: slower than anything with bytes.
    assert normalised(1, 0) > normalised(10, 10)
    # Zero bytes and zero time: faster than anything positive.
    assert normalised(0, 0) < normalised(10, 10)
    assert normalised(0, 0) == 0.0


def test_unknown_input_bytes_compare_raw_times(detector_cls):
    # testSortedExecutionTimeWithInputBytes, UNKNOWN bytes: raw times are compared. The
    # stage's tasks have no byte counts, so the baseline is a plain time (2 s here).
    det = detector_cls(flink(0.3, 1.0, 0.0))
    _, tasks, attempts = running_stage(det)
    det.finish(attempts[0], 2.0)
    assert len(det.check(1.999)) == 0
    result = det.check(2.0)  # inclusive
    assert slow(result) == tasks[1:]
    assert result.threshold.tolist() == [2.0, 2.0]


def test_mixed_known_and_unknown_input_bytes_fall_back_to_raw_time(detector_cls):
    # testSortedExecutionTimeWithInputBytes, known mixed with UNKNOWN: Flink throws
    # IllegalArgumentException; we compare raw times for such a stage instead.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    _, tasks, attempts = running_stage(det, input_bytes=[100, -1, 1_000_000])
    det.finish(attempts[0], 2.0)
    assert len(det.check(1.5)) == 0
    # Per byte, task 2 would be far below the baseline; by raw time it is slow.
    assert slow(det.check(2.5)) == tasks[1:]


def test_zero_input_bytes_with_positive_time_is_infinitely_slow(detector_cls):
    # testSortedExecutionTimeWithInputBytes, (1, 0) > (10, 10), seen from a running task: a
    # task with no input that has run for any time is slower than any per-byte baseline.
    det = detector_cls(flink(0.3, 1.0, 0.0))
    _, tasks, attempts = running_stage(det, input_bytes=[10, 1000, 0])
    det.finish(attempts[0], 10.0)
    result = det.check(10.5)
    assert result.task.tolist() == [tasks[2]]
    # Its threshold as a time: the lower bound (baseline x 0 bytes counts as 0).
    assert result.threshold.tolist() == [0.0]
