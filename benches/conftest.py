"""Benchmark session helpers: a shared data set, and a summary of the figures that matter
(time ratios against our sketch, accuracy, size) printed at the end of the run."""

from __future__ import annotations

import numpy as np
import pytest

N = 1_000_000
SEED = 20240601

# Figures that are not timings (error, bytes), filled by the benchmarks: name -> {key: value}.
FIGURES: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="session")
def lognormal_values() -> np.ndarray:
    """1e6 lognormal float64 values (sigma 1.5): a skewed, task-duration-like workload."""
    return np.random.default_rng(SEED).lognormal(mean=0.0, sigma=1.5, size=N)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    benchmarks = getattr(session, "benchmarks", None) or []
    by_group: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        stats = getattr(bench, "stats", None)
        if stats is None or getattr(stats, "min", None) is None:
            continue
        by_group.setdefault(bench.group or "", {})[bench.name] = stats.min
    write = terminalreporter.write_line
    if by_group:
        terminalreporter.section("sketch benchmark ratios (best time; x = times ours)")
        for group, times in sorted(by_group.items()):
            ours = next((t for name, t in times.items() if "ours" in name), None)
            write(f"[{group}]")
            for name, best in sorted(times.items(), key=lambda item: item[1]):
                ratio = f"{best / ours:8.2f}x" if ours else ""
                write(f"  {name:<45} {best * 1e3:10.3f} ms {ratio}")
    if FIGURES:
        terminalreporter.section("sketch accuracy and size (vs numpy exact)")
        for name, figures in sorted(FIGURES.items()):
            text = "  ".join(f"{key}={value:.3g}" for key, value in sorted(figures.items()))
            write(f"  {name:<20} {text}")
