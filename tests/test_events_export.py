"""Event export: the JSON-lines log round-trips, the Chrome trace is well formed, ``on_event``
sees what ``events()`` holds, per-stage stats add up, and bad arguments write nothing."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict

import pytest
import straggler as sg
from straggler._records import AttemptEvent

POLICY = sg.SparkPolicy(min_runtime=0.05, interval=0.01)
SLOW = 10        # a "map" task whose first attempt runs until it is stopped
FAILING = 3      # a "map" task whose first attempt raises
TIMED_OUT = 2    # a "reduce" task whose first attempt runs past its timeout


def mapper(i: int) -> int:
    attempt = sg.current_attempt().attempt
    if i == FAILING and attempt == 0:
        raise ValueError("first attempt fails")
    seconds = 5.0 if i == SLOW and attempt == 0 else 0.03
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        sg.heartbeat(progress=min(1.0, elapsed / seconds))
        time.sleep(0.003)
    return i


def reducer(i: int) -> int:
    if i == TIMED_OUT and sg.current_attempt().attempt == 0:
        while True:  # stopped by its timeout: heartbeat raises once the scheduler stops it
            sg.heartbeat()
            time.sleep(0.005)
    time.sleep(0.02)
    return i


def run_job(on_event=None):
    with sg.SpeculativeExecutor(max_workers=4, policy=POLICY, on_event=on_event) as ex:
        maps = [ex.submit(sg.options(mapper, stage="map"), i) for i in range(12)]
        assert [f.result() for f in maps] == list(range(12))
        reduce = sg.options(reducer, stage="reduce", timeout=0.2, speculatable=False)
        reduces = [ex.submit(reduce, i) for i in range(4)]
        assert [f.result() for f in reduces] == list(range(4))
    return ex


@pytest.fixture(scope="module")
def job():
    received: list[AttemptEvent] = []
    ex = run_job(received.append)
    return ex, received


def test_the_job_has_a_winning_copy_a_failure_and_a_timeout(job):
    ex, _ = job
    stats = ex.stats()
    assert stats.speculative_wins >= 1 and stats.timeouts == 1 and stats.failures == 2
    events = ex.events()
    copy_start = [e for e in events if e.kind == "start" and e.speculative and e.task == SLOW]
    assert len(copy_start) == 1
    assert copy_start[0].elapsed is not None and copy_start[0].threshold is not None
    assert copy_start[0].elapsed >= copy_start[0].threshold > 0
    timeouts = [e for e in events if e.kind == "fail" and e.reason == "timeout"]
    assert len(timeouts) == 1 and timeouts[0].limit == 0.2 and timeouts[0].stage == "reduce"
    plain = [e for e in events if not (e.kind == "start" and e.speculative) and e.reason is None]
    assert all(e.elapsed is None and e.threshold is None and e.limit is None for e in plain)


# --- JSON lines ---------------------------------------------------------------------------------


def test_jsonl_round_trips_to_the_same_events(job, tmp_path):
    ex, _ = job
    path = tmp_path / "job.jsonl"
    ex.write_events(path)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["schema"] == "straggler.events" and header["version"] == 1 and header["time_unit"] == "s"
    assert len(lines) == 1 + len(ex.events())
    first = json.loads(lines[1])
    assert set(first) == {"kind", "time", "task", "attempt", "stage", "node", "speculative"}
    assert sg.read_events(path) == ex.events()
    assert sg.read_events(str(path)) == ex.events()


def test_jsonl_round_trips_a_simulation_with_restarts(tmp_path):
    result = sg.simulate(tasks=300, nodes=10, slow_nodes=2, policy="mantri", seed=1)
    assert any(e.reason == "restart" for e in result.events)  # kill-and-restart carries its reason
    path = tmp_path / "sim.jsonl"
    sg.write_events(result.events, path)
    assert sg.read_events(path) == list(result.events)


def test_read_events_refuses_what_is_not_a_log(tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="straggler.events"):
        sg.read_events(other)
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"schema": "straggler.events", "version": 99}\n')
    with pytest.raises(ValueError, match="version 99"):
        sg.read_events(newer)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"schema": "straggler.events", "version": 1}\n{"kind": "start", "time": 1.0}\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: missing"):
        sg.read_events(broken)


def test_unknown_keys_are_ignored(tmp_path):
    path = tmp_path / "extra.jsonl"
    path.write_text('{"schema": "straggler.events", "version": 1, "future": true}\n'
                    '{"kind": "finish", "time": 2, "task": 1, "attempt": 0, "stage": "s", "node": 3,'
                    ' "speculative": false, "new_field": "x"}\n')
    assert sg.read_events(path) == [AttemptEvent("finish", 2.0, 1, 0, "s", 3, False)]


# --- Chrome trace ---------------------------------------------------------------------------------


def check_trace(trace: dict, events: list[AttemptEvent]) -> list[dict]:
    """The trace-event format's required fields, and no two slices on one track overlap."""
    assert isinstance(trace["traceEvents"], list)
    slices = []
    for e in trace["traceEvents"]:
        for field in ("name", "ph", "pid", "tid"):
            assert field in e, (field, e)
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
            assert "cat" in e and "cname" in e and "task" in e["args"]
            slices.append(e)
        else:
            assert e["ph"] == "i" and e["s"] in ("t", "p", "g")
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    for e in slices:
        tracks[e["pid"], e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    for spans in tracks.values():
        spans.sort()
        for (_, end), (begin, _) in zip(spans, spans[1:]):
            assert begin >= end, spans
    assert len(slices) == sum(e.kind == "start" for e in events)
    decisions = [e for e in trace["traceEvents"] if e.get("cat") == "decision"]
    assert len(decisions) == sum(e.kind == "start" and e.elapsed is not None for e in events)
    return slices


def test_chrome_trace_of_the_executor(job, tmp_path):
    ex, _ = job
    path = tmp_path / "job.json"
    ex.write_events(path, format="chrome")
    trace = json.loads(path.read_text())
    slices = check_trace(trace, ex.events())
    names = {e["name"] for e in slices}
    assert {"finish", "copy finish", "kill", "fail", "timeout"} <= names
    (won,) = [e for e in slices if e["name"] == "copy finish" and e["args"]["task"] == SLOW]
    assert won["args"]["task"] == SLOW and "copy" in won["cat"].split(",")
    assert won["args"]["elapsed"] >= won["args"]["threshold"]
    (timeout,) = [e for e in slices if e["name"] == "timeout"]
    assert timeout["args"]["limit"] == 0.2 and timeout["cname"] != won["cname"]
    (decision,) = [e for e in trace["traceEvents"] if e.get("cat") == "decision" and e["args"]["task"] == SLOW]
    assert decision["args"]["copied_attempt"] == 0 and decision["ts"] <= won["ts"]
    # Four threads on one node: at most four lanes, and the overlapping attempts used several.
    assert {e["pid"] for e in slices} == {0} and 1 < len({e["tid"] for e in slices}) <= 5


def test_chrome_trace_of_a_simulation(tmp_path):
    result = sg.simulate(tasks=400, nodes=8, slow_nodes=2, slow_factor=5.0, policy="spark", seed=0)
    path = tmp_path / "sim.json"
    sg.write_events(result.events, path, format="chrome")
    trace = json.loads(path.read_text())
    slices = check_trace(trace, list(result.events))
    assert {e["pid"] for e in slices} == set(range(8))
    assert any(e["name"] == "copy finish" for e in slices) and any("kill" in e["name"] for e in slices)


def test_chrome_lanes_keep_overlapping_attempts_apart(tmp_path):
    E = AttemptEvent
    events = [
        E("start", 0.0, 0, 0, "s", 0, False), E("start", 0.5, 1, 0, "s", 0, False),
        E("finish", 1.0, 0, 0, "s", 0, False), E("start", 1.0, 2, 0, "s", 0, False),  # reuses lane 0
        E("start", 1.2, 1, 1, "s", 0, True, 0.7, 0.6), E("lost", 2.0, 1, 0, "s", 0, False),
        E("finish", 3.0, 1, 1, "s", 0, True), E("start", 3.5, 3, 0, "s", 1, False),  # still running
        E("kill", 4.0, 2, 0, "s", 0, False),
    ]
    path = tmp_path / "t.json"
    sg.write_events(events, path, format="chrome")
    trace = json.loads(path.read_text())
    slices = check_trace(trace, events)
    by_task = {(e["args"]["task"], e["args"]["attempt"]): e for e in slices}
    assert by_task[0, 0]["tid"] == by_task[2, 0]["tid"] == 0
    assert len({by_task[0, 0]["tid"], by_task[1, 0]["tid"], by_task[1, 1]["tid"]}) == 3
    assert by_task[1, 0]["name"] == "lost" and by_task[3, 0]["name"] == "running"
    assert by_task[3, 0]["dur"] == 500_000  # up to the last event
    (decision,) = [e for e in trace["traceEvents"] if e.get("cat") == "decision"]
    # Decided 0.7 s into attempt 0 of task 1 (started at 0.5): at 1.2 s on that attempt's track.
    assert decision["ts"] == 1_200_000 and decision["tid"] == by_task[1, 0]["tid"]
    assert trace["otherData"]["time_origin"] == 0.0


# --- on_event -------------------------------------------------------------------------------------


def test_on_event_receives_exactly_the_events_in_order(job):
    ex, received = job
    assert received == ex.events() and len(received) > 30


def test_a_raising_on_event_does_not_stop_speculation(caplog):
    calls = []

    def callback(event: AttemptEvent) -> None:
        calls.append(event)
        raise RuntimeError("callback broke")

    with caplog.at_level(logging.ERROR, logger="straggler"):
        ex = run_job(callback)
    stats = ex.stats()
    assert stats.speculative_wins >= 1  # the copy still won after the callback raised
    assert any(e.kind == "finish" and e.speculative and e.task == SLOW for e in ex.events())
    assert calls == ex.events()
    raised = [r for r in caplog.records if "on_event raised" in r.getMessage()]
    assert len(raised) == len(calls) and all(r.exc_info and "callback broke" in str(r.exc_info[1]) for r in raised)


def test_on_event_runs_in_the_scheduler_thread():
    import threading

    threads = set()
    with sg.SpeculativeExecutor(max_workers=2, policy=None,
                                on_event=lambda e: threads.add(threading.current_thread().name)) as ex:
        list(ex.map(abs, range(10)))
    assert threads == {"straggler-scheduler"}


# --- per-stage stats --------------------------------------------------------------------------------


def test_stage_stats_add_up_to_stats(job):
    ex, _ = job
    table = ex.stage_stats()
    assert list(table) == ["map", "reduce"]
    assert table["map"] == ex.stats(stage="map") and table["reduce"] == ex.stats("reduce")
    assert table["map"].tasks == 12 and table["reduce"].tasks == 4
    assert table["map"].speculative_wins >= 1 and table["map"].failures == 1 and table["map"].timeouts == 0
    assert table["reduce"].timeouts == 1 and table["reduce"].speculative == 0
    total = ex.stats()
    for field in ("tasks", "attempts", "speculative", "speculative_wins", "failures", "killed", "lost",
                  "timeouts", "abandoned"):
        assert sum(getattr(s, field) for s in table.values()) == getattr(total, field), field
    assert sum(s.wasted_seconds for s in table.values()) == pytest.approx(total.wasted_seconds)
    assert table["map"].wasted_seconds > 0


def test_stats_of_an_unknown_stage(job):
    ex, _ = job
    with pytest.raises(KeyError, match="nope"):
        ex.stats(stage="nope")
    with pytest.raises(TypeError, match="stage"):
        ex.stats(stage=3)


# --- bad arguments ------------------------------------------------------------------------------------


EVENTS = [AttemptEvent("start", 0.0, 0, 0, "s", 0, False), AttemptEvent("finish", 1.0, 0, 0, "s", 0, False)]


def test_bad_format_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="format"):
        sg.write_events(EVENTS, tmp_path / "x.xml", format="xml")
    assert os.listdir(tmp_path) == []


