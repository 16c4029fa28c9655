"""SpeculativeExecutor on real thread pools with real files: speculation, failures, outputs."""

from __future__ import annotations

import collections
import logging
import os
import threading
import time

import pytest
import straggler as sg

# A small Spark policy so that a test job of ~50 ms tasks gets its stragglers copied quickly.
FAST_SPARK = sg.SparkPolicy(min_runtime=0.05, interval=0.01)


def sleep_with_heartbeats(seconds: float, step: float = 0.005) -> int:
    """Work for ``seconds`` in small steps, heartbeating; returns the steps done."""
    steps = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sg.heartbeat(progress=min(1.0, steps * step / seconds))
        time.sleep(step)
        steps += 1
    return steps


class StragglerJob:
    """40 tasks of ``base`` seconds; the first attempts of ``slow`` take ``factor`` x longer.

    Records, per task, every resolution of its Future and whether a slow attempt was stopped
    before it finished its work.
    """

    def __init__(self, slow=(13, 26, 39), base=0.05, factor=30, heartbeat=True):
        self.slow, self.base, self.factor, self.heartbeat = set(slow), base, factor, heartbeat
        self.lock = threading.Lock()
        self.resolved: collections.Counter[int] = collections.Counter()
        self.stopped_early: list[int] = []
        self.completed_slow: list[int] = []

    def __call__(self, i: int) -> tuple[int, int]:
        attempt = sg.current_attempt()
        slow = i in self.slow and attempt.attempt == 0
        seconds = self.base * (self.factor if slow else 1)
        if not self.heartbeat:
            time.sleep(seconds)
            if slow:
                with self.lock:
                    self.completed_slow.append(i)
            return i, attempt.attempt
        try:
            sleep_with_heartbeats(seconds)
        except sg.AttemptCancelled:
            with self.lock:
                self.stopped_early.append(i)
            raise
        return i, attempt.attempt

    def run(self, policy, workers=4, tasks=40):
        start = time.monotonic()
        with sg.SpeculativeExecutor(max_workers=workers, policy=policy) as ex:
            futures = [ex.submit(self, i) for i in range(tasks)]
            for i, future in enumerate(futures):
                future.add_done_callback(lambda f, i=i: self._count(i))
            values = [f.result() for f in futures]
        return time.monotonic() - start, values, ex

    def _count(self, i):
        with self.lock:
            self.resolved[i] += 1


def test_stragglers_get_copies_and_the_job_ends_in_a_fraction_of_the_baseline(caplog):
    baseline = StragglerJob()
    baseline_time, baseline_values, baseline_ex = baseline.run(policy=None)
    job = StragglerJob()
    with caplog.at_level(logging.INFO, logger="straggler"):
        spec_time, values, ex = job.run(policy=FAST_SPARK)

    assert spec_time < 0.6 * baseline_time
    assert [v[0] for v in values] == list(range(40))
    assert job.resolved == {i: 1 for i in range(40)}
    stats = ex.stats()
    assert stats.tasks == 40
    assert stats.speculative >= 3 and stats.speculative_wins == 3
    assert stats.attempts == 40 + stats.speculative
    assert stats.failures == 0
    # Every slow first attempt lost to its copy and stopped at a heartbeat, long before its end.
    assert {i: v[1] for i, v in enumerate(values) if i in job.slow} == {13: 1, 26: 1, 39: 1}
    assert sorted(job.stopped_early) == [13, 26, 39]
    assert stats.killed == stats.speculative - stats.speculative_wins + 3
    assert stats.wasted_seconds > 0
    assert baseline_ex.stats().speculative == 0 and baseline_values == [(i, 0) for i in range(40)]
    copies = [r.getMessage() for r in caplog.records if "starting copy" in r.getMessage()]
    assert any(
        m.startswith("task 13 of stage default ran ") and m.endswith("starting copy (attempt 1)") for m in copies
    )


def test_a_loser_that_never_heartbeats_runs_on_and_its_result_is_discarded():
    job = StragglerJob(slow=(39,), base=0.02, factor=25, heartbeat=False)
    _, values, ex = job.run(policy=FAST_SPARK, tasks=40)
    assert values[39] == (39, 1)         # the copy's result, not the original's
    assert job.completed_slow == [39]    # the original ran to its end (shutdown waited for it)
    events = [e for e in ex.events() if e.task == 39]
    assert [(e.kind, e.attempt, e.speculative) for e in events if e.kind != "start"] == [
        ("finish", 1, True), ("kill", 0, False)]
    assert ex.stats().killed == 1 and ex.stats().failures == 0


