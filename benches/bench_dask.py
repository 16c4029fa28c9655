"""The Dask engine's cost (pytest-benchmark; not part of the test run).

    python -m pytest benches/bench_dask.py --benchmark-only -p no:cacheprovider -s

- 2,000 small tasks on a LocalCluster (2 worker processes, 1 thread each): SpeculativeExecutor
  (Spark policy, and policy=None) next to plain ``client.submit`` + ``client.gather`` of the
  same tasks on the same cluster. Target: at most 1.3x the plain run.
- Heartbeat latency: from ``heartbeat()`` in a task on a worker to the executor's event thread
  on the client (both read CLOCK_MONOTONIC, which one machine shares across processes). The
  Detector sees a beat at its next check, up to one ``interval`` later.
"""

from __future__ import annotations

import statistics
import time

import pytest

distributed = pytest.importorskip("distributed", reason="needs dask[distributed]")

import straggler as sg  # noqa: E402

N_TASKS = 2_000


def inc(x: int) -> int:
    return x + 1


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def run_plain(client) -> None:
    futures = [client.submit(inc, i, pure=False) for i in range(N_TASKS)]
    assert client.gather(futures) == list(range(1, N_TASKS + 1))


def run_speculative(client, policy) -> None:
    with sg.SpeculativeExecutor(client, policy=policy) as ex:
        futures = [ex.submit(inc, i) for i in range(N_TASKS)]
        assert [f.result() for f in futures] == list(range(1, N_TASKS + 1))


def test_overhead_ratio_side_by_side(benchmark, client):
    cases = {
        "client.submit + gather": lambda: run_plain(client),
        "SpeculativeExecutor(client, SparkPolicy())": lambda: run_speculative(client, sg.SparkPolicy()),
        "SpeculativeExecutor(client, policy=None)": lambda: run_speculative(client, None),
    }
    for run in cases.values():
        run()  # warm up: function caches, connections
    best = {name: float("inf") for name in cases}
    for _ in range(3):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    base = best["client.submit + gather"]
    print(f"\n{N_TASKS} tasks on 2 Dask workers (best of 3)")
    for name, seconds in best.items():
        benchmark.extra_info[name] = seconds
        print(f"{name:<45} {seconds * 1e3:8.1f} ms  {seconds / base:5.2f}x")
    benchmark.pedantic(lambda: None, rounds=1)


def beating(seconds: float) -> int:
    beats = 0
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sg.heartbeat(progress=min(1.0, elapsed / seconds), records=beats)
        beats += 1
        time.sleep(0.05)
    return beats


def test_heartbeat_latency_worker_to_executor(benchmark, client):
    latencies: list[float] = []

    with sg.SpeculativeExecutor(client, policy=sg.SparkPolicy()) as ex:
        engine = ex._engine
        on_report = engine._on_report

        def timed(event):
            received = time.monotonic()
            for _key, at, _progress, _records in event[1]["beats"]:
                latencies.append(received - at)
            on_report(event)

        # The subscription's handler is looked up per event: replacing it times every report.
        client.subscribe_topic(engine.channel, timed)
        futures = [ex.submit(beating, 2.0) for _ in range(4)]
        assert all(f.result() > 0 for f in futures)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    benchmark.extra_info.update(p50=p50, p95=p95, beats=len(latencies))
    print(f"\nheartbeat latency worker -> executor over {len(latencies)} beats: "
          f"p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms")
    benchmark.pedantic(lambda: None, rounds=1)
