"""QuantileSketch: exact while small (numpy's definitions bit for bit), a DDSketch after
(within relative_accuracy of numpy), mergeable, serialisable, thread-safe, and strict about
bad input (the right exception, naming the argument, and nothing changed)."""

from __future__ import annotations

import copy
import math
import pickle
import threading

import numpy as np
import pytest
import straggler as sg
from hypothesis import given, settings
from hypothesis import strategies as st
from straggler import QuantileSketch

METHODS = ("lower", "higher", "linear")

finite = st.floats(allow_nan=False, allow_infinity=False)
# Magnitudes the issue names: zeros, negatives, ties, 1e-9 and 1e9 scales.
interesting = st.one_of(
    finite,
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-9, -1e-9, 1e9, -1e9, 42.0]),
    st.floats(min_value=1e-9, max_value=1e9),
    st.floats(min_value=-1e9, max_value=-1e-9),
)
qs = st.floats(min_value=0.0, max_value=1.0)


def error_bound(values: np.ndarray, q: float, method: str, alpha: float) -> float:
    """The guarantee: alpha * |numpy's answer|; for linear, alpha * the larger neighbour."""
    ordered = np.sort(values)
    n = len(ordered)
    virtual = (n - 1) * q
    if method == "linear":
        below = min(math.floor(virtual), n - 1)
        above = min(below + 1, n - 1)
        return alpha * max(abs(ordered[below]), abs(ordered[above]))
    return alpha * abs(float(np.quantile(ordered, q, method=method)))


def assert_within(sketch: QuantileSketch, values: np.ndarray, q: float, method: str) -> None:
    expected = float(np.quantile(values, q, method=method))
    got = sketch.quantile(q, method)
    bound = error_bound(values, q, method, sketch.relative_accuracy)
    assert abs(got - expected) <= bound * (1 + 1e-12), (q, method, got, expected)


def lognormal(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(mean=0.0, sigma=2.0, size=n)


# --- construction and settings ---------------------------------------------------------


def test_defaults_match_the_design():
    s = QuantileSketch()
    assert (s.relative_accuracy, s.max_bins, s.exact_limit) == (0.01, 2048, 1024)
    assert s.count == 0 and s.sum == 0.0
    assert math.isnan(s.min) and math.isnan(s.max)


def test_is_exported_from_the_package():
    assert "QuantileSketch" in sg.__all__
    assert sg.QuantileSketch is QuantileSketch
    assert QuantileSketch.__module__ == "straggler"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"relative_accuracy": 0.0}, "relative_accuracy"),
        ({"relative_accuracy": 1.0}, "relative_accuracy"),
        ({"relative_accuracy": -0.1}, "relative_accuracy"),
        ({"relative_accuracy": float("nan")}, "relative_accuracy"),
        ({"relative_accuracy": float("inf")}, "relative_accuracy"),
        ({"max_bins": 0}, "max_bins"),
        ({"max_bins": 1 << 21}, "max_bins"),
        ({"exact_limit": 1 << 25}, "exact_limit"),
    ],
)
def test_bad_settings_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name) as info:
        QuantileSketch(**kwargs)
    assert str(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize(("kwargs", "name"), [({"max_bins": -1}, "max_bins"), ({"exact_limit": -1}, "exact_limit")])
def test_negative_sizes_raise_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be in .*, got -1"):
        QuantileSketch(**kwargs)


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError):
        QuantileSketch(relative_accuracy="high")  # type: ignore[arg-type]
    s = QuantileSketch()
    with pytest.raises(TypeError):
        s.add("1.0")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.add_many(np.zeros((2, 2)))
    with pytest.raises(TypeError):
        s.merge([1.0])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        QuantileSketch.from_bytes("not bytes")  # type: ignore[arg-type]
    assert s.count == 0


# --- exact mode ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(interesting, min_size=1, max_size=200), st.lists(qs, min_size=1, max_size=8))
def test_exact_mode_equals_numpy_for_every_method(values, q_list):
    s = QuantileSketch(exact_limit=200)
    s.add_many(values)
    array = np.asarray(values, dtype=np.float64)
    for method in METHODS:
        for q in q_list + [0.0, 1.0]:
            assert s.quantile(q, method) == np.quantile(array, q, method=method)
        got = s.quantiles(q_list, method)
        assert np.array_equal(got, np.quantile(array, q_list, method=method))


def test_exact_mode_matches_numpy_bit_for_bit_on_awkward_fractions():
    values = np.array([0.1, 0.7, 1e-9, 3.3, -2.2, 1e9, 5.5, 5.5, 0.0, 8.8, -1e-9])
    s = QuantileSketch()
    s.add_many(values)
    grid = np.linspace(0.0, 1.0, 1001)
    for method in METHODS:
        expected = np.quantile(values, grid, method=method)
        assert s.quantiles(grid, method).tobytes() == expected.tobytes()


