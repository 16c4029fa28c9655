"""Detector benchmarks: the straggler check and heartbeats over a million running attempts.

Run: ``python -m pytest benches/bench_detector.py --benchmark-only``. Each group pits the
Detector against baselines measured in the same run:

- ``check-<policy>`` (spark, flink, smallpond, late, mantri): 1,000,000 running attempts
  in 1,000 stages (3,000 of each stage's 4,000 tasks done), about 1 % of the running ones
  slow. Baselines: a single numpy pass over the same arrays with the per-stage cutoffs
  given for free (``np.nonzero(now - start > cutoff[stage])``, or the policy's
  equivalent), and Spark's decision written as a plain Python loop over the same running
  attempts.
- ``reference-<policy>``: the pure-Python reference model (``straggler._reference``) against
  the Detector on the same events, at a tenth of the size (100 stages, 100,000 running).
- ``heartbeat_many``: 1e6 heartbeats (time, progress, records) against numpy fancy-index
  assignment of the same three arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import straggler as sg
from straggler._reference import ReferenceDetector

STAGES = 1_000
RUNNING_PER_STAGE = 1_000
DONE_PER_STAGE = 3_000  # of 4,000: Spark's 0.75 gate and Flink's 0.75 ratio are met
SLOW_FRACTION = 0.01
NOW = 100.0

POLICIES = {
    "spark": sg.SparkPolicy(),
    "flink": sg.FlinkPolicy(baseline_lower_bound=0.0),
    "smallpond": sg.SmallpondPolicy(probe_timeout=5.0),
    "late": sg.LatePolicy(min_runtime=0.0, require_benefit=False),
    "mantri": sg.MantriPolicy(),
}


def _workload(stages: int, seed: int = 0):
    """Durations of the finished tasks, start times and progress of the running ones."""
    rng = np.random.default_rng(seed)
    durations = rng.lognormal(mean=0.0, sigma=0.3, size=(stages, DONE_PER_STAGE)) + 1.0
    running = stages * RUNNING_PER_STAGE
    # Most running attempts started a moment ago; ~1 % started long before `NOW`.
    elapsed = rng.uniform(0.5, 1.0, size=running)
    slow = rng.random(running) < SLOW_FRACTION
    elapsed[slow] = rng.uniform(10.0, 50.0, size=int(slow.sum()))
    start = NOW - elapsed
    # Progress reported half a second ago: the slow ones crawl.
    progress = np.where(slow, 0.05, 0.5) * rng.uniform(0.5, 1.0, size=running)
    return durations, start, progress


def _load(det, stages: int, seed: int = 0):
    durations, start, progress = _workload(stages, seed)
    for s in range(stages):
        stage = det.add_stage(num_tasks=DONE_PER_STAGE + RUNNING_PER_STAGE)
        tasks = det.add_tasks(stage, DONE_PER_STAGE + RUNNING_PER_STAGE)
        done = det.start_many(tasks[:DONE_PER_STAGE], 0.0)
        if hasattr(det, "finish_many"):
            det.finish_many(done, durations[s])
        else:
            for attempt, d in zip(done.tolist(), durations[s].tolist()):
                det.finish(attempt, d)
        rows = slice(s * RUNNING_PER_STAGE, (s + 1) * RUNNING_PER_STAGE)
        running = det.start_many(tasks[DONE_PER_STAGE:], start[rows], nodes=np.arange(RUNNING_PER_STAGE) % 100)
        det.heartbeat_many(running, NOW - 0.25, progress=progress[rows])
    return durations, start, progress


_CACHE: dict = {}


def loaded(name: str):
    """The Detector under `name`'s policy, with the full workload (built once per run)."""
    if name not in _CACHE:
        det = sg.Detector(POLICIES[name])
        _CACHE[name] = (det, *_load(det, STAGES))
    return _CACHE[name]


def _stage_of_running(stages: int = STAGES) -> np.ndarray:
    return np.repeat(np.arange(stages), RUNNING_PER_STAGE)