def test_a_directory_as_path_is_an_oserror(tmp_path):
    for format in ("jsonl", "chrome"):
        with pytest.raises(IsADirectoryError, match="path"):
            sg.write_events(EVENTS, tmp_path, format=format)
    assert os.listdir(tmp_path) == []


def test_an_unwritable_path_is_an_oserror(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="path"):
        sg.write_events(EVENTS, blocker / "events.jsonl")  # a file is no directory
    with pytest.raises(OSError, match="path"):
        sg.write_events(EVENTS, tmp_path / "missing" / "events.jsonl")
    assert os.listdir(tmp_path) == ["file"] and blocker.read_text() == "x"


def test_an_existing_file_is_replaced_whole(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("old")
    sg.write_events(EVENTS, path)
    assert sg.read_events(path) == EVENTS and os.listdir(tmp_path) == ["events.jsonl"]


def test_bad_events_and_paths_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"events\[0\]"):
        sg.write_events([("start", 0.0)], tmp_path / "x.jsonl")
    with pytest.raises(TypeError, match="events"):
        sg.write_events(3, tmp_path / "x.jsonl")
    with pytest.raises(TypeError, match="path"):
        sg.write_events(EVENTS, 3)
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError, match="on_event"):
        sg.SpeculativeExecutor(on_event=3)


def test_empty_events_write_a_valid_file(tmp_path):
    sg.write_events([], tmp_path / "e.jsonl")
    assert sg.read_events(tmp_path / "e.jsonl") == []
    sg.write_events([], tmp_path / "e.json", format="chrome")
    assert json.loads((tmp_path / "e.json").read_text())["traceEvents"] == []


def test_the_event_log_keeps_no_attempt_or_task_alive():
    # The log holds rows of plain values: a long job's log keeps none of its settled tasks
    # (nor their arguments) alive, and gives the garbage collector nothing to walk.
    import gc

    from straggler._ledger import Attempt, Task

    def alive() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, (Attempt, Task))}

    before = alive()  # other tests' executors may still hold some (abandoned threads)
    with sg.SpeculativeExecutor(max_workers=2, policy=None) as ex:
        assert list(ex.map(abs, range(-500, 0))) == list(range(500, 0, -1))
    assert len(ex.events()) == 1000 and [e.kind for e in ex.events()].count("finish") == 500
    assert alive() - before == set()
