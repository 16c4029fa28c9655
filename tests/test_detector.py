"""The Rust Detector's own behaviour: API shapes, conversions, errors, purity, threads."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import straggler as sg


def loaded(policy=None, n=4, durations=(1.0, 2.0, 3.0)):
    det = sg.Detector(policy if policy is not None else sg.SparkPolicy())
    stage = det.add_stage(num_tasks=n, name="map")
    tasks = det.add_tasks(stage, n)
    attempts = det.start_many(tasks, 0.0)
    for a, d in zip(attempts.tolist(), durations):
        det.finish(a, d)
    return det, stage, tasks, attempts


def test_ids_are_dense_and_arrays_are_int64():
    det = sg.Detector(sg.SparkPolicy())
    s0, s1 = det.add_stage(), det.add_stage(num_tasks=3)
    assert (s0, s1) == (0, 1)
    assert det.add_task(s0) == 0
    tasks = det.add_tasks(s1, 3, input_bytes=[10, 20, 30])
    assert tasks.dtype == np.int64 and tasks.tolist() == [1, 2, 3]
    attempts = det.start_many([0, 1, 2, 3], 0.0, nodes=[0, 1, 2, 3])
    assert attempts.dtype == np.int64 and attempts.tolist() == [0, 1, 2, 3]
    assert det.start(1, 1.0, node=5) == 4
    assert det.running(1) == 2 and det.running(2) == 1
    assert det.num_tasks == 4 and det.num_running == 5


def test_check_returns_equal_length_columns_most_urgent_first():
    det = sg.Detector(sg.SparkPolicy(quantile=0.5))
    stage = det.add_stage(num_tasks=6)
    tasks = det.add_tasks(stage, 6)
    attempts = det.start_many(tasks, [0.0, 0.0, 0.0, 5.0, 1.0, 3.0], nodes=[0, 1, 2, 3, 4, 5])
    for a in attempts[:3].tolist():
        det.finish(a, det_time := 10.0)
    c = det.check(40.0)
    # threshold = 1.5 × 10; the attempt started at 1.0 has run the longest.
    assert c.task.tolist() == [4, 5, 3]
    assert c.node.tolist() == [4, 5, 3]
    assert c.elapsed.tolist() == [39.0, 37.0, 35.0]
    assert c.threshold.tolist() == [15.0, 15.0, 15.0]
    assert c.stage.tolist() == [stage] * 3
    assert c.attempt.tolist() == [4, 5, 3]
    assert len(c) == 3 and det_time == 10.0
    for col in (c.task, c.attempt, c.stage, c.node):
        assert col.dtype == np.int64
    for col in (c.elapsed, c.threshold):
        assert col.dtype == np.float64


def test_check_is_a_pure_query():
    det, *_ = loaded()
    first = det.check(10.0)
    second = det.check(10.0)
    assert first.task.tolist() == second.task.tolist() == [3]
    assert det.running(3) == 1


def test_heartbeat_many_accepts_lists_scalars_and_other_dtypes():
    det, _, _, attempts = loaded()
    det.heartbeat_many([3], 4.0)
    det.heartbeat_many(np.array([3], dtype=np.int32), np.array([5.0], dtype=np.float32),
                       progress=[0.5], records=np.array([7], dtype=np.int64))
    with pytest.raises(ValueError, match="now"):
        det.heartbeat(3, 4.5)


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda d: d.finish(0, 5.0), ValueError, "attempt 0 has already finished"),
        (lambda d: d.finish_many([3], [5.0, 6.0]), ValueError, "now has 2 rows"),
        (lambda d: d.finish(42, 5.0), KeyError, "attempt id 42"),
        (lambda d: d.heartbeat(-1, 5.0), KeyError, "attempt id -1"),
        (lambda d: d.heartbeat(3, float("nan")), ValueError, "now"),
        (lambda d: d.heartbeat(3, float("inf")), ValueError, "now"),
        (lambda d: d.heartbeat(3, 5.0, progress=1.5), ValueError, "progress must be in"),
        (lambda d: d.heartbeat(3, 5.0, progress=float("nan")), ValueError, "progress"),
        (lambda d: d.heartbeat(3, 5.0, records=-1.0), ValueError, "records"),
        (lambda d: d.heartbeat_many([3, 3], [5.0]), ValueError, "now has 1 rows"),
        (lambda d: d.heartbeat_many([3], 5.0, progress=[0.1, 0.2]), ValueError, "progress has 2"),
        (lambda d: d.start(0, 5.0), ValueError, "task 0 has already succeeded"),
        (lambda d: d.start(9, 5.0), KeyError, "task id 9"),
        (lambda d: d.start(3, 5.0, node=-2), ValueError, "node"),
        (lambda d: d.start_many([3, 9], 5.0), KeyError, "task id 9"),
        (lambda d: d.add_task(7), KeyError, "stage id 7"),
        (lambda d: d.add_task(0), ValueError, "num_tasks=4"),
        (lambda d: d.add_stage(num_tasks=0), ValueError, "num_tasks"),
        (lambda d: d.add_tasks(0, -1), ValueError, "n must be"),
        (lambda d: d.check(float("nan")), ValueError, "now"),
        (lambda d: d.stage_stats(3), KeyError, "stage id 3"),
        (lambda d: d.heartbeat(2**70, 5.0), KeyError, "attempt id 1180591620717411303424"),
        (lambda d: d.start(-(2**70), 5.0), KeyError, "task id"),
        (lambda d: d.heartbeat(True, 5.0), TypeError, "attempt must be an int, got True"),
        (lambda d: d.heartbeat_many([3.0], 5.0), TypeError, "attempts must hold ints, got an array of dtype float64"),
        (lambda d: d.heartbeat_many(np.array([True]), 5.0), TypeError, "attempts must hold ints"),
        (lambda d: d.start_many(["3"], 5.0), TypeError, "tasks must hold ints"),
        (lambda d: d.check(5.0, pending=2**70), ValueError, "pending is out of range"),
        (lambda d: d.check(5.0, pending=1.5), TypeError, "pending must be an int"),
        (lambda d: d.task_done(4), KeyError, "task id 4"),
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(call, exc, words):
    det, *_ = loaded()
    before = (det.check(9.0).task.tolist(), det.stage_stats(0), det.num_running, det.num_tasks)
    with pytest.raises(exc, match=words):
        call(det)
    after = (det.check(9.0).task.tolist(), det.stage_stats(0), det.num_running, det.num_tasks)
    assert before == after


def test_a_batch_with_one_bad_row_is_rejected_whole():
    det = sg.Detector(sg.SparkPolicy())
    stage = det.add_stage()
    attempts = det.start_many(det.add_tasks(stage, 3), 0.0)
    det.heartbeat_many(attempts, 1.0, progress=[0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="now"):
        # The second row of attempt 0 goes back in time.
        det.heartbeat_many([0, 1, 0], [3.0, 3.0, 2.0])
    det.heartbeat_many([0, 1, 2], 1.5)  # still at 1.0: a rejected batch moved no clock


def test_policy_object_is_kept_and_wrong_objects_are_a_type_error():
    policy = sg.FlinkPolicy()
    assert sg.Detector(policy).policy is policy
    assert sg.Detector().policy is None
    with pytest.raises(TypeError, match="policy"):
        sg.Detector(policy="spark")


def test_stage_stats_reports_linear_percentiles():
    det, stage, *_ = loaded()
    stats = det.stage_stats(stage)
    assert stats["name"] == "map" and stats["num_tasks"] == 4 and stats["tasks"] == 4
    assert stats["successes"] == 3 and stats["running"] == 1
    assert stats["p50"] == np.quantile([1.0, 2.0, 3.0], 0.5)
    assert stats["p99"] == np.quantile([1.0, 2.0, 3.0], 0.99)


def test_many_threads_share_one_detector():
    """Eight threads start, heartbeat, finish and check at once; the counts add up."""
    det = sg.Detector(sg.SparkPolicy(quantile=0.1))
    stage = det.add_stage()
    per_thread, threads = 300, 8
    tasks = det.add_tasks(stage, per_thread * threads)
    wins = []
    errors = []

    def work(k):
        try:
            mine = tasks[k * per_thread : (k + 1) * per_thread]
            now = 0.0
            for t in mine.tolist():
                now += 0.01
                a = det.start(t, now, node=k)
                det.heartbeat_many([a], now + 0.001, progress=[0.5])
                det.check(now)
                wins.append(det.finish(a, now + 0.002))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert errors == []
    assert len(wins) == per_thread * threads and all(wins)
    assert det.stage_stats(stage)["successes"] == per_thread * threads
    assert det.num_running == 0


def test_finish_many_ends_every_row_and_reports_first_successes():
    det = sg.Detector(sg.SparkPolicy())
    stage = det.add_stage(num_tasks=3)
    tasks = det.add_tasks(stage, 3)
    a = det.start_many(tasks, 0.0).tolist()
    copy = det.start(0, 0.5, node=1)
    won = det.finish_many([a[0], copy, a[1], a[2]], [1.0, 1.5, 2.0, 2.5], ok=[True, True, False, True])
    assert won.dtype == np.bool_ and won.tolist() == [True, False, False, True]
    assert det.num_running == 0 and det.stage_stats(stage)["successes"] == 2


def test_finish_many_rejects_a_repeated_attempt_and_changes_nothing():
    det = sg.Detector(sg.SparkPolicy())
    a = det.start_many(det.add_tasks(det.add_stage(), 2), 0.0).tolist()
    with pytest.raises(ValueError, match="twice"):
        det.finish_many([a[0], a[1], a[0]], 1.0)
    assert det.num_running == 2
    assert det.finish_many(a, 1.0).tolist() == [True, True]


# Run in a child with its address space capped at 1 GiB: before the bound on `n`, these calls
# allocated per-task tables first and aborted the interpreter (an abort here is a failure of
# the child, not of the test run).
HUGE_ADD_TASKS = r"""
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
import straggler as sg

