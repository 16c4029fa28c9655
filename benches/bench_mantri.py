"""Issue 13's one-host workload on the thread engine: 40 tasks on 4 workers, the first
attempts of tasks 3, 17 and 29 take 3 s, every other attempt 0.1 s (20 ms steps, progress
heartbeats). Makespan and wasted attempt-seconds per policy, side by side in one run."""

from __future__ import annotations

import time

import straggler as sg

SLOW = {3, 17, 29}


def task(i: int) -> int:
    total = 3.0 if i in SLOW and sg.current_attempt().attempt == 0 else 0.1
    steps = int(round(total / 0.02))
    for k in range(steps):
        time.sleep(0.02)
        sg.heartbeat(progress=(k + 1) / steps)
    return i


def job(policy) -> tuple[float, float]:
    start = time.monotonic()
    with sg.SpeculativeExecutor(max_workers=4, policy=policy) as ex:
        assert list(ex.map(task, range(40))) == list(range(40))
    return time.monotonic() - start, ex.stats().wasted_seconds


POLICIES = {
    "none": None,
    "spark (q=0.5, x1.5, min 0.2 s)": sg.SparkPolicy(quantile=0.5, multiplier=1.5, min_runtime=0.2, interval=0.02),
    "late": sg.LatePolicy(min_runtime=0.2, interval=0.02),
    "mantri (interval 0.05 s)": sg.MantriPolicy(interval=0.05),
}


def test_one_host_outliers_side_by_side(benchmark):
    def run() -> dict[str, tuple[float, float]]:
        return {name: job(policy) for name, policy in POLICIES.items()}

    results = benchmark.pedantic(run, rounds=1, iterations=1)
    base = results["none"][0]
    print()
    for name, (seconds, wasted) in results.items():
        print(f"{name:<32} {seconds:6.2f} s  {seconds / base:5.2f}x  wasted {wasted:5.2f} s")
