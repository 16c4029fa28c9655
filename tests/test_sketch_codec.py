"""QuantileSketch.from_bytes against corrupted input: every encoding it accepts is a sketch whose
answers agree with each other, and nothing it is given crashes it.

The fuzz cases are seeded (the same few thousand every run): truncations, bit flips, byte
overwrites and random bytes, over valid encodings of sketches in both modes, of both signs,
with collapsed bins.
"""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest
from straggler import QuantileSketch

SEED = 20240611
HEADER = 4 + 1 + 1 + 8  # magic, version, mode, relative_accuracy


def varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def extremes_offset(sketch: QuantileSketch) -> int:
    """Where sum, min and max start in `sketch.to_bytes()`."""
    return (HEADER + varint_len(sketch.max_bins) + varint_len(sketch.exact_limit)
            + varint_len(sketch.count))


def patched(sketch: QuantileSketch, **fields: float) -> bytes:
    data = bytearray(sketch.to_bytes())
    at = extremes_offset(sketch)
    for i, name in enumerate(("sum", "min", "max")):
        if name in fields:
            data[at + 8 * i: at + 8 * i + 8] = struct.pack("<d", fields[name])
    return bytes(data)


def one_value_in_bins(x: float) -> QuantileSketch:
    sketch = QuantileSketch(exact_limit=0)
    sketch.add(x)
    return sketch


def test_the_patching_helper_rewrites_nothing_else():
    sketch = one_value_in_bins(1.0)
    assert patched(sketch) == sketch.to_bytes()
    assert QuantileSketch.from_bytes(patched(sketch, min=1.0)).min == 1.0


def exact_of(*values: float) -> QuantileSketch:
    sketch = QuantileSketch()
    sketch.add_many(list(values))
    return sketch


def binned_range() -> QuantileSketch:
    sketch = QuantileSketch(exact_limit=0)
    sketch.add_many(np.linspace(10.0, 20.0, 50))
    return sketch


@pytest.mark.parametrize(("build", "fields"), [
    # The case the issue found: one value, min unlike max; quantile(1) answered the min.
    (lambda: one_value_in_bins(1.0), {"min": 1e-300}),
    (lambda: one_value_in_bins(1.0), {"max": 2.0}),
    (lambda: one_value_in_bins(1.0), {"sum": 3.0}),
    (lambda: exact_of(2.0), {"sum": 3.0}),
    (lambda: exact_of(2.0, 3.0), {"sum": 6.0}),
    (lambda: exact_of(2.0, 3.0, 4.0), {"sum": 100.0}),
    (binned_range, {"max": 1e6}),  # far above the top bin
    (binned_range, {"min": 15.0}),  # above the bottom bin
    (binned_range, {"max": 19.0}),  # below the top bin
    (binned_range, {"sum": 1e9}),  # above count x max
    (binned_range, {"sum": 1.0}),  # below count x min
    (binned_range, {"sum": -5.0}),  # negative, of positive values
    (binned_range, {"sum": math.inf}),
    (binned_range, {"sum": math.nan}),
    (lambda: exact_of(-1.0, -2.0, -3.0), {"sum": 1.0}),  # positive, of negative values
])
def test_an_encoding_whose_numbers_disagree_is_refused(build, fields):
    data = patched(build(), **fields)
    with pytest.raises(ValueError, match="data is not a valid QuantileSketch encoding"):
        QuantileSketch.from_bytes(data)


def samples(rng: np.random.Generator) -> list[QuantileSketch]:
    """Valid sketches of every shape the encoder can be given."""
    out = []
    for exact_limit, max_bins in [(1024, 2048), (0, 2048), (5, 8), (0, 1), (0, 3), (50, 64)]:
        for kind in ("positive", "negative", "mixed", "zeros", "tiny", "huge", "one", "two"):
            n = {"one": 1, "two": 2}.get(kind, int(rng.integers(1, 400)))
            if kind == "positive":
                values = rng.lognormal(0.0, 2.0, n)
            elif kind == "negative":
                values = -rng.lognormal(0.0, 2.0, n)
            elif kind == "mixed":
                values = rng.normal(0.0, 10.0, n)
                values[rng.random(n) < 0.2] = 0.0
            elif kind == "zeros":
                values = np.zeros(n)
            elif kind == "tiny":
                values = rng.uniform(0.0, 1e-307, n) * rng.choice([-1.0, 1.0], n)
            elif kind == "huge":
                values = rng.uniform(1e306, 1e308, n) * rng.choice([-1.0, 1.0], n)
            else:
                values = rng.normal(0.0, 100.0, n)
            sketch = QuantileSketch(max_bins=max_bins, exact_limit=exact_limit)
            half = n // 2
            sketch.add_many(values[:half])
            for x in values[half:]:
                sketch.add(float(x))
            out.append(sketch)
    # Merged, and one large batch through the vectorised path.
    merged = QuantileSketch()
    for sketch in out[:8]:
        merged.merge(sketch)
    out.append(merged)
    big = QuantileSketch(max_bins=64)
    big.add_many(rng.lognormal(0.0, 3.0, 200_000))
    out.append(big)
    return out


