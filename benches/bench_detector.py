"""Detector benchmarks: the straggler check and heartbeats over a million running attempts.

Run: ``python -m pytest benches/bench_detector.py --benchmark-only``. Each group pits the
Detector against a baseline measured in the same run:

- ``check``: 1,000,000 running attempts in 1,000 stages, about 1 % of them slow. Baselines: a
  single numpy pass ``np.nonzero(now - start > cutoff[stage])`` over the same arrays (with
  the per-stage cutoffs given for free), and the pure-Python reference model deciding the
  same thing attempt by attempt.
- ``heartbeat_many``: 1e6 heartbeats (time, progress, records) against numpy fancy-index
  assignment of the same three arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

import straggler as sg

STAGES = 1_000
RUNNING_PER_STAGE = 1_000
DONE_PER_STAGE = 3_000  # 3,000 of 4,000 done: Spark's 0.75 gate and Flink's 0.75 ratio pass
SLOW_FRACTION = 0.01
NOW = 100.0


def _workload(seed: int = 0):
    """Start times and stage of the running attempts, and durations of the finished ones."""
    rng = np.random.default_rng(seed)
    durations = rng.lognormal(mean=0.0, sigma=0.3, size=(STAGES, DONE_PER_STAGE)) + 1.0
    running = STAGES * RUNNING_PER_STAGE
    # Most running attempts started a moment ago; ~1 % started long before `NOW`.
    elapsed = rng.uniform(0.0, 1.0, size=running)
    slow = rng.random(running) < SLOW_FRACTION
    elapsed[slow] = rng.uniform(10.0, 50.0, size=int(slow.sum()))
    return durations, NOW - elapsed, slow


def _loaded(policy, seed: int = 0):
    durations, start, slow = _workload(seed)
    det = sg.Detector(policy)
    for s in range(STAGES):
        stage = det.add_stage(num_tasks=DONE_PER_STAGE + RUNNING_PER_STAGE)
        tasks = det.add_tasks(stage, DONE_PER_STAGE + RUNNING_PER_STAGE)
        done = det.start_many(tasks[:DONE_PER_STAGE], 0.0)
        for attempt, d in zip(done.tolist(), durations[s].tolist()):
            det.finish(attempt, d)
        det.start_many(
            tasks[DONE_PER_STAGE:], start[s * RUNNING_PER_STAGE : (s + 1) * RUNNING_PER_STAGE]
        )
    return det, durations, start, slow


@pytest.fixture(scope="module")
def spark_loaded():
    return _loaded(sg.SparkPolicy())


@pytest.fixture(scope="module")
def flink_loaded():
    return _loaded(sg.FlinkPolicy(baseline_lower_bound=0.0))


def _stage_of_running():
    return np.repeat(np.arange(STAGES), RUNNING_PER_STAGE)


def _spark_cutoffs(durations: np.ndarray) -> np.ndarray:
    ranked = np.sort(durations, axis=1)
    median = ranked[:, DONE_PER_STAGE // 2]
    return np.maximum(1.5 * median, 0.1)


@pytest.mark.benchmark(group="check-spark")
def test_check_spark_detector(benchmark, spark_loaded):
    det, durations, start, slow = spark_loaded
    out = benchmark(det.check, NOW)
    # The same decision as the numpy pass below.
    cutoff = _spark_cutoffs(durations)
    expected = np.nonzero(NOW - start > cutoff[_stage_of_running()])[0]
    assert len(out) == len(expected) and 0.005 < len(out) / len(start) < 0.02


@pytest.mark.benchmark(group="check-spark")
def test_check_spark_numpy_single_pass(benchmark, spark_loaded):
    _, durations, start, _ = spark_loaded
    cutoff = _spark_cutoffs(durations)
    stage = _stage_of_running()
    benchmark(lambda: np.nonzero(NOW - start > cutoff[stage]))


def _python_loop_spark(now, start, stage_of, durations_by_stage, running_per_task, done):
    """Spark's decision written the way a driver loop writes it: per stage the median of the
    successful durations, then every running attempt compared one by one."""
    threshold = []
    for durations in durations_by_stage:
        ranked = sorted(durations)
        threshold.append(max(1.5 * ranked[len(ranked) // 2], 0.1))
    picked = []
    for i in range(len(start)):
        if done[i] or running_per_task[i] != 1:
            continue
        elapsed = now - start[i]
        t = threshold[stage_of[i]]
        if elapsed > t:
            picked.append((elapsed - t, i))
    picked.sort(reverse=True)
    return picked


@pytest.mark.benchmark(group="check-spark")
def test_check_spark_python_loop(benchmark, spark_loaded):
    _, durations, start, _ = spark_loaded
    args = (
        NOW,
        start.tolist(),
        _stage_of_running().tolist(),
        durations.tolist(),
        [1] * len(start),
        [False] * len(start),
    )
    picked = benchmark.pedantic(_python_loop_spark, args=args, rounds=3, iterations=1)
    cutoff = _spark_cutoffs(durations)
    assert len(picked) == int(np.count_nonzero(NOW - start > cutoff[_stage_of_running()]))


@pytest.mark.benchmark(group="check-flink")
def test_check_flink_detector(benchmark, flink_loaded):
    det, *_ = flink_loaded
    out = benchmark(det.check, NOW)
    assert len(out) > 0


@pytest.mark.benchmark(group="check-flink")
def test_check_flink_numpy_single_pass(benchmark, flink_loaded):
    _, durations, start, _ = flink_loaded
    count = int(np.floor((DONE_PER_STAGE + RUNNING_PER_STAGE) * 0.75 + 0.5))
    ranked = np.sort(durations, axis=1)
    cutoff = 1.5 * ranked[:, count // 2]
    stage = _stage_of_running()
    benchmark(lambda: np.nonzero(NOW - start >= cutoff[stage]))


def _heartbeat_rows(det_running: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    attempts = rng.permutation(det_running).astype(np.int64)
    return attempts, rng.random(det_running), rng.integers(0, 10**6, det_running).astype(np.float64)


@pytest.mark.benchmark(group="heartbeat_many")
def test_heartbeat_many_detector(benchmark):
    det = sg.Detector(None)
    n = STAGES * RUNNING_PER_STAGE
    stage = det.add_stage()
    det.start_many(det.add_tasks(stage, n), 0.0)
    attempts, progress, records = _heartbeat_rows(n)
    clock = iter(np.arange(1.0, 1e9))  # every round is later than the one before

    def beat():
        det.heartbeat_many(attempts, next(clock), progress=progress, records=records)

    benchmark(beat)


@pytest.mark.benchmark(group="heartbeat_many")
def test_heartbeat_many_numpy_fancy_assignment(benchmark):
    n = STAGES * RUNNING_PER_STAGE
    beat_at, progress_at, records_at = np.zeros(n), np.zeros(n), np.zeros(n)
    attempts, progress, records = _heartbeat_rows(n)

    def assign():
        beat_at[attempts] = 2.0
        progress_at[attempts] = progress
        records_at[attempts] = records

    benchmark(assign)


def test_memory_per_live_attempt():
    """Bytes the Detector holds per running attempt and per stage (reported, and bounded)."""
    det = sg.Detector(sg.SparkPolicy())
    n = STAGES * RUNNING_PER_STAGE
    stages = [det.add_stage() for _ in range(STAGES)]
    for s in stages:
        det.start_many(det.add_tasks(s, RUNNING_PER_STAGE), 0.0)
    mem = det.memory_bytes()
    per_attempt = mem["live"] / n
    print(f"\nlive table: {per_attempt:.1f} bytes per running attempt; "
          f"tasks: {mem['tasks'] / n:.1f} bytes per task")
    assert per_attempt <= 64
