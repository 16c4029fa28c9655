"""The executor's own cost (pytest-benchmark; not part of the test run).

    python -m pytest benches/bench_executor.py --benchmark-only -p no:cacheprovider -s

- 20,000 no-op tasks on 2 workers: SpeculativeExecutor (Spark policy, and policy=None) next to
  a plain ThreadPoolExecutor(2) running the same tasks. Target: at most 1.5x the plain pool.
- The scheduler thread's CPU share while 1,000 short sleeping tasks run on 8 workers.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import straggler as sg

N_NOOP = 20_000


def noop() -> None:
    return None


def run_plain() -> None:
    with ThreadPoolExecutor(2) as pool:
        for _ in range(N_NOOP):
            pool.submit(noop)


def run_speculative(policy) -> None:
    with sg.SpeculativeExecutor(max_workers=2, policy=policy) as ex:
        for _ in range(N_NOOP):
            ex.submit(noop)


CASES = {
    "ThreadPoolExecutor(2)": run_plain,
    "SpeculativeExecutor(2, SparkPolicy())": lambda: run_speculative(sg.SparkPolicy()),
    "SpeculativeExecutor(2, policy=None)": lambda: run_speculative(None),
}


@pytest.mark.benchmark(group="20k no-op tasks on 2 workers")
@pytest.mark.parametrize("case", list(CASES))
def test_noop_tasks(benchmark, case):
    benchmark.pedantic(CASES[case], rounds=5, iterations=1, warmup_rounds=1)


def test_overhead_ratio_side_by_side(benchmark):
    """The ratio the target is about, measured alternately in one run (best of 5 each)."""
    best = {name: float("inf") for name in CASES}
    for _ in range(5):
        for name, run in CASES.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    base = best["ThreadPoolExecutor(2)"]
    for name, seconds in best.items():
        benchmark.extra_info[name] = seconds
        print(f"{name:<40} {seconds * 1e3:8.1f} ms  {seconds / base:5.2f}x")
    benchmark.pedantic(lambda: None, rounds=1)


def _thread_cpu_seconds(native_id: int) -> float:
    """User + system CPU time of one thread of this process, from /proc (Linux)."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
@pytest.mark.parametrize("policy_name", ["spark", "none"])
def test_scheduler_cpu_share_while_1000_tasks_run(benchmark, policy_name):
    def job():
        policy = sg.SparkPolicy(interval=0.1) if policy_name == "spark" else None
        def task(i):
            end = time.monotonic() + 0.02
            while time.monotonic() < end:
                sg.heartbeat(progress=0.5, records=i)
                time.sleep(0.002)
        start = time.monotonic()
        with sg.SpeculativeExecutor(max_workers=8, policy=policy) as ex:
            scheduler = next(t for t in threading.enumerate() if t.name == "straggler-scheduler" and t.is_alive())
            before = _thread_cpu_seconds(scheduler.native_id)
            for i in range(1000):
                ex.submit(task, i)
            # Sample the scheduler's CPU time until it exits (shutdown ends it with the job).
            cpu = []
            ex.shutdown(wait=False)
            while scheduler.is_alive():
                try:
                    cpu.append(_thread_cpu_seconds(scheduler.native_id))
                except FileNotFoundError:
                    break
                time.sleep(0.05)
        wall = time.monotonic() - start
        return (cpu[-1] - before) / wall if cpu else float("nan"), wall

    share, wall = benchmark.pedantic(job, rounds=1, iterations=1)
    benchmark.extra_info["scheduler_cpu_share"] = share
    print(f"\nscheduler CPU share ({policy_name}): {share:.2%} of one core over {wall:.2f} s")