def assert_self_consistent(sketch: QuantileSketch) -> None:
    """The answers of a sketch agree with each other, and it encodes to itself."""
    count, total, low, high = sketch.count, sketch.sum, sketch.min, sketch.max
    if count == 0:
        assert math.isnan(low) and math.isnan(high) and total == 0.0
        assert math.isnan(sketch.quantile(0.5))
    else:
        assert math.isfinite(low) and math.isfinite(high) and low <= high
        for method in ("lower", "higher", "linear"):
            assert sketch.quantile(0.0, method) == low
            assert sketch.quantile(1.0, method) == high
            qs = sketch.quantiles(np.linspace(0.0, 1.0, 21), method)
            assert np.all(np.diff(qs) >= 0) and qs[0] >= low and qs[-1] <= high
        if math.isfinite(total):
            slack = count * count * np.finfo(float).eps * max(abs(low), abs(high))
            assert count * low - slack <= total <= count * high + slack
        if count == 1:
            assert low == high == total
    again = QuantileSketch.from_bytes(sketch.to_bytes())
    assert again.to_bytes() == sketch.to_bytes()
    assert (again.count, again.min, again.max) == (count, low, high) or count == 0
    twice = QuantileSketch(sketch.relative_accuracy, sketch.max_bins, sketch.exact_limit)
    twice.merge(sketch)
    twice.merge(sketch)
    assert twice.count == 2 * count


def test_every_valid_encoding_is_accepted_and_round_trips():
    for sketch in samples(np.random.default_rng(SEED)):
        decoded = QuantileSketch.from_bytes(sketch.to_bytes())
        assert decoded.to_bytes() == sketch.to_bytes()
        assert_self_consistent(decoded)


def mutations(data: bytes, rnd: random.Random, k: int) -> list[bytes]:
    out = [data[: rnd.randrange(len(data))] for _ in range(k)]  # truncations
    for _ in range(k):  # bit flips, one to three
        blob = bytearray(data)
        for _ in range(rnd.randint(1, 3)):
            bit = rnd.randrange(8 * len(blob))
            blob[bit // 8] ^= 1 << (bit % 8)
        out.append(bytes(blob))
    for _ in range(k):  # a run of random bytes overwritten, inserted or deleted
        blob = bytearray(data)
        at = rnd.randrange(len(blob))
        run = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 9)))
        how = rnd.randrange(3)
        if how == 0:
            blob[at: at + len(run)] = run
        elif how == 1:
            blob[at:at] = run
        else:
            del blob[at: at + len(run)]
        out.append(bytes(blob))
    return out


def test_fuzzed_encodings_are_refused_or_self_consistent():
    rnd = random.Random(SEED)
    accepted = refused = 0
    cases = []
    for sketch in samples(np.random.default_rng(SEED)):
        cases += mutations(sketch.to_bytes(), rnd, 80)
    # Random bytes behind a valid header, and wholly random bytes.
    cases += [b"SQSK\x01" + bytes(rnd.randrange(256) for _ in range(rnd.randrange(80)))
              for _ in range(300)]
    cases += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(80))) for _ in range(100)]
    assert len(cases) > 10_000
    for data in cases:
        try:
            sketch = QuantileSketch.from_bytes(data)
        except ValueError as e:
            assert "data" in str(e)
            refused += 1
            continue
        accepted += 1
        assert_self_consistent(sketch)
    # Both outcomes happen: the fuzzing reaches past the first checks.
    assert accepted > 20 and refused > 1000, (accepted, refused)
