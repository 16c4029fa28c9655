"""Arguments of the compiled classes: every numeric numpy array is taken (strided views,
columns of 2-D arrays, other byte orders, read-only), and every rejection names the argument
and shows the value, leaving the state as it was."""

from __future__ import annotations

import numpy as np
import pytest
import straggler as sg


def detector():
    det = sg.Detector(sg.SparkPolicy(quantile=0.5))
    stage = det.add_stage(num_tasks=8)
    det.add_tasks(stage, 8)
    det.start_many(np.arange(4), 0.0)
    return det


def state(det):
    return det.num_tasks, det.num_running, [det.running(t) for t in range(8)], det.check(50.0).task.tolist()


BAD = [
    # (call, exception, the argument named, the value shown)
    (lambda d: d.start(5, "1.0"), TypeError, "now", "'1.0'"),
    (lambda d: d.start(5, True), TypeError, "now", "True"),
    (lambda d: d.start(5, 1j), TypeError, "now", "1j"),
    (lambda d: d.heartbeat(0, 1.0, progress="0.5"), TypeError, "progress", "'0.5'"),
    (lambda d: d.heartbeat(0, 1.0, records=b"9"), TypeError, "records", "b'9'"),
    (lambda d: d.finish(0, 1.0, ok=1), TypeError, "ok", "1"),
    (lambda d: d.finish(0, 1.0, ok="yes"), TypeError, "ok", "'yes'"),
    (lambda d: d.check("5"), TypeError, "now", "'5'"),
    (lambda d: d.slow_nodes(None), TypeError, "now", "None"),
    (lambda d: d.start_many([4, 5], ["5", "6"]), TypeError, "now", "'5'"),
    (lambda d: d.start_many([4, 5], np.array(["2020-01-01"] * 2, dtype="datetime64[D]")),
     TypeError, "now", "datetime64"),
    (lambda d: d.start_many([4, 5], np.array([1 + 0j, 2 + 0j])), TypeError, "now", "complex"),
    (lambda d: d.start_many([4, 5], np.array([True, False])), TypeError, "now", "bool"),
    (lambda d: d.start_many([4, 5], np.zeros((2, 1))), TypeError, "now", "(2, 1)"),
    (lambda d: d.start_many(np.zeros((2, 1), dtype=int), 0.0), TypeError, "tasks", "(2, 1)"),
    (lambda d: d.start_many([4.0, 5.0], 0.0), TypeError, "tasks", "float64"),
    (lambda d: d.start_many([4, 5], 0.0, nodes=["a", "b"]), TypeError, "nodes", "'a'"),
    (lambda d: d.start_many(np.array([4, 2**63], dtype=np.uint64), 0.0), KeyError, "task",
     str(2**63)),
    (lambda d: d.heartbeat_many(np.array([0, 2**64 - 1], dtype=np.uint64), 1.0), KeyError,
     "attempt", str(2**64 - 1)),
    (lambda d: d.heartbeat_many([0, 1], 1.0, progress=["0.5", "0.5"]), TypeError, "progress", "'0.5'"),
    (lambda d: d.heartbeat_many([0, 1], 1.0, records=np.array([1j, 2j])), TypeError, "records", "complex"),
    (lambda d: d.finish_many([0, 1], 1.0, ok=[1, 0]), TypeError, "ok", "int64"),
    (lambda d: d.finish_many([0, 1], 1.0, records=[[1.0], [2.0]]), TypeError, "records", "(2, 1)"),
    (lambda d: d.finish_many([0, 1], ["1", "2"]), TypeError, "now", "'1'"),
]


@pytest.mark.parametrize(("call", "error", "argument", "shown"), BAD,
                         ids=[f"{i}-{a}" for i, (_, _, a, _) in enumerate(BAD)])
def test_detector_rejections_name_the_argument_and_value_and_change_nothing(call, error, argument, shown):
    det = detector()
    before = state(det)
    with pytest.raises(error) as caught:
        call(det)
    assert argument in str(caught.value) and shown in str(caught.value), str(caught.value)
    assert state(det) == before


