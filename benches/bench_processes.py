"""The process engine's cost (pytest-benchmark; not part of the test run).

    python -m pytest benches/bench_processes.py --benchmark-only -p no:cacheprovider -s

- 2,000 small tasks on ``SpeculativeExecutor("processes", max_workers=2)`` next to a plain
  ``ProcessPoolExecutor(2)`` (spawn, both with their workers started). Target: at most 1.3x.
- From a win to the loser's end, per ladder step: a loser that heartbeats stops at the flag;
  one that never does (a pure-Python loop) is terminated after ``stop_grace``. p50 / p99.
- One ``heartbeat()`` in a worker process next to one in a thread of the thread engine.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, wait

import pytest
import straggler as sg

N_TASKS = 2_000
WORKERS = 2
SPAWN = multiprocessing.get_context("spawn")


def small(i: int) -> int:
    return i * i


def run_plain(pool: ProcessPoolExecutor) -> None:
    wait([pool.submit(small, i) for i in range(N_TASKS)])


def run_ours(ex: sg.SpeculativeExecutor) -> None:
    wait([ex.submit(small, i) for i in range(N_TASKS)])


def test_small_tasks_ratio_to_a_process_pool(benchmark):
    """Alternating rounds, best of 5 each, with warm workers on both sides."""
    best = {"ProcessPoolExecutor(2)": float("inf"), "SpeculativeExecutor('processes', 2)": float("inf")}
    with ProcessPoolExecutor(WORKERS, mp_context=SPAWN) as pool, \
            sg.SpeculativeExecutor("processes", max_workers=WORKERS, policy=sg.SparkPolicy()) as ex:
        run_plain(pool)
        run_ours(ex)
        for _ in range(5):
            for name, run in (("ProcessPoolExecutor(2)", lambda: run_plain(pool)),
                              ("SpeculativeExecutor('processes', 2)", lambda: run_ours(ex))):
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        benchmark.pedantic(run_ours, args=(ex,), rounds=1, iterations=1)
    base = best["ProcessPoolExecutor(2)"]
    print(f"\n{N_TASKS} small tasks, {WORKERS} workers:")
    for name, seconds in best.items():
        print(f"  {name:<40} {seconds * 1e3:8.1f} ms  {seconds / base:5.2f}x")


def straggles(i: int, beats: bool) -> int:
    """Task 0's first attempt never ends: it spins (``beats=False``) or heartbeats every ms."""
    if i == 0 and sg.current_attempt().attempt == 0:
        while True:
            if beats:
                sg.heartbeat()
                time.sleep(0.001)
    time.sleep(0.02)
    return i


@pytest.mark.parametrize("step", ["flag", "terminate"])
def test_win_to_loser_end(benchmark, step):
    """20 stages of 4 tasks on 2 workers, one straggler each: the time from the copy's
    ``finish`` event to the loser's ``kill`` event (the runner settles it once its worker
    process is gone, or once its heartbeat raised)."""
    beats = step == "flag"
    policy = sg.SparkPolicy(min_runtime=0.1, interval=0.01)
    grace = 30.0 if beats else 0.1

    def run() -> list[float]:
        with sg.SpeculativeExecutor("processes", max_workers=WORKERS, policy=policy, stop_grace=grace) as ex:
            for stage in range(20):
                fn = sg.options(straggles, stage=f"s{stage}")
                wait([ex.submit(fn, i, beats) for i in range(4)])
                ex_events = ex.events()
        ends: dict[tuple[int, str], float] = {}
        for event in ex_events:
            if event.kind in ("finish", "kill"):
                ends[(event.task, event.kind)] = event.time
        return [ends[(t, "kill")] - ends[(t, "finish")] for (t, kind) in ends if kind == "kill"]

    delays = benchmark.pedantic(run, rounds=1, iterations=1)
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    print(f"\nwin -> loser's end ({step}, stop_grace={grace:g} s, {len(delays)} losers): "
          f"p50 {statistics.median(delays) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms")


def heartbeat_cost(n: int) -> float:
    """Seconds per ``heartbeat(progress=…)`` call, measured inside the task."""
    start = time.perf_counter()
    for k in range(n):
        sg.heartbeat(progress=k / n)
    return (time.perf_counter() - start) / n


@pytest.mark.parametrize("engine", ["processes", "threads"])
def test_heartbeat_cost(benchmark, engine):
    with sg.SpeculativeExecutor(engine, max_workers=1, policy=None) as ex:
        cost = benchmark.pedantic(lambda: ex.submit(heartbeat_cost, 200_000).result(), rounds=3, iterations=1)
    print(f"\nheartbeat() on the {engine} engine: {cost * 1e6:.2f} us per call")