det = sg.Detector(sg.SparkPolicy())
declared = det.add_stage(num_tasks=10)
open_ended = det.add_stage()
cases = [
    (declared, 2**32 - 2, 7),
    (declared, 10**9, None),
    (declared, 11, [1] * 3),
    (open_ended, 10**9, None),
    (open_ended, 10**9, 7),
    (open_ended, 2**32 - 2, None),
]
for stage, n, input_bytes in cases:
    began = time.perf_counter()
    try:
        det.add_tasks(stage, n, input_bytes=input_bytes)
    except ValueError as e:
        assert f"n={n}" in str(e), str(e)
    else:
        sys.exit(f"add_tasks({stage}, {n}) was accepted")
    assert time.perf_counter() - began < 1.0, (n, time.perf_counter() - began)
    assert det.num_tasks == 0
assert det.add_tasks(declared, 10, input_bytes=7).tolist() == list(range(10))
assert det.add_tasks(open_ended, 1000).shape == (1000,)
print("ok")
"""


def test_add_tasks_refuses_a_huge_n_before_allocating():
    run = subprocess.run([sys.executable, "-c", HUGE_ADD_TASKS], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok"


def finished_stage(det, n=2):
    stage = det.add_stage(num_tasks=n)
    tasks = det.add_tasks(stage, n)
    det.finish_many(det.start_many(tasks, 0.0), 1.0)
    return stage, tasks


def test_remove_stage_releases_its_statistics():
    det = sg.Detector(sg.SparkPolicy())
    stages = [finished_stage(det)[0] for _ in range(100)]
    before = det.memory_bytes()["stages"]
    for stage in stages:
        det.remove_stage(stage)
    after = det.memory_bytes()["stages"]
    assert (before - after) / 100 > 500  # every removed stage gave back its sketches
    assert after / 100 < 32


def test_removed_stage_and_its_tasks_are_unknown_ids():
    det = sg.Detector(sg.SparkPolicy())
    stage, tasks = finished_stage(det)
    det.remove_stage(stage)
    for call in (lambda: det.remove_stage(stage), lambda: det.stage_stats(stage),
                 lambda: det.add_task(stage), lambda: det.task_done(int(tasks[0])),
                 lambda: det.running(int(tasks[1])), lambda: det.start(int(tasks[0]), 2.0)):
        with pytest.raises(KeyError):
            call()
    det.heartbeat(0, 5.0, progress=1.0)  # an ended attempt's late heartbeat is still ignored
    assert det.add_stage() == stage + 1  # ids are never reused


def test_remove_stage_refuses_a_stage_with_running_attempts_and_changes_nothing():
    det = sg.Detector(sg.SparkPolicy(quantile=0.5))
    stage = det.add_stage(num_tasks=2)
    tasks = det.add_tasks(stage, 2)
    first, second = det.start_many(tasks, 0.0).tolist()
    det.finish(first, 1.0)
    with pytest.raises(ValueError, match=rf"stage {stage}\b.*1 running"):
        det.remove_stage(stage)
    assert det.stage_stats(stage)["running"] == 1
    assert det.check(10.0).task.tolist() == [int(tasks[1])]
    det.finish(second, 11.0)
    det.remove_stage(stage)