def test_single_value():
    s = QuantileSketch()
    s.add(-3.5)
    for method in METHODS:
        assert s.quantile(0.0, method) == s.quantile(0.5, method) == s.quantile(1.0, method) == -3.5


def test_empty_sketch_answers_nan():
    s = QuantileSketch()
    assert math.isnan(s.quantile(0.5))
    assert np.isnan(s.quantiles([0.1, 0.9], "linear")).all()


def test_add_and_add_many_agree():
    values = lognormal(3000, seed=4) - 2.0
    one = QuantileSketch(exact_limit=500)
    for x in values:
        one.add(float(x))
    many = QuantileSketch(exact_limit=500)
    many.add_many(values)
    grid = np.linspace(0, 1, 101)
    for method in METHODS:
        assert np.array_equal(one.quantiles(grid, method), many.quantiles(grid, method))
    assert one.count == many.count == 3000
    assert one.sum == pytest.approx(many.sum, rel=1e-12)


# --- sketch mode -----------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(interesting, min_size=2, max_size=400),
    st.lists(qs, min_size=1, max_size=6),
    st.sampled_from([0.001, 0.01, 0.05, 0.2]),
)
def test_sketch_mode_is_within_relative_accuracy(values, q_list, alpha):
    # Enough bins for the whole double range, so nothing collapses.
    s = QuantileSketch(relative_accuracy=alpha, max_bins=1 << 20, exact_limit=0)
    s.add_many(values)
    array = np.asarray(values, dtype=np.float64)
    for method in METHODS:
        for q in q_list:
            assert_within(s, array, q, method)


@pytest.mark.parametrize("n", [1, 10, 1025, 100_000, 1_000_000])
def test_large_batches_are_within_relative_accuracy(n):
    values = lognormal(n, seed=n)
    s = QuantileSketch()
    s.add_many(values)
    assert s.count == n
    assert s.is_exact == (n <= 1024)
    for method in METHODS:
        for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
            assert_within(s, values, q, method)


def test_mixed_signs_zeros_and_ties_in_sketch_mode():
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            -lognormal(20_000, seed=1) * 1e-9,
            np.zeros(5000),
            np.full(5000, 7.0),
            lognormal(20_000, seed=2) * 1e9,
        ]
    )
    rng.shuffle(values)
    s = QuantileSketch(max_bins=1 << 16)
    s.add_many(values)
    for method in METHODS:
        for q in np.linspace(0, 1, 41):
            assert_within(s, values, float(q), method)


def test_extremes_are_exact_in_sketch_mode():
    values = lognormal(50_000, seed=8) - 3.0
    s = QuantileSketch(relative_accuracy=0.05, exact_limit=0)
    s.add_many(values)
    for method in METHODS:
        assert s.quantile(0.0, method) == values.min()
        assert s.quantile(1.0, method) == values.max()
    assert (s.min, s.max) == (values.min(), values.max())


def test_count_sum_min_max_are_exact():
    values = np.arange(1, 100_001, dtype=np.float64)
    s = QuantileSketch()
    s.add_many(values)
    assert s.count == 100_000
    assert s.sum == 5_000_050_000.0
    assert (s.min, s.max) == (1.0, 100_000.0)


def test_memory_is_bounded_by_max_bins():
    s = QuantileSketch(relative_accuracy=0.001, max_bins=128)
    s.add_many(np.geomspace(1e-9, 1e9, 1_000_000))
    assert s.memory_bytes < 2 * 128 * 8 + 1024
    # The upper tail keeps its accuracy; the collapsed lower tail reads high.
    values = np.geomspace(1e-9, 1e9, 1_000_000)
    assert_within(s, values, 0.999, "lower")
    assert s.quantile(0.01, "lower") > np.quantile(values, 0.01, method="lower")


@pytest.mark.parametrize(
    "values",
    [
        np.arange(5000, dtype=np.int64),
        np.arange(5000, dtype=np.int32),
        np.linspace(0, 1, 5000, dtype=np.float32),
        np.arange(5000, dtype=np.uint8),
        [float(i) for i in range(5000)],
        tuple(range(5000)),
    ],
    ids=["int64", "int32", "float32", "uint8", "list", "tuple"],
)
def test_add_many_accepts_any_real_array_like(values):
    s = QuantileSketch()
    s.add_many(values)
    array = np.asarray(values, dtype=np.float64)
    assert s.count == len(array)
    assert s.sum == array.sum()
    assert_within(s, array, 0.5, "lower")


