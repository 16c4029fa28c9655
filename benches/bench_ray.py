"""The Ray engine's cost (pytest-benchmark; not part of the test run).

    python -m pytest benches/bench_ray.py --benchmark-only -p no:cacheprovider -s

- 2,000 small tasks on a local Ray runtime of 2 CPUs: SpeculativeExecutor("ray") (Spark
  policy, and policy=None) next to plain ``ray.remote`` + ``ray.get`` of the same tasks on the
  same runtime. Target: at most 1.3x the plain run.
- Heartbeat latency: from ``heartbeat()`` in a Ray task to the engine's event thread in the
  driver (both read CLOCK_MONOTONIC, which one machine shares across processes): the worker's
  flush window, the push to the report actor, the poll thread's drain. The Detector sees a
  beat at its next check, up to one ``interval`` later.
- The cost of one ``heartbeat()`` call inside a Ray task.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import pytest

ray = pytest.importorskip("ray", reason="needs ray")

import straggler as sg  # noqa: E402

N_TASKS = 2_000


def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def runtime():
    if ray.is_initialized():
        ray.shutdown()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def run_plain() -> None:
    remote = ray.remote(max_retries=0, retry_exceptions=False)(inc)
    refs = [remote.remote(i) for i in range(N_TASKS)]
    assert ray.get(refs) == list(range(1, N_TASKS + 1))


def run_speculative(policy) -> None:
    with sg.SpeculativeExecutor("ray", policy=policy) as ex:
        futures = [ex.submit(inc, i) for i in range(N_TASKS)]
        assert [f.result() for f in futures] == list(range(1, N_TASKS + 1))


def test_overhead_ratio_side_by_side(benchmark, runtime):
    cases = {
        "ray.remote + ray.get": run_plain,
        'SpeculativeExecutor("ray", SparkPolicy())': lambda: run_speculative(sg.SparkPolicy()),
        'SpeculativeExecutor("ray", policy=None)': lambda: run_speculative(None),
    }
    for run in cases.values():
        run()  # warm up: worker processes, function exports
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(3):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base = min(times["ray.remote + ray.get"])
    base_median = statistics.median(times["ray.remote + ray.get"])
    print(f"\n{N_TASKS} tasks on a local Ray runtime of 2 CPUs (best and median of 3)")
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        benchmark.extra_info[name] = best
        print(f"{name:<45} {best * 1e3:8.1f} ms  {best / base:5.2f}x   median {median * 1e3:8.1f} ms  "
              f"{median / base_median:5.2f}x")
    benchmark.pedantic(lambda: None, rounds=1)


def beating(seconds: float) -> int:
    beats = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sg.heartbeat(progress=min(1.0, elapsed / seconds), records=beats)
        beats += 1
        time.sleep(0.05)
    return beats


def test_heartbeat_latency_worker_to_executor(benchmark, runtime):
    latencies: list[float] = []

    with sg.SpeculativeExecutor("ray", policy=sg.SparkPolicy()) as ex:
        engine = ex._engine
        apply_reports = engine._apply_reports

        def timed(arrived):
            applied = time.monotonic()
            for _received, message in arrived:
                for _key, at, _progress, _records in message["beats"]:
                    latencies.append(applied - at)
            apply_reports(arrived)

        # The event thread looks the step up on the engine each round: this times every batch.
        engine._apply_reports = timed
        futures = [ex.submit(beating, 2.0) for _ in range(4)]
        assert all(f.result() > 0 for f in futures)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    benchmark.extra_info.update(p50=p50, p95=p95, beats=len(latencies))
    print(f"\nheartbeat latency Ray worker -> executor over {len(latencies)} beats: "
          f"p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms")
    benchmark.pedantic(lambda: None, rounds=1)


def heartbeat_cost(n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        sg.heartbeat(progress=0.5, records=i)
    return (time.perf_counter() - start) / n


def test_heartbeat_call_cost_in_a_ray_task(benchmark, runtime):
    with sg.SpeculativeExecutor("ray", policy=None) as ex:
        per_call = min(ex.submit(heartbeat_cost, 100_000).result() for _ in range(3))
    benchmark.extra_info["seconds_per_heartbeat"] = per_call
    print(f"\none heartbeat() in a Ray task: {per_call * 1e6:.2f} µs")
    benchmark.pedantic(lambda: None, rounds=1)
