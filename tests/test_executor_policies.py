"""Each policy drives a small job end to end on a real thread pool, and a process pool works."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import straggler as sg

# Small thresholds so that ~30 ms tasks and a ~1 s straggler exercise each policy's real path.
POLICIES = {
    "spark": sg.SparkPolicy(min_runtime=0.05, interval=0.01),
    "flink": sg.FlinkPolicy(baseline_lower_bound=0.05, block_slow_node_duration=0.5, interval=0.01),
    "smallpond": sg.SmallpondPolicy(min_samples=5, probe_timeout=0.05, interval=0.01),
}
LATE = sg.LatePolicy(min_runtime=0.05, speculative_cap=0.5, interval=0.01)

SLOW_TASK = 20


def task_with_progress(i: int, long_tail: bool = False) -> tuple[int, int]:
    """30 ms of work, heartbeating its progress; task SLOW_TASK's first attempt takes 30x longer.

    With ``long_tail`` the last four tasks take 0.4 s (SLOW_TASK's first attempt 4 s), so that
    the straggler runs beside healthy attempts: LATE compares progress rates of running
    attempts, and a straggler running alone is not slower than itself.
    """
    attempt = sg.current_attempt()
    seconds = 0.4 if long_tail and i >= SLOW_TASK else 0.03
    seconds *= (10 if long_tail else 30) if i == SLOW_TASK and attempt.attempt == 0 else 1
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sg.heartbeat(progress=min(1.0, elapsed / seconds), records=int(elapsed * 1000))
        time.sleep(0.003)
    return i, attempt.attempt


@pytest.mark.parametrize("kind", list(POLICIES))
def test_policy_copies_the_straggler_and_the_copy_wins(kind):
    policy = POLICIES[kind]
    with sg.SpeculativeExecutor(max_workers=4, policy=policy) as ex:
        assert ex.interval == policy.interval
        values = list(ex.map(task_with_progress, range(24)))
    assert [v[0] for v in values] == list(range(24))
    assert values[SLOW_TASK][1] >= 1  # the copy's result
    stats = ex.stats()
    assert stats.speculative >= 1 and stats.speculative_wins == 1 and stats.failures == 0
    copies = [e for e in ex.events() if e.kind == "start" and e.speculative]
    assert {e.task for e in copies} == {SLOW_TASK}


def test_late_copies_the_attempt_whose_progress_rate_lags_its_stage():
    # Five slots for the four tail tasks: one is free for the copy while the others still run.
    with sg.SpeculativeExecutor(max_workers=5, policy=LATE) as ex:
        assert ex.interval == LATE.interval
        values = [f.result() for f in [ex.submit(task_with_progress, i, long_tail=True) for i in range(24)]]
    assert [v[0] for v in values] == list(range(24))
    assert values[SLOW_TASK][1] == 1
    stats = ex.stats()
    assert (stats.speculative, stats.speculative_wins, stats.failures) == (1, 1, 0)


def first_four_twenty_times_slower(i: int) -> int:
    """50 ms of work with progress heartbeats; the first attempts of tasks 0-3 take 1 s."""
    seconds = 0.05 * (20 if i < 4 and sg.current_attempt().attempt == 0 else 1)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sg.heartbeat(progress=min(1.0, elapsed / seconds))
        time.sleep(0.005)
    return i


def test_late_with_its_default_cap_copies_on_eight_threads():
    # floor(0.1 x 8 slots) = 0; min_speculative=1 keeps one copy allowed at a time.
    policy = sg.LatePolicy(min_runtime=0.05, interval=0.01)
    with sg.SpeculativeExecutor(max_workers=8, policy=policy) as ex:
        assert list(ex.map(first_four_twenty_times_slower, range(32))) == list(range(32))
    stats = ex.stats()
    assert stats.speculative >= 1 and stats.speculative_wins >= 1 and stats.failures == 0


def test_flink_tops_up_to_max_concurrent_executions_at_once():
    policy = sg.FlinkPolicy(baseline_lower_bound=0.05, max_concurrent_executions=3, interval=0.01)
    with sg.SpeculativeExecutor(max_workers=4, policy=policy) as ex:
        values = list(ex.map(task_with_progress, range(24)))
    assert values[SLOW_TASK][1] >= 1
    starts = [e for e in ex.events() if e.kind == "start" and e.task == SLOW_TASK]
    assert [e.speculative for e in starts] == [False, True, True]


def test_a_task_marked_not_speculatable_is_never_copied():
    with sg.SpeculativeExecutor(max_workers=4, policy=POLICIES["spark"]) as ex:
        fn = sg.options(task_with_progress, speculatable=False)
        values = [f.result() for f in [ex.submit(fn, i) for i in range(24)]]
    assert values[SLOW_TASK] == (SLOW_TASK, 0)
    assert ex.stats().speculative == 0


def test_interval_defaults_to_the_policys_own_check_interval():
    for policy in (sg.SparkPolicy(), sg.FlinkPolicy(), sg.SmallpondPolicy(), sg.LatePolicy()):
        with sg.SpeculativeExecutor(max_workers=1, policy=policy) as ex:
            assert ex.interval == policy.interval
    with sg.SpeculativeExecutor(max_workers=1, policy=sg.FlinkPolicy(), interval=0.25) as ex:
        assert ex.interval == 0.25


# --- a process pool as the engine ------------------------------------------------------------

def attempt_in_child(i: int) -> tuple[int, int, int, bool, int]:
    """Runs in a worker process: what it sees of its attempt, and heartbeats (a no-op there)."""
    attempt = sg.current_attempt()
    sg.heartbeat(progress=0.5)
    if i == 7 and attempt.attempt == 0:
        time.sleep(1.0)  # straggles without heartbeats: only time-based detection sees it
    if attempt.staging_dir is not None:
        with open(os.path.join(attempt.staging_dir, "part.txt"), "w") as f:
            f.write(f"{i} from attempt {attempt.attempt}\n")
    return i, attempt.task, attempt.attempt, attempt.speculative, os.getpid()


def fails_once_in_child(i: int) -> int:
    if sg.current_attempt().attempt == 0:
        raise KeyError(i)
    return i


@pytest.fixture(scope="module")
def process_pool():
    # spawn: no fork of a process that runs threads; the children import this module by name.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def test_process_pool_runs_attempts_commits_outputs_and_copies_by_time(process_pool, tmp_path):
    with sg.SpeculativeExecutor(process_pool, policy=sg.SparkPolicy(min_runtime=0.2, interval=0.02)) as ex:
        futures = [ex.submit(sg.options(attempt_in_child, output=str(tmp_path / f"p{i}")), i) for i in range(12)]
        values = [f.result() for f in futures]
    assert [v[:2] for v in values] == [(i, i) for i in range(12)]
    assert all(v[4] != os.getpid() for v in values)
    assert values[7][2:4] == (1, True)  # the copy won while the first attempt slept on
    assert sorted(os.listdir(tmp_path)) == sorted(f"p{i}" for i in range(12))
    assert (tmp_path / "p7" / "part.txt").read_text() == "7 from attempt 1\n"
    # The engine is the caller's: still usable after our shutdown.
    assert process_pool.submit(abs, -3).result() == 3


def test_process_pool_retries_a_failed_attempt(process_pool):
    with sg.SpeculativeExecutor(process_pool, policy=None) as ex:
        assert list(ex.map(fails_once_in_child, range(4))) == [0, 1, 2, 3]
    assert ex.stats().failures == 4


def test_a_thread_pool_passed_in_is_used_and_left_running():
    with ThreadPoolExecutor(3, thread_name_prefix="mine") as pool:
        import threading

        with sg.SpeculativeExecutor(pool, policy=None) as ex:
            names = set(ex.map(lambda _: threading.current_thread().name, range(20)))
        assert all(n.startswith("mine") for n in names)
        assert pool.submit(abs, -1).result() == 1


MANTRI_SLOW = {3, 17, 29}


def paced_task(i: int) -> int:
    """0.1 s in 20 ms steps, heartbeating progress; the first attempts of three tasks take 3 s."""
    total = 3.0 if i in MANTRI_SLOW and sg.current_attempt().attempt == 0 else 0.1
    steps = int(round(total / 0.02))
    for k in range(steps):
        time.sleep(0.02)
        sg.heartbeat(progress=(k + 1) / steps)
    return i


def test_mantri_kills_and_restarts_outliers_while_tasks_wait():
    # Issue 13's one-host workload: 40 tasks on 4 workers. Mantri restarts the three outliers
    # as soon as their progress shows that a new attempt would finish sooner; the kills are no
    # failures and their new attempts are plain attempts, not copies.
    with sg.SpeculativeExecutor(max_workers=4, policy=sg.MantriPolicy(interval=0.05)) as ex:
        assert list(ex.map(paced_task, range(40))) == list(range(40))
    stats = ex.stats()
    assert stats.failures == 0 and stats.killed >= 3
    won = {e.task: e.attempt for e in ex.events() if e.kind == "finish"}
    assert all(won[t] >= 1 for t in MANTRI_SLOW)  # every outlier finished by a later attempt
    killed = [e for e in ex.events() if e.kind == "kill"]
    assert {e.task for e in killed} >= MANTRI_SLOW and all(e.attempt == 0 for e in killed if e.task in MANTRI_SLOW)
