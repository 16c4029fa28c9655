"""Hostile review of replay (issue 16): logs and arguments a hostile user gives ``replay``,
``read_log``, ``simulate_stages`` and ``python -m straggler replay``. Each test failed before
its fix (or is marked xfail, strict, with what is left)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import straggler as sg
from straggler.__main__ import main
from straggler._eventlog import read_log
from straggler._replay import replay
from straggler.simulation import simulate_stages

SPEC_ROLLING = os.path.join(os.path.dirname(__file__), "data", "spark", "spec-rolling",
                            "eventlog_v2_app-20261203064312-0001")
HEADER = {"schema": "straggler.events", "version": 1, "time_unit": "s"}


def task_start(tid, index, executor, launch, stage=0):
    return {"Event": "SparkListenerTaskStart", "Stage ID": stage, "Stage Attempt ID": 0,
            "Task Info": {"Task ID": tid, "Index": index, "Attempt": 0, "Launch Time": launch,
                          "Executor ID": executor, "Host": "h" + executor, "Speculative": False}}


def task_end(tid, index, executor, launch, finish, stage=0):
    return {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Stage Attempt ID": 0,
            "Task End Reason": {"Reason": "Success"},
            "Task Info": {"Task ID": tid, "Index": index, "Attempt": 0, "Launch Time": launch,
                          "Executor ID": executor, "Host": "h" + executor, "Finish Time": finish,
                          "Failed": False, "Killed": False}}


def spark_job(executors, durations=None):
    """A stage of one task per entry of ``executors`` (task i on executors[i]), one after another."""
    events = []
    for i, executor in enumerate(executors):
        seconds = 1000 if durations is None else durations[i]
        events += [task_start(i, i, executor, 2000 * i), task_end(i, i, executor, 2000 * i, 2000 * i + seconds)]
    return events


def write_lines(path, objects, raw=()):
    with open(path, "w", encoding="utf-8") as f:
        for obj in objects:
            f.write(json.dumps(obj) + "\n")
        for line in raw:
            f.write(line + "\n")
    return path


def cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def quiet_replay(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return replay(*args, **kwargs)


# --- the model ------------------------------------------------------------------------------------


def test_an_executor_id_of_unicode_digits_int_cannot_read_is_replayed(tmp_path):
    # "²".isdigit() is True, int("²") a ValueError: the executors' order must not call int on it.
    log = write_lines(tmp_path / "log", spark_job(["²", "1", "²", "1"]))
    assert quiet_replay(log, ["spark"]).model.executors == ("1", "²")


def test_the_executors_order_does_not_depend_on_the_hash_seed(tmp_path):
    # "1" and "01" are both executor 1 to int(): their order came from iterating a set of
    # strings, which differs between interpreters (PYTHONHASHSEED).
    log = write_lines(tmp_path / "log", spark_job(["1", "01", "1", "01"], [1000, 4000, 1000, 4000]))
    code = ("import warnings; warnings.simplefilter('ignore'); import sys; from straggler._replay import replay; "
            "r = replay(sys.argv[1], ['spark']); print(r.model.executors, r.table())")
    seen = set()
    for seed in range(8):
        done = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}, check=True)
        seen.add(done.stdout)
    assert len(seen) == 1


# --- what is no usable log: one ValueError naming the file, never another exception ---------------


@pytest.mark.parametrize("field", ["Launch Time", "Finish Time"])
def test_a_spark_time_too_large_for_a_float_is_a_value_error_naming_the_file(tmp_path, field):
    events = spark_job(["1", "1"])
    line = 1 if field == "Launch Time" else 2  # the task's start, or its end
    events[line - 1]["Task Info"][field] = 10 ** 400
    log = write_lines(tmp_path / "log", events)
    with pytest.raises(ValueError, match=f"log:{line}: .*{field}"):
        read_log(log)


def test_a_straggler_log_time_too_large_for_a_float_is_a_value_error_naming_the_line(tmp_path):
    lines = [json.dumps(HEADER),
             '{"kind": "start", "time": 1' + "0" * 400 + ', "task": 0, "attempt": 0, "stage": "s", "node": 0, '
             '"speculative": false}',
             json.dumps({"kind": "finish", "time": 1.0, "task": 0, "attempt": 0, "stage": "s", "node": 0,
                         "speculative": False})]
    log = write_lines(tmp_path / "log.jsonl", [], lines)
    with pytest.raises(ValueError, match="log.jsonl:2: time"):
        read_log(log)
    with pytest.raises(ValueError, match="log.jsonl:2: time"):
        sg.read_events(log)


@pytest.mark.parametrize("where", ["first", "middle"])
def test_json_nested_too_deep_for_the_parser_is_a_value_error_naming_the_line(tmp_path, where):
    deep = "[" * 100_000 + "]" * 100_000
    events = spark_job(["1", "1"])
    raw = [deep] + [json.dumps(e) for e in events] if where == "first" else \
        [json.dumps(events[0]), deep, *(json.dumps(e) for e in events[1:])]
    log = write_lines(tmp_path / "log", [], raw)
    with pytest.raises(ValueError, match="log:[12]"):
        read_log(log)


def test_times_the_simulator_cannot_run_are_a_value_error_naming_the_file(tmp_path):
    log = write_lines(tmp_path / "log", spark_job(["1", "1"], [1000, 10 ** 300]))
    with pytest.raises(ValueError, match=str(log)):
        quiet_replay(log, ["spark"])


def test_cores_the_simulator_cannot_run_are_a_value_error_naming_the_file(tmp_path):
    added = {"Event": "SparkListenerExecutorAdded", "Executor ID": "1", "Executor Info": {"Total Cores": 10 ** 12}}
    log = write_lines(tmp_path / "log", [added, *spark_job(["1", "1"])])
    with pytest.raises(ValueError, match=str(log)):
        quiet_replay(log, ["spark"])


def test_a_straggler_log_whose_end_comes_before_its_start_is_read_as_spark_s_is(tmp_path):
    # Spark's reader clamps an end before its start to the start; straggler's own log gave the
    # simulator a negative size ("stages[0][0] must be in [0, 1e+200], got -4.0").
    rows = [HEADER, {"kind": "start", "time": 5.0, "task": 0, "attempt": 0, "stage": "s", "node": 0,
                     "speculative": False},
            {"kind": "finish", "time": 1.0, "task": 0, "attempt": 0, "stage": "s", "node": 0, "speculative": False}]
    log = write_lines(tmp_path / "log.jsonl", rows)
    (attempt,) = read_log(log).attempts
    assert attempt.end == attempt.start == 5.0
    assert quiet_replay(log, ["spark"]).runs["none"].makespan == 0.0


def test_unknown_event_kinds_in_a_straggler_log_are_skipped(tmp_path):
    row = {"task": 0, "attempt": 0, "stage": "s", "node": 0, "speculative": False}
    rows = [HEADER, {"kind": "start", "time": 0.0, **row}, {"kind": "checkpoint", "time": 0.5, **row},
            {"kind": "finish", "time": 1.0, **row}]
    log = write_lines(tmp_path / "log.jsonl", rows)
    (attempt,) = read_log(log).attempts
    assert (attempt.start, attempt.end, attempt.outcome) == (0.0, 1.0, "finish")


def run_cli(*args):
    """``python -m straggler replay ARGS`` in a child with a bounded address space and time: a
    reader that waits on a FIFO or reads an endless device fails this instead of the suite."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    code = "import sys; from straggler.__main__ import main; sys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run([sys.executable, "-c", code, "replay", *map(str, args)], capture_output=True,
                              text=True, timeout=15, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"replay {args} did not return")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = run_cli(fifo)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a regular file" in done.stderr


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_device_is_refused_without_reading_it():
    done = run_cli("/dev/zero")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a regular file" in done.stderr