def test_add_many_accepts_non_contiguous_arrays():
    base = lognormal(20_000, seed=5)
    strided = base[::3]
    assert not strided.flags.c_contiguous
    s = QuantileSketch(exact_limit=10_000)
    s.add_many(strided)
    assert s.quantile(0.5, "linear") == np.quantile(strided, 0.5, method="linear")


def test_quantiles_returns_float64_array_in_input_order():
    s = QuantileSketch()
    s.add_many(np.arange(101.0))
    got = s.quantiles([0.9, 0.1, 0.5], "higher")
    assert got.dtype == np.float64
    assert got.tolist() == [90.0, 10.0, 50.0]
    assert s.quantiles([]).shape == (0,)


# --- bad input: right exception, named argument, nothing changed ----------------------


def filled(exact: bool) -> QuantileSketch:
    s = QuantileSketch(exact_limit=100)
    s.add_many(lognormal(50 if exact else 5000, seed=6))
    return s


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_batch_is_rejected_whole(exact, bad):
    s = filled(exact)
    before = s.to_bytes()
    batch = np.array([1.0, 2.0, bad, 4.0])
    with pytest.raises(ValueError, match=r"values must all be finite, got .* at index 2"):
        s.add_many(batch)
    with pytest.raises(ValueError, match="x must be finite"):
        s.add(bad)
    assert s.to_bytes() == before


@pytest.mark.parametrize("exact", [True, False])
def test_a_bad_value_deep_in_a_large_batch_is_rejected_whole(exact):
    s = filled(exact)
    before = s.to_bytes()
    batch = lognormal(300_000, seed=2)
    batch[250_000] = np.nan
    with pytest.raises(ValueError, match="got nan at index 250000"):
        s.add_many(batch)
    assert s.to_bytes() == before


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("q", [-0.01, 1.01, float("nan"), float("inf")])
def test_bad_q_is_rejected(exact, q):
    s = filled(exact)
    before = s.to_bytes()
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\], got"):
        s.quantile(q)
    with pytest.raises(ValueError, match="q must be in"):
        s.quantiles([0.5, q])
    assert s.to_bytes() == before


def test_bad_method_is_rejected():
    s = filled(True)
    with pytest.raises(ValueError, match="method must be 'lower', 'higher' or 'linear', got 'nearest'"):
        s.quantile(0.5, "nearest")
    with pytest.raises(ValueError, match="method"):
        s.quantiles([0.5], "midpoint")


@pytest.mark.parametrize(
    "other_settings",
    [{"relative_accuracy": 0.02}, {"max_bins": 1024}, {"exact_limit": 99}],
)
def test_merge_of_other_settings_is_rejected(other_settings):
    s = filled(False)
    before = s.to_bytes()
    other = QuantileSketch(**{"exact_limit": 100, **other_settings})
    other.add_many([1.0, 2.0])
    with pytest.raises(ValueError, match="other was built with other settings"):
        s.merge(other)
    assert s.to_bytes() == before


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"SQSK",
        b"not a sketch at all",
        b"SQSK\x02" + bytes(60),
        bytes(range(256)),
    ],
)
def test_garbage_bytes_raise_value_error(garbage):
    with pytest.raises(ValueError, match="data is not a valid QuantileSketch encoding"):
        QuantileSketch.from_bytes(garbage)


@pytest.mark.parametrize("exact", [True, False])
def test_truncated_or_padded_bytes_raise_value_error(exact):
    good = filled(exact).to_bytes()
    for cut in range(len(good)):
        with pytest.raises(ValueError, match="data"):
            QuantileSketch.from_bytes(good[:cut])
    with pytest.raises(ValueError, match="trailing"):
        QuantileSketch.from_bytes(good + b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(blob):
    try:
        s = QuantileSketch.from_bytes(b"SQSK\x01" + blob)
    except ValueError:
        return
    s.quantile(0.5, "linear")


# --- merges ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(interesting, max_size=60), min_size=1, max_size=5),
    st.randoms(use_true_random=False),
    st.sampled_from([0, 30, 1000]),
)
def test_merges_in_any_order_equal_one_sketch_of_the_union(parts, rnd, exact_limit):
    whole = QuantileSketch(max_bins=1 << 20, exact_limit=exact_limit)
    for part in parts:
        whole.add_many(part)
    sketches = []
    for part in parts:
        s = QuantileSketch(max_bins=1 << 20, exact_limit=exact_limit)
        s.add_many(part)
        sketches.append(s)
    rnd.shuffle(sketches)
    while len(sketches) > 1:
        a = sketches.pop(rnd.randrange(len(sketches)))
        b = sketches.pop(rnd.randrange(len(sketches)))
        a.merge(b)
        sketches.append(a)
    merged = sketches[0]
    assert merged.count == whole.count
    assert merged.is_exact == whole.is_exact
    grid = np.linspace(0, 1, 21)
    union = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    for method in METHODS:
        if whole.count == 0:
            assert np.isnan(merged.quantiles(grid, method)).all()
            continue
        # Bins merge exactly, and exact values are exact: the answers are identical.
        assert np.array_equal(merged.quantiles(grid, method), whole.quantiles(grid, method))
        if merged.is_exact:
            assert np.array_equal(merged.quantiles(grid, method), np.quantile(union, grid, method=method))
        else:
            for q in grid:
                assert_within(merged, union, float(q), method)