SKETCH_BAD = [
    (lambda s: s.add("1.0"), TypeError, "x", "'1.0'"),
    (lambda s: s.add(True), TypeError, "x", "True"),
    (lambda s: s.add_many(["1.0", "2.0"]), TypeError, "values", "'1.0'"),
    (lambda s: s.add_many(np.array([1 + 0j])), TypeError, "values", "complex"),
    (lambda s: s.add_many(np.array(["2020-01-01"], dtype="datetime64[D]")), TypeError, "values",
     "datetime64"),
    (lambda s: s.add_many(np.array([True, False])), TypeError, "values", "bool"),
    (lambda s: s.add_many(np.zeros((2, 2))), TypeError, "values", "(2, 2)"),
    (lambda s: s.quantile("0.5"), TypeError, "q", "'0.5'"),
    (lambda s: s.quantiles(["0.5"]), TypeError, "qs", "'0.5'"),
    (lambda s: s.quantiles(np.zeros((1, 1))), TypeError, "qs", "(1, 1)"),
]


@pytest.mark.parametrize(("call", "error", "argument", "shown"), SKETCH_BAD,
                         ids=[f"{i}-{a}" for i, (_, _, a, _) in enumerate(SKETCH_BAD)])
def test_sketch_rejections_name_the_argument_and_value_and_change_nothing(call, error, argument, shown):
    sketch = sg.QuantileSketch()
    sketch.add_many([1.0, 2.0])
    before = sketch.to_bytes()
    with pytest.raises(error) as caught:
        call(sketch)
    assert argument in str(caught.value) and shown in str(caught.value), str(caught.value)
    assert sketch.to_bytes() == before


def views(values: np.ndarray) -> dict[str, np.ndarray]:
    """The same values as numpy hands them out in practice."""
    doubled = np.repeat(values, 2)
    table = np.stack([values, values * 0 + 7], axis=1)
    read_only = values.copy()
    read_only.flags.writeable = False
    return {
        "strided": doubled[::2],
        "column": table[:, 0],
        "swapped": values.astype(values.dtype.newbyteorder(">" if values.dtype.byteorder != ">" else "<")),
        "read-only": read_only,
        "reversed": values[::-1][::-1],
        "float32": values.astype(np.float32) if values.dtype.kind == "f" else values.astype(np.int32),
    }


@pytest.mark.parametrize("how", list(views(np.arange(3.0))))
def test_detector_takes_any_numeric_array(how):
    ref, det = detector(), detector()
    attempts = np.arange(4, dtype=np.int64)
    times = np.array([1.0, 2.0, 3.0, 4.0])
    progress = np.array([0.25, 0.5, 0.75, 1.0])
    ref.heartbeat_many(attempts, times, progress=progress, records=times * 10)
    det.heartbeat_many(views(attempts)[how], views(times)[how], progress=views(progress)[how],
                       records=views(times * 10)[how])
    tasks = np.array([4, 5], dtype=np.int64)
    assert ref.start_many(tasks, np.array([5.0, 6.0])).tolist() == det.start_many(
        views(tasks)[how], views(np.array([5.0, 6.0]))[how]).tolist()
    won_ref = ref.finish_many(attempts, times + 1.0, ok=np.array([True, False, True, True]))
    won = det.finish_many(views(attempts)[how], views(times + 1.0)[how],
                          ok=views(np.array([True, False, True, True]))["strided"])
    assert won.tolist() == won_ref.tolist()
    assert state(det) == state(ref)
    assert det.stage_stats(0) == ref.stage_stats(0)


@pytest.mark.parametrize("how", list(views(np.arange(3.0))))
def test_sketch_takes_any_numeric_array(how):
    values = np.linspace(1.0, 50.0, 200)
    qs = np.array([0.0, 0.25, 0.5, 0.99, 1.0])
    plain, other = sg.QuantileSketch(exact_limit=50), sg.QuantileSketch(exact_limit=50)
    plain.add_many(values.astype(np.float32) if how == "float32" else values)
    other.add_many(views(values)[how])
    assert other.to_bytes() == plain.to_bytes()
    assert other.quantiles(views(qs)[how]).tolist() == plain.quantiles(qs).tolist()