def test_a_rolling_log_missing_a_file_is_refused_as_spark_refuses_it(tmp_path):
    # Spark's RollingEventLogFilesFileReader requires the indices to follow each other
    # ("Found missing event log file"): a gap is lost events, not a shorter job.
    folder = tmp_path / "eventlog_v2_app-1"
    folder.mkdir()
    events = spark_job(["1", "1", "1"])
    write_lines(folder / "events_1_app-1", events[:2])
    write_lines(folder / "events_3_app-1", events[4:])
    (folder / "appstatus_app-1").write_text("")
    with pytest.raises(ValueError, match="events_2"):
        read_log(folder)


def test_a_rolling_log_with_two_files_of_one_index_is_refused_saying_so(tmp_path):
    folder = tmp_path / "eventlog_v2_app-1"
    folder.mkdir()
    events = spark_job(["1", "1"])
    write_lines(folder / "events_1_app-1", events[:2])
    write_lines(folder / "events_1_app-1.old", events)
    write_lines(folder / "events_2_app-1", events[2:])
    twice = r"more than one events file of index 1 \(events_1_app-1, events_1_app-1\.old\)"
    with pytest.raises(ValueError, match=twice):
        read_log(folder)


# --- the command line: one line, exit code 2, never a traceback ----------------------------------


def test_a_name_with_a_lone_surrogate_is_printed_without_a_traceback(tmp_path, capsys):
    start = {"Event": "SparkListenerApplicationStart", "App ID": "app-\ud800", "App Name": "x", "Timestamp": 0}
    log = write_lines(tmp_path / "log", [start, *spark_job(["\udc80", "1"])])
    code = "import sys; from straggler.__main__ import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "replay", str(log), "--policy", "spark"],
                          capture_output=True, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert b"app-\\ud800" in done.stdout