def test_merge_across_modes():
    small = QuantileSketch()
    small.add_many(np.arange(600.0))
    other = QuantileSketch()
    other.add_many(np.arange(600.0, 1200.0))
    small.merge(other)  # exact + exact past the exact limit: becomes a DDSketch
    assert not small.is_exact and small.count == 1200
    big = QuantileSketch()
    big.add_many(lognormal(10_000))
    tiny = QuantileSketch()
    tiny.add_many([0.5, 1.5])
    before = copy.copy(big)
    big.merge(tiny)  # sketch + exact
    tiny.merge(before)  # exact + sketch
    assert big.count == tiny.count == 10_002
    assert np.array_equal(big.quantiles(np.linspace(0, 1, 11)), tiny.quantiles(np.linspace(0, 1, 11)))


@pytest.mark.parametrize("exact", [True, False])
def test_self_merge_doubles(exact):
    s = filled(exact)
    count, total = s.count, s.sum
    s.merge(s)
    assert s.count == 2 * count
    assert s.sum == 2 * total


# --- serialisation ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 100, 5000])
def test_bytes_and_pickle_round_trip(n):
    s = QuantileSketch(relative_accuracy=0.02, max_bins=512, exact_limit=100)
    s.add_many(lognormal(n) - 1.0)
    for back in (
        QuantileSketch.from_bytes(s.to_bytes()),
        pickle.loads(pickle.dumps(s)),
        copy.copy(s),
        copy.deepcopy(s),
    ):
        assert back.to_bytes() == s.to_bytes()
        assert (back.relative_accuracy, back.max_bins, back.exact_limit) == (0.02, 512, 100)
        assert back.count == s.count
        grid = np.linspace(0, 1, 33)
        assert np.array_equal(back.quantiles(grid, "linear"), s.quantiles(grid, "linear"), equal_nan=True)
    copied = copy.copy(s)
    copied.add(1.0)
    assert copied.count == s.count + 1


def test_bytes_are_versioned_and_compact():
    s = QuantileSketch()
    s.add_many(lognormal(1_000_000))
    data = s.to_bytes()
    assert data[:4] == b"SQSK" and data[4] == 1
    assert len(data) < 4096


def test_repr_shows_settings_and_state():
    s = QuantileSketch()
    s.add_many([1.0, 2.0])
    assert repr(s) == (
        "QuantileSketch(relative_accuracy=0.01, max_bins=2048, exact_limit=1024, "
        "count=2, min=1.0, max=2.0)"
    )


# --- threads ---------------------------------------------------------------------------


def test_threads_add_query_and_merge_at_once():
    shared = [QuantileSketch(exact_limit=64) for _ in range(2)]
    batches = [lognormal(20_000, seed=i).round(3) for i in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def adder(i: int) -> None:
        try:
            start.wait()
            for batch in batches[i::4]:
                for piece in np.array_split(batch, 10):
                    shared[i % 2].add_many(piece)
                    shared[(i + 1) % 2].quantile(0.99, "linear")
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    merged_counts: list[int] = []

    def merger() -> None:
        try:
            start.wait()
            for _ in range(20):
                target = QuantileSketch(exact_limit=64)
                target.merge(shared[0])
                target.merge(shared[1])
                shared[0].quantiles([0.5, 0.9], "higher")
                merged_counts.append(target.count)
        except BaseException as err:  # pragma: no cover
            errors.append(err)

    def self_merger() -> None:
        try:
            start.wait()
            extra = QuantileSketch(exact_limit=64)
            extra.add_many([1.0])
            for _ in range(10):
                extra.merge(extra)
            merged_counts.append(extra.count)
        except BaseException as err:  # pragma: no cover
            errors.append(err)

    threads = [threading.Thread(target=adder, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=merger), threading.Thread(target=self_merger)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    everything = np.concatenate(batches)
    assert shared[0].count + shared[1].count == len(everything)
    # Values rounded to 1e-3 and summed in any order stay far from the last bit at this size.
    assert shared[0].sum + shared[1].sum == pytest.approx(everything.sum(), rel=1e-12)
    assert 1024 in merged_counts
    total = QuantileSketch(exact_limit=64)
    total.merge(shared[0])
    total.merge(shared[1])
    for q in (0.5, 0.9, 0.99):
        assert_within(total, everything, q, "lower")