def _numpy_pass(name: str, durations, start, progress):
    """The policy's decision as one numpy pass, with every per-stage number precomputed."""
    stage = _stage_of_running()
    ranked = np.sort(durations, axis=1)
    if name == "spark":
        cutoff = np.maximum(1.5 * ranked[:, DONE_PER_STAGE // 2], 0.1)
        return lambda: np.nonzero(NOW - start > cutoff[stage])
    if name == "flink":
        count = int(np.floor((DONE_PER_STAGE + RUNNING_PER_STAGE) * 0.75 + 0.5))
        cutoff = 1.5 * ranked[:, count // 2]
        return lambda: np.nonzero(NOW - start >= cutoff[stage])
    if name == "smallpond":
        p50, p95 = np.percentile(durations, [50, 95], axis=1)
        excess = np.maximum(5.0, p95 - p50)
        return lambda: np.nonzero(NOW - start - p50[stage] >= excess[stage])
    rate = progress / (NOW - 0.25 - start)
    if name == "mantri":
        # Duplicate test with one attempt each and no task waiting: t_rem / 2 > the duration
        # at rank floor(0.25 n), t_rem from the progress rate.
        quick = ranked[:, int(np.floor(0.25 * DONE_PER_STAGE))]
        return lambda: np.nonzero((1.0 - progress) / rate / 2.0 > quick[stage])
    # LATE: the per-stage quantile of the rates is part of the decision, so numpy does it too.

    def late():
        cut = np.quantile(rate.reshape(STAGES, RUNNING_PER_STAGE), 0.25, axis=1)
        return np.nonzero(rate < cut[stage])

    return late


@pytest.mark.parametrize("name", list(POLICIES))
def test_check_detector(benchmark, name):
    det, durations, start, progress = loaded(name)
    benchmark.group = f"check-{name}"
    out = benchmark(det.check, NOW)
    expected = _numpy_pass(name, durations, start, progress)()[0]
    if name == "mantri":
        # Past 1,024 successes the stage's quantile comes from the sketch (within 1 %).
        assert abs(len(out) - len(expected)) <= 0.01 * len(expected) and len(expected) > 0
    else:
        assert len(out) == len(expected) > 0


def test_check_detector_late_capped(benchmark):
    """LATE as a scheduler calls it, with its slots: at most 10 % of 100,000 slots copied."""
    det, *_ = loaded("late")
    benchmark.group = "check-late"
    out = benchmark(det.check, NOW, slots=100_000)
    assert len(out) == 10_000


@pytest.mark.parametrize("name", list(POLICIES))
def test_check_numpy_single_pass(benchmark, name):
    _, durations, start, progress = loaded(name)
    benchmark.group = f"check-{name}"
    benchmark(_numpy_pass(name, durations, start, progress))


def _python_loop_spark(now, start, stage_of, durations_by_stage):
    """Spark's decision written the way a driver loop writes it: per stage the median of the
    successful durations, then every running attempt compared one by one."""
    threshold = []
    for durations in durations_by_stage:
        ranked = sorted(durations)
        threshold.append(max(1.5 * ranked[len(ranked) // 2], 0.1))
    picked = []
    for i in range(len(start)):
        elapsed = now - start[i]
        t = threshold[stage_of[i]]
        if elapsed > t:
            picked.append((elapsed - t, i))
    picked.sort(reverse=True)
    return picked


def test_check_spark_python_loop(benchmark):
    det, durations, start, _ = loaded("spark")
    benchmark.group = "check-spark"
    args = (NOW, start.tolist(), _stage_of_running().tolist(), durations.tolist())
    picked = benchmark.pedantic(_python_loop_spark, args=args, rounds=3, iterations=1)
    assert len(picked) == len(det.check(NOW))


REFERENCE_STAGES = STAGES // 10


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("impl", ["detector", "reference"])
def test_check_against_reference(benchmark, name, impl):
    cls = sg.Detector if impl == "detector" else ReferenceDetector
    det = cls(POLICIES[name])
    _load(det, REFERENCE_STAGES)
    benchmark.group = f"reference-{name}"
    rounds = 20 if impl == "detector" else 1
    out = benchmark.pedantic(det.check, args=(NOW,), rounds=rounds, iterations=1)
    assert len(out) > 0


def _heartbeat_rows(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.permutation(n).astype(np.int64), rng.random(n), rng.integers(0, 10**6, n).astype(np.float64)


@pytest.mark.benchmark(group="heartbeat_many")
def test_heartbeat_many_detector(benchmark):
    det = sg.Detector(None)
    n = STAGES * RUNNING_PER_STAGE
    det.start_many(det.add_tasks(det.add_stage(), n), 0.0)
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


def test_memory_per_live_attempt_and_per_stage():
    """Bytes held per running attempt and per stage (printed, and bounded)."""
    det, *_ = loaded("spark")
    mem = det.memory_bytes()
    running = STAGES * RUNNING_PER_STAGE
    per_attempt = mem["live"] / running
    per_stage = mem["stages"] / STAGES
    started = STAGES * (DONE_PER_STAGE + RUNNING_PER_STAGE)
    print(f"\nlive table: {per_attempt:.1f} bytes per running attempt (capacity included); "
          f"attempt index: {mem['attempt_index'] / started:.1f} bytes per attempt ever started; "
          f"tasks: {mem['tasks'] / started:.1f} bytes per task; "
          f"stage statistics: {per_stage:.0f} bytes per stage of {DONE_PER_STAGE} successes")
    assert per_attempt <= 64
    assert per_stage < 64 * 1024


# --- check after many stages ---------------------------------------------------------------
# `check` must cost in proportion to the stages with running attempts, not to every stage ever
# added: 100,000 finished stages (two tasks each, both done) and one live stage with one
# running attempt, against the same live stage alone. A ratio near 1 is the target.

MANY_STAGES = 100_000


def _after_stages(name: str, finished: int, remove: bool = False):
    det = sg.Detector(POLICIES[name])
    for _ in range(finished):
        stage = det.add_stage(num_tasks=2)
        attempts = det.start_many(det.add_tasks(stage, 2), 0.0)
        det.finish_many(attempts, [1.0, 1.25])
        if remove:
            det.remove_stage(stage)
    stage = det.add_stage(num_tasks=2)
    tasks = det.add_tasks(stage, 2)
    first, running = det.start_many(tasks, 0.0).tolist()
    det.finish(first, 1.0)
    det.heartbeat(running, 50.0, progress=0.01)
    return det


_MANY: dict = {}


@pytest.mark.parametrize("finished", [0, MANY_STAGES])
@pytest.mark.parametrize("name", list(POLICIES))
def test_check_after_many_stages(benchmark, name, finished):
    key = (name, finished)
    if key not in _MANY:
        _MANY[key] = _after_stages(name, finished)
    det = _MANY[key]
    benchmark.group = f"check-after-{MANY_STAGES}-stages-{name}"
    out = benchmark(det.check, NOW, slots=8)
    # The finished stages change nothing in the answer: the same as with the live stage alone.
    alone = _after_stages(name, 0).check(NOW, slots=8)
    assert out.task.tolist() == (alone.task + 2 * finished).tolist()


def test_memory_released_by_remove_stage():
    """Bytes a finished stage holds, and what is left of it once removed (printed, bounded)."""
    kept = _after_stages("spark", MANY_STAGES).memory_bytes()
    removed = _after_stages("spark", MANY_STAGES, remove=True).memory_bytes()
    per_kept = kept["stages"] / MANY_STAGES
    per_removed = removed["stages"] / MANY_STAGES
    print(f"\nstage statistics: {per_kept:.0f} bytes per finished stage kept, "
          f"{per_removed:.1f} bytes per removed stage")
    assert per_removed < 32 < per_kept