def test_a_closed_standard_output_is_no_traceback():
    read, write = os.pipe()
    os.close(read)  # every write to the pipe fails: as `| head -1` once head has gone
    try:
        code = "import sys; from straggler.__main__ import main; sys.exit(main(sys.argv[1:]))"
        done = subprocess.run([sys.executable, "-c", code, "replay", SPEC_ROLLING, "--policy", "spark"],
                              stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert b"Traceback" not in done.stderr and done.returncode != 0


# --- the library's arguments ----------------------------------------------------------------------


def test_a_policy_class_instead_of_an_instance_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="policy.*SparkPolicy"):
        sg.simulate(tasks=5, nodes=2, policy=sg.SparkPolicy)
    with pytest.raises(TypeError, match="SparkPolicy"):
        replay(SPEC_ROLLING, [sg.SparkPolicy])


def test_policies_that_are_no_sequence_are_a_type_error_naming_them():
    with pytest.raises(TypeError, match="policies.*5"):
        replay(SPEC_ROLLING, 5)


def test_simulate_stages_takes_numpy_arrays():
    result = simulate_stages(np.full((2, 3), 2.0), np.array([1, 1]), np.ones((2, 2)))
    assert result.tasks == 6 and result.makespan == 8.0


@pytest.mark.parametrize("stages", [5, None, (x for x in [[1.0]])])
def test_simulate_stages_refuses_stages_that_are_no_sequence_naming_them(stages):
    with pytest.raises(TypeError, match="stages"):
        simulate_stages(stages, [1], [[1.0]])


@pytest.mark.parametrize("slow_nodes", [[7], [-1], "ab", None, [0.5]])
def test_simulate_stages_refuses_slow_nodes_that_are_no_nodes_naming_them(slow_nodes):
    with pytest.raises((TypeError, ValueError), match="slow_nodes"):
        simulate_stages([[1.0, 2.0]], [1], [[1.0]], slow_nodes=slow_nodes)


# --- the simulator's cost under Mantri ------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="the simulator has no crossing model for Mantri (quiet_until returns 0): "
                                       "it checks at every tick, so a replay costs length / interval checks and "
                                       "`replay LOG --policy mantri --interval 1e-6` runs for hours")
def test_a_replay_under_mantri_checks_in_proportion_to_its_events_not_to_its_length(monkeypatch):
    from straggler import simulation

    checks = []
    original = simulation._Simulation.check

    def counted(self, now):
        checks.append(now)
        return original(self, now)

    monkeypatch.setattr(simulation._Simulation, "check", counted)
    result = quiet_replay(SPEC_ROLLING, ["mantri"], interval=1e-3)
    events = len(result.runs["mantri"].events)
    slots = sum(result.model.slots)
    # Between two events a check's answer can change only when an attempt crosses a threshold:
    # a few times per running attempt. The run is 14.5 s long: 14,500 ticks at 1 ms.
    assert len(checks) <= 4 * events * slots


# --- the executor's event log as rows (events() and on_event) -------------------------------------

RESTARTED = {3, 9}


def paced(i: int) -> int:
    """0.1 s in 20 ms steps, heartbeating progress; the first attempts of RESTARTED take 3 s."""
    import time

    total = 3.0 if i in RESTARTED and sg.current_attempt().attempt == 0 else 0.1
    steps = int(round(total / 0.02))
    for k in range(steps):
        time.sleep(0.02)
        sg.heartbeat(progress=(k + 1) / steps)
    return i


def test_events_read_from_threads_while_mantri_restarts_are_prefixes_and_on_event_sees_the_same():
    import threading

    received = []
    snapshots = []
    stop = threading.Event()

    def hammer(ex):
        while not stop.wait(0.002):
            snapshots.append(ex.events())

    with sg.SpeculativeExecutor(max_workers=4, policy=sg.MantriPolicy(interval=0.05), on_event=received.append) as ex:
        readers = [threading.Thread(target=hammer, args=(ex,)) for _ in range(3)]
        for reader in readers:
            reader.start()
        try:
            assert list(ex.map(paced, range(24))) == list(range(24))
        finally:
            stop.set()
            for reader in readers:
                reader.join()
    events = ex.events()
    assert received == events
    assert len(snapshots) > 3 and all(events[:len(s)] == s for s in snapshots)
    kills = [e for e in events if e.kind == "kill" and e.reason == "restart"]
    restarts = [e for e in events if e.kind == "start" and e.reason == "restart"]
    assert {e.task for e in kills} >= RESTARTED and {e.task for e in restarts} == {e.task for e in kills}
    assert all(e.elapsed is not None and e.threshold is not None and not e.speculative for e in restarts)
    assert all(e.elapsed is None and e.limit is None for e in kills)