def write_part(i: int, fail_attempts: set[tuple[int, int]], slow: set[int]) -> str:
    """Write a two-file output for task ``i``; some attempts fail half-way, some straggle."""
    attempt = sg.current_attempt()
    staging = attempt.staging_dir
    with open(os.path.join(staging, "part.txt"), "w") as f:
        f.write(f"{i}\n")
    if (i, attempt.attempt) in fail_attempts:
        raise OSError(f"injected failure of task {i} attempt {attempt.attempt}")
    if i in slow and attempt.attempt == 0:
        sleep_with_heartbeats(1.0)
    with open(os.path.join(staging, "_SUCCESS"), "w"):
        pass
    return staging


def test_failures_and_copies_commit_every_output_exactly_once(tmp_path):
    out = tmp_path / "out"
    tasks = 30
    # A fifth of the attempts fail: the first attempt of every fifth task, and one retry.
    fail_attempts = {(i, 0) for i in range(0, tasks, 5)} | {(5, 1)}
    slow = {17, 28}
    with sg.SpeculativeExecutor(max_workers=4, policy=FAST_SPARK) as ex:
        futures = [
            ex.submit(sg.options(write_part, output=str(out / f"part-{i:03d}")), i, fail_attempts, slow)
            for i in range(tasks)
        ]
        staged = [f.result() for f in futures]
    assert sorted(os.listdir(out)) == [f"part-{i:03d}" for i in range(tasks)]
    for i in range(tasks):
        part = out / f"part-{i:03d}"
        assert sorted(os.listdir(part)) == ["_SUCCESS", "part.txt"]
        assert (part / "part.txt").read_text() == f"{i}\n"
    assert all(not os.path.exists(s) for s in staged)  # staging dirs were renamed away
    stats = ex.stats()
    assert stats.failures == len(fail_attempts)
    assert stats.speculative_wins >= 1
    fails = sorted((e.task, e.attempt) for e in ex.events() if e.kind == "fail")
    assert fails == sorted(fail_attempts)


def test_output_that_already_exists_is_refused(tmp_path):
    (tmp_path / "part-0").mkdir()
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        with pytest.raises(FileExistsError, match="part-0"):
            ex.submit(sg.options(write_part, output=str(tmp_path / "part-0")), 0, set(), set())
        ex.submit(sg.options(write_part, output=str(tmp_path / "part-1")), 1, set(), set())
        # Refused while the first task runs (reserved) and after it committed (it exists).
        with pytest.raises((ValueError, FileExistsError), match="part-1"):
            ex.submit(sg.options(write_part, output=str(tmp_path / "part-1")), 1, set(), set())


def always_fails(i):
    raise ValueError(f"task {i} attempt {sg.current_attempt().attempt}")


def test_a_task_that_always_fails_gets_its_last_exception_after_max_failures():
    with sg.SpeculativeExecutor(max_workers=2, policy=None, max_failures=3) as ex:
        future = ex.submit(always_fails, 7)
        with pytest.raises(ValueError, match="task 7 attempt 2"):
            future.result()
    assert ex.stats().failures == 3 and ex.stats().attempts == 3
    assert [e.kind for e in ex.events() if e.kind != "start"] == ["fail"] * 3


def test_a_flaky_task_succeeds_within_max_failures():
    def flaky():
        attempt = sg.current_attempt().attempt
        if attempt < 2:
            raise RuntimeError("flaky")
        return attempt

    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        assert ex.submit(flaky).result() == 2
    assert ex.stats().failures == 2


def test_every_future_resolves_once_with_its_value_when_submitted_from_8_threads():
    results = {}
    barrier = threading.Barrier(8)

    def submitter(ex, k):
        barrier.wait()
        results[k] = [ex.submit(lambda a, b=0: (a, b, sg.current_attempt().task), k * 100 + j, b=j)
                      for j in range(50)]

    with sg.SpeculativeExecutor(max_workers=4) as ex:
        threads = [threading.Thread(target=submitter, args=(ex, k)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        values = {k: [f.result() for f in fs] for k, fs in results.items()}
    for k, vs in values.items():
        assert [(a, b) for a, b, _ in vs] == [(k * 100 + j, j) for j in range(50)]
    assert sorted(t for vs in values.values() for _, _, t in vs) == list(range(400))
    assert ex.stats().tasks == 400 and ex.stats().attempts == 400
