"""QuantileSketch against its peers on one data set (1e6 lognormal float64, fixed seed), in
one run: Apache DataSketches KLL (`datasketches`), DataDog's DDSketch (`ddsketch`, pure
Python), t-digest (`fastdigest`), and numpy (`numpy.log` as the per-value cost floor,
`numpy.quantile` as the exact answer).

Groups: batch update, p50/p95/p99 queries, merging two 1e6-value sketches, serialisation
(with the encoded size and the worst relative error at p50/p95/p99, printed at the end).

    pytest benches/ --benchmark-only -p no:cacheprovider
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import FIGURES
from straggler import QuantileSketch

datasketches = pytest.importorskip("datasketches", reason="pip install datasketches")
fastdigest = pytest.importorskip("fastdigest", reason="pip install fastdigest")
ddsketch = pytest.importorskip("ddsketch", reason="pip install ddsketch")

QS = [0.5, 0.95, 0.99]
KLL_K = 200  # the library's default


def ours_of(values):
    sketch = QuantileSketch()
    sketch.add_many(values)
    return sketch


def kll_of(values):
    sketch = datasketches.kll_doubles_sketch(KLL_K)
    sketch.update(values)
    return sketch


def tdigest_of(values):
    return fastdigest.TDigest.from_values(values)


def ddsketch_of(values):
    sketch = ddsketch.DDSketch(relative_accuracy=0.01)
    for x in values.tolist():
        sketch.add(x)
    return sketch


@pytest.fixture(scope="module")
def built(lognormal_values):
    """Each peer's sketch of the data, and of a second, independent 1e6 values."""
    other = np.random.default_rng(7).lognormal(mean=0.0, sigma=1.5, size=len(lognormal_values))
    return {
        "ours": (ours_of(lognormal_values), ours_of(other)),
        "kll": (kll_of(lognormal_values), kll_of(other)),
        "fastdigest": (tdigest_of(lognormal_values), tdigest_of(other)),
        "ddsketch": (ddsketch_of(lognormal_values), ddsketch_of(other)),
    }


# --- batch update of 1e6 values --------------------------------------------------------


def test_add_many_ours(benchmark, lognormal_values):
    benchmark.group = "add 1e6 values"
    sketch = benchmark(ours_of, lognormal_values)
    assert sketch.count == len(lognormal_values)


def test_add_many_numpy_log(benchmark, lognormal_values):
    """The floor the issue sets: one vectorised transcendental per value."""
    benchmark.group = "add 1e6 values"
    benchmark(np.log, lognormal_values)


def test_add_many_numpy_quantile(benchmark, lognormal_values):
    """The exact answer's cost (a partition of a copy per call)."""
    benchmark.group = "add 1e6 values"
    benchmark(np.quantile, lognormal_values, QS)


def test_add_many_kll(benchmark, lognormal_values):
    benchmark.group = "add 1e6 values"
    sketch = benchmark(kll_of, lognormal_values)
    assert sketch.n == len(lognormal_values)


def test_add_many_fastdigest(benchmark, lognormal_values):
    benchmark.group = "add 1e6 values"
    benchmark(tdigest_of, lognormal_values)


def test_add_many_ddsketch_python(benchmark, lognormal_values):
    """DataDog's Python DDSketch has no batch update: one `add` call per value."""
    benchmark.group = "add 1e6 values"
    sketch = benchmark.pedantic(ddsketch_of, args=(lognormal_values,), rounds=1, iterations=1)
    assert sketch.count == len(lognormal_values)


# --- p50/p95/p99 -----------------------------------------------------------------------


def test_query_ours(benchmark, built):
    benchmark.group = "query p50/p95/p99"
    sketch = built["ours"][0]
    benchmark(sketch.quantiles, QS, "linear")


def test_query_kll(benchmark, built):
    benchmark.group = "query p50/p95/p99"
    sketch = built["kll"][0]
    benchmark(sketch.get_quantiles, QS)


def test_query_fastdigest(benchmark, built):
    benchmark.group = "query p50/p95/p99"
    sketch = built["fastdigest"][0]
    benchmark(lambda: [sketch.quantile(q) for q in QS])


def test_query_ddsketch_python(benchmark, built):
    benchmark.group = "query p50/p95/p99"
    sketch = built["ddsketch"][0]
    benchmark(lambda: [sketch.get_quantile_value(q) for q in QS])


# --- merging two 1e6-value sketches -----------------------------------------------------


def test_merge_ours(benchmark, built):
    benchmark.group = "merge two 1e6 sketches"
    a, b = built["ours"]
    benchmark.pedantic(
        lambda target: target.merge(b), setup=lambda: ((copy.copy(a),), {}), rounds=200
    )


def test_merge_kll(benchmark, built):
    benchmark.group = "merge two 1e6 sketches"
    a, b = built["kll"]
    blob = a.serialize()
    benchmark.pedantic(
        lambda target: target.merge(b),
        setup=lambda: ((datasketches.kll_doubles_sketch.deserialize(blob),), {}),
        rounds=200,
    )


def test_merge_fastdigest(benchmark, built):
    benchmark.group = "merge two 1e6 sketches"
    a, b = built["fastdigest"]
    benchmark(a.merge, b)


def test_merge_ddsketch_python(benchmark, built):
    benchmark.group = "merge two 1e6 sketches"
    a, b = built["ddsketch"]
    benchmark.pedantic(
        lambda target: target.merge(b), setup=lambda: ((copy.deepcopy(a),), {}), rounds=50
    )


# --- serialisation, size and accuracy ----------------------------------------------------


def worst_relative_error(estimates, values) -> float:
    exact = np.quantile(values, QS, method="linear")
    return float(np.max(np.abs(np.asarray(estimates) - exact) / np.abs(exact)))


def test_serialize_ours(benchmark, built, lognormal_values):
    benchmark.group = "serialize"
    sketch = built["ours"][0]
    data = benchmark(sketch.to_bytes)
    FIGURES["ours"] = {
        "bytes": len(data),
        "worst_rel_err": worst_relative_error(sketch.quantiles(QS, "linear"), lognormal_values),
    }
    assert FIGURES["ours"]["worst_rel_err"] <= 0.01


def test_serialize_kll(benchmark, built, lognormal_values):
    benchmark.group = "serialize"
    sketch = built["kll"][0]
    data = benchmark(sketch.serialize)
    FIGURES["kll"] = {
        "bytes": len(data),
        "worst_rel_err": worst_relative_error(sketch.get_quantiles(QS), lognormal_values),
    }


def test_serialize_fastdigest(benchmark, built, lognormal_values):
    benchmark.group = "serialize"
    sketch = built["fastdigest"][0]
    data = benchmark(sketch.to_bytes)
    FIGURES["fastdigest"] = {
        "bytes": len(data),
        "worst_rel_err": worst_relative_error([sketch.quantile(q) for q in QS], lognormal_values),
    }


def test_serialize_ddsketch_python(benchmark, built, lognormal_values):
    """ddsketch's own protobuf encoding needs `protobuf`; pickle stands in for its size."""
    import pickle

    benchmark.group = "serialize"
    sketch = built["ddsketch"][0]
    data = benchmark(pickle.dumps, sketch)
    FIGURES["ddsketch (pickle)"] = {
        "bytes": len(data),
        "worst_rel_err": worst_relative_error(
            [sketch.get_quantile_value(q) for q in QS], lognormal_values
        ),
    }
