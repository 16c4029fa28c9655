"""``plot_timeline``: from a simulation, from a real executor's events, stacked panels; bad input."""

from __future__ import annotations

import struct
import sys
import time

import pytest
import straggler as sg
from straggler._records import OUTCOMES, AttemptEvent
from straggler.timeline import _bars, _lanes

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_importing_straggler_does_not_import_matplotlib():
    import subprocess

    code = "import sys, straggler; assert 'matplotlib' not in sys.modules; print(straggler.plot_timeline.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plot_timeline"


def test_a_simulation_and_a_comparison_plot_to_png(tmp_path):
    pytest.importorskip("matplotlib")
    none = sg.simulate(60, 8, 2, 4.0, seed=1)
    late = sg.simulate(60, 8, 2, 4.0, policy="late", seed=1)
    sg.plot_timeline(late, tmp_path / "one.png")
    sg.plot_timeline({"no speculation": none, "late": late}, tmp_path / "two.png")
    one, two = png_size(tmp_path / "one.png"), png_size(tmp_path / "two.png")
    assert one[0] == two[0] and two[1] > one[1]  # a panel more, same width


def test_an_executors_events_plot_with_one_row_per_concurrent_attempt(tmp_path):
    pytest.importorskip("matplotlib")

    def work(i):
        time.sleep(0.01)
        return i

    with sg.SpeculativeExecutor(max_workers=3, policy=None) as ex:
        assert list(ex.map(work, range(12))) == list(range(12))
    sg.plot_timeline(ex, tmp_path / "executor.png", title="a thread pool")
    assert png_size(tmp_path / "executor.png")[0] > 0
    rows = _lanes(_bars(ex.events()))[1]
    # A thread pool reports every attempt on node 0: its lanes are its (at most 3) workers.
    assert {node for node, _ in rows} == {0} and 1 <= len(rows) <= 3


def test_lanes_keep_overlapping_attempts_of_a_node_apart():
    events = [
        AttemptEvent("start", 0.0, 0, 0, "s", 5, False),
        AttemptEvent("start", 1.0, 1, 0, "s", 5, False),
        AttemptEvent("finish", 2.0, 0, 0, "s", 5, False),
        AttemptEvent("start", 2.0, 2, 0, "s", 5, False),
        AttemptEvent("start", 2.5, 1, 1, "s", 7, True),
    ]
    bars = _bars(events)
    row_of, rows = _lanes(bars)
    assert rows == [(5, 0), (5, 1), (7, 0)]
    by_task = {(bar[0], bar[2]): row for bar, row in zip(bars, row_of)}
    assert by_task[(0.0, 5)] == by_task[(2.0, 5)] == 0  # task 2 reuses task 0's lane
    assert by_task[(1.0, 5)] == 1
    # Attempts still running when the events were taken end at the last event's time.
    assert sorted((b[0], b[1], b[3]) for b in bars if b[3] == "running") == [(1.0, 2.5, "running"),
                                                                              (2.0, 2.5, "running"),
                                                                              (2.5, 2.5, "running")]


def test_an_end_without_a_start_is_rejected(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="events: 'finish' of task 3 attempt 0 without a start"):
        sg.plot_timeline([AttemptEvent("finish", 1.0, 3, 0, "s", 0, False)], tmp_path / "x.png")


@pytest.mark.parametrize(("width", "error"), [(0, ValueError), (-3.0, ValueError), (float("nan"), ValueError),
                                              ("wide", TypeError)])
def test_a_bad_width_is_rejected_naming_it(tmp_path, width, error):
    pytest.importorskip("matplotlib")
    with pytest.raises(error, match=r"^width must be"):
        sg.plot_timeline([], tmp_path / "x.png", width=width)


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("speculative", [False, True])
def test_every_outcome_kind_is_drawn(tmp_path, outcome, speculative):
    # A Dask worker's death leaves "lost" attempts; every kind the records define has a style.
    pytest.importorskip("matplotlib")
    events = [
        AttemptEvent("start", 0.0, 0, 0, "s", 0, False),
        AttemptEvent("start", 0.5, 0, 1, "s", 1, speculative),
        AttemptEvent(outcome, 1.0, 0, 1, "s", 1, speculative),
        AttemptEvent("finish", 2.0, 0, 0, "s", 0, False),
    ]
    sg.plot_timeline(events, tmp_path / "t.png")
    assert png_size(tmp_path / "t.png")[0] > 0
