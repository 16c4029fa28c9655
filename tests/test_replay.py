"""``straggler.replay``: reading event logs (Spark's, in its formats, and ours), the model of the
job, and the replay under every policy.

The Spark logs under tests/data/spark/ were written by real PySpark runs of
tests/data/make_spark_logs.py; ``JOB`` and ``work`` there say what those runs did.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import straggler as sg
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from straggler._eventlog import Attempt, read_log
from straggler._replay import build_model
from straggler.simulation import POLICY_NAMES

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
from make_spark_logs import JOB, work  # noqa: E402

SPARK = DATA / "spark"


def spark_log(name: str) -> Path:
    """The one log Spark wrote for run ``name`` (its file, or its rolling directory)."""
    (entry,) = [p for p in (SPARK / name).iterdir() if not p.name.startswith(".")]
    return entry


RUNS = ["nospec-rolling", "spec-rolling", "nospec-plain", "spec-plain"]
NO_SPECULATION = ["nospec-rolling", "nospec-plain"]


def zstd_frames(data: bytes, frames: int = 1) -> bytes:
    """``data`` compressed as ``frames`` zstd frames, one after another (as a stream that was
    flushed and ended several times)."""
    step = max(1, math.ceil(len(data) / frames))
    return b"".join(zstandard.ZstdCompressor().compress(data[i:i + step]) for i in range(0, len(data), step))


def plain_bytes(name: str) -> bytes:
    """Run ``name``'s log as plain JSON lines, whatever its format."""
    path = spark_log(name)
    if path.is_dir():
        (events,) = path.glob("events_*")
        return zstandard.ZstdDecompressor().stream_reader(events.read_bytes(), read_across_frames=True).read()
    return path.read_bytes()


# --- the fixture logs against what the script did -------------------------------------------------


@pytest.mark.parametrize("name", RUNS)
def test_the_spark_logs_hold_every_task_the_script_ran_on_its_two_executors(name):
    log = read_log(spark_log(name))
    assert log.kind == "spark" and log.application and log.application.startswith("app-")
    assert log.warnings == []
    won = defaultdict(set)
    for a in log.attempts:
        if a.outcome == "finish":
            won[a.stage].add(a.task)
    assert {int(s): sorted(t) for s, t in won.items()} == {s: list(range(n)) for s, n in JOB["stages"].items()}
    assert {a.host for a in log.attempts} == {JOB["healthy_host"], JOB["slow_host"]}
    assert len({a.executor for a in log.attempts}) == 2
    # Each executor on a host of its own, with the cores the script gave it.
    assert len({(a.executor, a.host) for a in log.attempts}) == 2
    assert sorted(log.cores.values()) == [JOB["cores_per_executor"]] * 2 and log.task_cpus == 1


@pytest.mark.parametrize("name", RUNS)
def test_every_attempt_that_finished_took_at_least_the_sleep_it_was_given(name):
    log = read_log(spark_log(name))
    for a in log.attempts:
        if a.outcome != "finish" or a.stage == "0":
            continue
        slowdown = JOB["slowdown"] if a.host == JOB["slow_host"] else 1.0
        asked = work(int(a.stage) - 1, a.task) * slowdown
        # Spark stamps times in milliseconds.
        assert a.end - a.start >= asked - 0.002, (a, asked)


@pytest.mark.parametrize("name", NO_SPECULATION)
def test_without_speculation_every_task_has_one_attempt(name):
    log = read_log(spark_log(name))
    assert not any(a.speculative for a in log.attempts)
    assert Counter((a.stage, a.task) for a in log.attempts).most_common(1)[0][1] == 1
    assert {a.outcome for a in log.attempts} == {"finish"}


@pytest.mark.parametrize("name", ["spec-rolling", "spec-plain"])
def test_with_speculation_copies_ran_on_the_healthy_host_and_their_originals_were_killed(name):
    log = read_log(spark_log(name))
    copies = [a for a in log.attempts if a.speculative]
    assert copies
    for copy in copies:
        assert copy.host == JOB["healthy_host"] and copy.attempt >= 1
        others = [a for a in log.attempts if (a.stage, a.task) == (copy.stage, copy.task) and a is not copy]
        # One of the two won; the other was killed ("another attempt succeeded").
        assert sorted([copy.outcome, *(a.outcome for a in others)]) == ["finish", "kill"]


@pytest.mark.parametrize("name", NO_SPECULATION)
def test_the_slow_executor_is_about_as_much_slower_as_the_script_made_it_in_the_measured_map(name):
    model, _ = build_model(read_log(spark_log(name)))
    slow = model.hosts.index(JOB["slow_host"])
    healthy = model.hosts.index(JOB["healthy_host"])
    stage = model.stages.index("1")  # the map stage: 16 tasks, 4x slower on the slow host
    ratio = model.stage_slowness[stage][slow] / model.stage_slowness[stage][healthy]
    assert 3.0 <= ratio <= 5.0, ratio
    assert model.slots == (2, 2)


@pytest.mark.parametrize("name", RUNS)
def test_a_task_s_work_times_its_executor_s_slowness_is_its_observed_time(name):
    log = read_log(spark_log(name))
    model, observed = build_model(log)
    winners = {}
    for a in log.attempts:
        if a.outcome == "finish":
            winners.setdefault((a.stage, a.task), a)
    for k, stage in enumerate(model.stages):
        for task, w in zip(model.task_ids[k], model.work[k]):
            a = winners[stage, task]
            n = model.executors.index(a.executor)
            assert w * model.stage_slowness[k][n] == pytest.approx(a.end - a.start)
    assert observed.tasks == sum(JOB["stages"].values())


# --- the replay and the model's check --------------------------------------------------------------


@pytest.mark.parametrize("name", NO_SPECULATION)
def test_the_replay_without_speculation_is_within_15_percent_of_the_run_without_it(name):
    result = sg.replay(spark_log(name))
    assert result.observed.speculative == 0
    assert abs(result.fit - 1) <= 0.15, (result.fit, result.table())


@pytest.mark.parametrize("name", ["spec-rolling", "spec-plain"])
def test_replaying_a_speculative_run_under_spark_s_rule_comes_close_to_it(name):
    # The run used multiplier 1.5 and quantile 0.5: the same rule replayed should land near it,
    # and the observed run should be faster than the replay without speculation.
    policy = sg.SparkPolicy(multiplier=1.5, quantile=0.5, min_runtime=0.1)
    result = sg.replay(spark_log(name), [policy])
    assert abs(result.runs["spark"].makespan / result.observed.makespan - 1) <= 0.25, result.table()
    assert result.runs["spark"].speculative > 0


def test_the_table_has_the_observed_run_first_then_none_then_each_policy():
    result = sg.replay(spark_log("spec-plain"))
    lines = result.table().splitlines()
    assert lines[0].split()[:3] == ["run", "makespan", "(s)"]
    assert [line.split()[0] for line in lines[1:]] == ["observed", "none", *POLICY_NAMES]
    observed = lines[1].split()
    log = read_log(spark_log("spec-plain"))
    copies = sum(a.speculative for a in log.attempts)
    assert int(observed[4]) == copies == result.observed.speculative
    wins = sum(a.speculative and a.outcome == "finish" for a in log.attempts)
    assert int(observed[5]) == wins
    first = min(a.start for a in log.attempts)
    last = max(a.end for a in log.attempts if a.outcome == "finish")
    assert float(observed[1]) == pytest.approx(last - first, abs=0.005)
    wasted = sum(a.end - a.start for a in log.attempts if a.outcome != "finish")
    total = sum(a.end - a.start for a in log.attempts)
    assert result.observed.wasted_fraction == pytest.approx(wasted / total)


def test_every_replay_completes_every_task_of_the_model_once():
    result = sg.replay(spark_log("nospec-plain"), ["spark", "flink", "late", "mantri", "smallpond"])
    tasks = sum(len(w) for w in result.model.work)
    for name, run in result.runs.items():
        finishes = Counter(e.task for e in run.events if e.kind == "finish")
        assert sorted(finishes) == list(range(tasks)) and set(finishes.values()) == {1}, name
        assert run.makespan > 0


def test_policies_are_names_or_objects_and_bad_ones_are_refused():
    path = spark_log("nospec-plain")
    result = sg.replay(path, ["spark", sg.FlinkPolicy(baseline_lower_bound=0.1)])
    assert list(result.runs) == ["none", "spark", "flink"]
    with pytest.raises(ValueError, match="policy must be"):
        sg.replay(path, ["nope"])
    with pytest.raises(TypeError, match="policies must be a sequence"):
        sg.replay(path, "spark")
    with pytest.raises(ValueError, match="leave None out"):
        sg.replay(path, [None])
    with pytest.raises(ValueError, match=r"interval must be .* got -1"):
        sg.replay(path, ["spark"], interval=-1)
    # The interval is the policy's: checks a day apart never come within this job.
    assert sg.replay(path, ["spark"]).runs["spark"].speculative > 0
    assert sg.replay(path, ["spark"], interval=86400).runs["spark"].speculative == 0


# --- Spark's formats -----------------------------------------------------------------------------


def attempts_of(path) -> list[Attempt]:
    return read_log(path).attempts


def test_a_rolling_directory_of_several_files_reads_as_their_concatenation(tmp_path):
    # Spark rolls to events_2_..., events_3_... past spark.eventLog.rolling.maxFileSize; the
    # fixture is smaller than that, so its lines are split over three files here.
    lines = plain_bytes("nospec-rolling").splitlines(keepends=True)
    app = "app-1"
    directory = tmp_path / f"eventlog_v2_{app}"
    directory.mkdir()
    (directory / f"appstatus_{app}").write_bytes(b"")
    cuts = [0, len(lines) // 3, 2 * len(lines) // 3, len(lines)]
    # Written out of order on purpose; index 10 sorts after 9 by number, not by name. (The
    # indices follow each other: Spark refuses a gap, a lost file, and so does the reader.)
    for index, (a, b) in zip([9, 10, 11], zip(cuts, cuts[1:])):
        (directory / f"events_{index}_{app}.zstd").write_bytes(zstd_frames(b"".join(lines[a:b]), frames=2))
    whole = tmp_path / "whole"
    whole.write_bytes(b"".join(lines))
    assert attempts_of(directory) == attempts_of(whole) == attempts_of(spark_log("nospec-rolling"))


def test_a_rolling_file_cut_off_before_the_last_is_an_error_naming_it(tmp_path):
    lines = plain_bytes("nospec-rolling").splitlines(keepends=True)
    directory = tmp_path / "eventlog_v2_app-1"
    directory.mkdir()
    half = len(lines) // 2
    first = zstd_stream(b"".join(lines[:half]))
    (directory / "events_1_app-1.zstd").write_bytes(first[: len(first) - 20])
    (directory / "events_2_app-1.zstd").write_bytes(zstd_stream(b"".join(lines[half:])))
    with pytest.raises(ValueError, match="events_1_app-1.zstd: the zstd stream ends part way through a frame; "
                                         "only the log's last file may end cut off"):
        sg.replay(directory)


def test_a_single_compressed_file_and_an_in_progress_one_are_read(tmp_path):
    data = plain_bytes("spec-plain")
    (tmp_path / "app-2.zstd").write_bytes(zstd_frames(data, frames=3))
    (tmp_path / "app-2.zstd.inprogress").write_bytes(zstd_frames(data))
    (tmp_path / "noext").write_bytes(zstd_frames(data))  # known by zstd's magic number
    expected = attempts_of(spark_log("spec-plain"))
    for name in ("app-2.zstd", "app-2.zstd.inprogress", "noext"):
        assert attempts_of(tmp_path / name) == expected, name


def test_unknown_event_kinds_are_skipped(tmp_path):
    lines = plain_bytes("nospec-plain").splitlines(keepends=True)
    odd = [json.dumps({"Event": "org.example.SomethingNew", "Task Info": 7}).encode() + b"\n",
           json.dumps({"Event": "SparkListenerSomethingElse"}).encode() + b"\n"]
    mixed = [line for pair in zip(lines, odd * len(lines)) for line in pair]
    (tmp_path / "log").write_bytes(b"".join(mixed))
    assert attempts_of(tmp_path / "log") == attempts_of(spark_log("nospec-plain"))


# --- imperfect logs -------------------------------------------------------------------------------


def test_a_log_cut_part_way_through_a_line_is_replayed_as_far_as_it_is_complete(tmp_path):
    data = plain_bytes("nospec-plain")
    lines = data.splitlines(keepends=True)
    # Cut in the middle of the line after the 10th task end.
    ends = [i for i, line in enumerate(lines) if b'"SparkListenerTaskEnd"' in line]
    cut = ends[9] + 1
    (tmp_path / "log").write_bytes(b"".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    with pytest.warns(sg.ReplayWarning, match=r"log:\d+: the log ends part way through a line") as caught:
        result = sg.replay(tmp_path / "log", ["spark"])
    assert len(caught) == 1 and len(result.warnings) == 1
    assert result.observed.tasks == 10
    assert sum(len(w) for w in result.model.work) == 10


def zstd_stream(data: bytes, block: int = 4096) -> bytes:
    """``data`` as one zstd frame written as Spark's stream writes it: a block flushed every
    ``block`` bytes (a running application's log can be read up to its last flush)."""
    c = zstandard.ZstdCompressor().compressobj()
    out = [c.compress(data[i:i + block]) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
           for i in range(0, len(data), block)]
    return b"".join(out) + c.flush()


def test_a_compressed_log_cut_part_way_through_a_frame_is_replayed_as_far_as_it_is_complete(tmp_path):
    data = zstd_stream(plain_bytes("nospec-plain"))
    (tmp_path / "app.zstd.inprogress").write_bytes(data[: int(len(data) * 0.8)])
    with pytest.warns(sg.ReplayWarning, match="zstd stream ends part way through a frame"):
        result = sg.replay(tmp_path / "app.zstd.inprogress", ["spark"])
    assert 0 < result.observed.tasks < sum(JOB["stages"].values())


def test_a_compressed_log_cut_before_its_first_block_is_a_value_error(tmp_path):
    data = zstd_frames(plain_bytes("nospec-plain"), frames=1)  # one block: nothing before its end
    path = tmp_path / "app.zstd"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ends part way through a frame, before its first line") as info:
        sg.replay(path)
    assert str(path) in str(info.value)


def test_an_attempt_without_an_end_whose_task_completed_was_killed_then(tmp_path):
    rows = [(0, 0, 0, "0", "a", 0, None, None, False),
            (0, 0, 1, "1", "b", 1000, 3000, "Success", True),
            (0, 1, 0, "1", "b", 0, 2000, "Success", False),
            (0, 2, 0, "1", "b", 3000, None, None, False)]
    path = tmp_path / "a"
    path.write_text(spark_events(rows))
    got = {(a.task, a.attempt): (a.end, a.outcome) for a in read_log(path).attempts}
    assert got == {(0, 0): (3.0, "kill"), (0, 1): (3.0, "finish"), (1, 0): (2.0, "finish"), (2, 0): (None, None)}


def test_a_broken_line_before_the_last_is_an_error_naming_the_file_and_line(tmp_path):
    lines = plain_bytes("nospec-plain").splitlines(keepends=True)
    lines[5] = b'{"Event": "SparkListenerTaskStart", \n'
    (tmp_path / "log").write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"log:6: not JSON"):
        sg.replay(tmp_path / "log")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty; not an event log"),
    (b"hello, world\nthis is text\n", "not an event log"),
    (b'{"a": 1}\n{"b": 2}\n', "not an event log: neither Spark's"),
    (b"[1, 2, 3]\n", "not an event log"),
    (bytes(range(256)) * 4, "not an event log"),
    (b'{"schema": "other"}\n', "not a straggler.events log"),
])
def test_a_file_that_is_no_event_log_is_a_value_error_naming_it(tmp_path, content, message):
    path = tmp_path / "mystery.log"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        sg.replay(path)
    assert str(path) in str(info.value)


def test_a_log_without_tasks_is_a_value_error_naming_it(tmp_path):
    lines = plain_bytes("nospec-plain").splitlines(keepends=True)
    first_task = next(i for i, line in enumerate(lines) if b"SparkListenerTaskStart" in line)
    path = tmp_path / "early.log"
    path.write_bytes(b"".join(lines[:first_task]))
    with pytest.raises(ValueError, match="no task attempt in this Spark event log") as info:
        sg.replay(path)
    assert str(path) in str(info.value)


def test_a_zstd_log_without_a_zstd_package_is_an_import_error_naming_it(tmp_path, monkeypatch):
    path = tmp_path / "app.zstd"
    path.write_bytes(zstd_frames(plain_bytes("nospec-plain")))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setitem(sys.modules, "compression", None)
    monkeypatch.setitem(sys.modules, "compression.zstd", None)
    with pytest.raises(ImportError, match=r"compressed with zstd.*pip install 'straggler\[replay\]'") as info:
        sg.replay(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("codec", ["lz4", "snappy", "lzf"])
def test_a_log_in_a_codec_we_cannot_read_is_refused_saying_which(tmp_path, codec):
    path = tmp_path / f"app-1.{codec}"
    path.write_bytes(b"\x00\x01binary")
    with pytest.raises(ValueError, match=f"Spark's {codec} codec.*compression.codec=zstd") as info:
        sg.replay(path)
    assert str(path) in str(info.value)


def test_a_directory_without_event_files_and_a_missing_path_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no events_<n>_<app> files"):
        sg.replay(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        sg.replay(tmp_path / "absent")
    with pytest.raises(TypeError, match="log must be a path"):
        sg.replay(42)


# --- straggler's own log ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [None, "spark", "late"])
def test_a_simulation_s_log_round_trips_through_replay(tmp_path, policy):
    r = sg.simulate(tasks=60, nodes=6, slow_nodes=2, slow_factor=4.0, slots_per_node=2, policy=policy, seed=4)
    path = tmp_path / "sim.jsonl"
    sg.write_events(r.events, path)
    result = sg.replay(path, ["spark"])
    o = result.observed
    assert result.kind == "straggler"
    assert (o.tasks, o.speculative, o.speculative_wins, o.killed) == (r.tasks, r.speculative, r.speculative_wins,
                                                                      r.killed)
    assert o.makespan == pytest.approx(r.makespan)
    assert o.task_p99 == pytest.approx(r.task_p99)
    assert o.wasted_fraction == pytest.approx(r.wasted_fraction)
    assert result.model.slots == (2,) * 6


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tasks=st.integers(4, 60), nodes=st.integers(3, 8), slots=st.integers(1, 3), slow=st.integers(0, 1),
       factor=st.floats(1.5, 8.0), stages=st.integers(1, 3), gap=st.floats(0.0, 5.0))
def test_replaying_a_simulated_run_without_speculation_reproduces_it(tmp_path_factory, tasks, nodes, slots, slow,
                                                                     factor, stages, gap):
    # The reference is the simulator itself: a job of equal tasks per stage, where one node (or
    # none) is `factor` times slower. The model must recover the work and the nodes' slowness up
    # to a common factor, so the replay without speculation is the same run.
    sizes = [[10.0 * (k + 1)] * tasks for k in range(stages)]
    speed = [[factor if n < slow else 1.0 for n in range(nodes)]] * stages
    run = sg.simulation.simulate_stages(sizes, [slots] * nodes, speed, gaps=[0.0] + [gap] * (stages - 1))
    path = tmp_path_factory.mktemp("sim") / "sim.jsonl"
    sg.write_events(run.events, path)
    result = sg.replay(path, [])
    assert result.observed.makespan == pytest.approx(run.makespan)
    assert result.runs["none"].makespan == pytest.approx(run.makespan)
    assert result.fit == pytest.approx(1.0)
    # Slowness is relative to the stage's median: a slow node's over a healthy node's is factor.
    nodes_of = [{e.node for e in run.events if e.stage == str(k)} for k in range(stages)]
    for k in range(stages):
        row = dict(zip(map(int, result.model.executors), result.model.stage_slowness[k]))
        healthy = [row[n] for n in nodes_of[k] if n >= slow]
        assert healthy and all(h == pytest.approx(healthy[0]) for h in healthy)
        if slow and 0 in nodes_of[k]:
            assert row[0] / healthy[0] == pytest.approx(factor)


def test_an_executor_s_log_round_trips_through_replay(tmp_path):
    import time

    def task(i):
        time.sleep(0.02 if i % 5 else 0.06)
        return i

    with sg.SpeculativeExecutor(max_workers=3, policy=None) as ex:
        assert list(ex.map(task, range(30))) == list(range(30))
    path = tmp_path / "job.jsonl"
    ex.write_events(path)
    result = sg.replay(path, ["spark"])
    events = ex.events()
    starts = [e.time for e in events if e.kind == "start"]
    ends = [e.time for e in events if e.kind == "finish"]
    assert result.observed.makespan == pytest.approx(max(ends) - min(starts))
    assert result.observed.tasks == ex.stats().tasks == 30
    assert result.observed.speculative == ex.stats().speculative == 0
    # A thread pool reports every attempt on node 0: its slots are the attempts it ran at once.
    assert result.model.executors == ("0",) and 1 <= result.model.slots[0] <= 3


def test_a_straggler_log_cut_part_way_warns_and_replays_what_is_complete(tmp_path):
    r = sg.simulate(tasks=30, nodes=3, policy=None, seed=1)
    path = tmp_path / "sim.jsonl"
    sg.write_events(r.events, path)
    text = path.read_bytes()
    path.write_bytes(text[: int(len(text) * 0.7)])
    with pytest.warns(sg.ReplayWarning, match="ends part way through a line"):
        result = sg.replay(path, [])
    assert 0 < result.observed.tasks < 30


# --- the rules of the model on small hand-made logs -----------------------------------------------


def spark_events(attempts, cores=None, cpus=None):
    """Spark event-log lines for ``attempts``: (stage, index, attempt, executor, host, start ms,
    end ms, reason, speculative) with reason None for an attempt still running."""
    lines = [{"Event": "SparkListenerLogStart", "Spark Version": "4.3.0"},
             {"Event": "SparkListenerApplicationStart", "App Name": "t", "App ID": "app-9", "Timestamp": 0}]
    for executor, n in (cores or {}).items():
        lines.append({"Event": "SparkListenerExecutorAdded", "Timestamp": 0, "Executor ID": executor,
                      "Executor Info": {"Host": "h", "Total Cores": n}})
    if cpus is not None:
        lines.append({"Event": "SparkListenerResourceProfileAdded", "Resource Profile Id": 0,
                      "Task Resource Requests": {"cpus": {"Resource Name": "cpus", "Amount": cpus}}})
    timeline = []
    for tid, (stage, index, attempt, executor, host, start, end, reason, spec) in enumerate(attempts):
        info = {"Task ID": tid, "Index": index, "Attempt": attempt, "Partition ID": index, "Launch Time": start,
                "Executor ID": executor, "Host": host, "Locality": "PROCESS_LOCAL", "Speculative": spec,
                "Getting Result Time": 0, "Finish Time": 0, "Failed": False, "Killed": False, "Accumulables": []}
        timeline.append((start, 0, {"Event": "SparkListenerTaskStart", "Stage ID": stage, "Stage Attempt ID": 0,
                                    "Task Info": info}))
        if reason is not None:
            done = dict(info, **{"Finish Time": end, "Failed": reason not in ("Success", "TaskKilled"),
                                 "Killed": reason == "TaskKilled"})
            timeline.append((end, 1, {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Stage Attempt ID": 0,
                                      "Task Type": "ResultTask", "Task End Reason": {"Reason": reason},
                                      "Task Info": done}))
    lines += [event for _, _, event in sorted(timeline, key=lambda t: (t[0], t[1]))]
    return "".join(json.dumps(line) + "\n" for line in lines)


attempt_rows = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(0, 2), st.sampled_from(["0", "1", "2", "driver"]),
              st.integers(0, 10_000), st.integers(0, 5_000),
              st.sampled_from(["Success", "TaskKilled", "ExceptionFailure", "ExecutorLostFailure",
                               "TaskCommitDenied", None]),
              st.booleans()),
    min_size=1, max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=attempt_rows, frames=st.integers(1, 4), compressed=st.booleans())
def test_spark_attempts_are_read_back_as_written(tmp_path_factory, rows, frames, compressed):
    attempts = [(stage, index, attempt, executor, f"host-{executor}", start, start + length, reason, spec)
                for stage, index, attempt, executor, start, length, reason, spec in rows]
    text = spark_events(attempts).encode()
    path = tmp_path_factory.mktemp("log") / ("app.zstd" if compressed else "app")
    path.write_bytes(zstd_frames(text, frames) if compressed else text)
    outcome = {"Success": "finish", "TaskKilled": "kill", "TaskCommitDenied": "kill", "ExecutorLostFailure": "lost",
               "ExceptionFailure": "fail", None: None}
    won: dict = {}
    for stage, index, _, _, _, _, end, reason, _ in attempts:
        if reason == "Success":
            won[stage, index] = min(won.get((stage, index), math.inf), end / 1000)
    expected = []
    for stage, index, attempt, executor, host, start, end, reason, spec in attempts:
        if reason is None and (stage, index) in won:  # stopped by the win, its end not logged
            finish, how = max(start / 1000, won[stage, index]), "kill"
        else:
            finish, how = (end / 1000 if reason else None), outcome[reason]
        expected.append(Attempt(str(stage), index, attempt, executor, host, start / 1000, finish, how, spec))
    key = lambda a: (a.start, a.stage, a.task, a.attempt, a.executor)  # noqa: E731
    if not any(reason == "Success" for *_, reason, _ in attempts):
        with pytest.raises(ValueError, match="nothing to replay"):
            read_log(path)
        return
    got = read_log(path)
    assert sorted(got.attempts, key=key) == sorted(expected, key=key)
    assert got.application == "app-9"


def test_slots_come_from_cores_over_task_cpus_else_from_the_attempts_run_at_once(tmp_path):
    rows = [(0, i, 0, str(i % 2), "h", 0, 1000, "Success", False) for i in range(6)]
    path = tmp_path / "a"
    path.write_text(spark_events(rows, cores={"0": 8, "1": 4}, cpus=2))
    model, _ = build_model(read_log(path))
    assert model.slots == (4, 2)
    path.write_text(spark_events(rows))
    model, _ = build_model(read_log(path))
    assert model.slots == (3, 3)  # no cores stated: three attempts ran at once on each


def test_slowness_is_an_executor_s_median_over_its_stage_s_and_work_divides_by_it(tmp_path):
    # Stage 0: executor 0 takes 1 s per task, executor 1 takes 4 s; stage median (5 tasks): 1 s.
    rows = [(0, i, 0, "0", "a", 0, 1000, "Success", False) for i in range(3)]
    rows += [(0, 3 + i, 0, "1", "b", 0, 4000, "Success", False) for i in range(2)]
    path = tmp_path / "a"
    path.write_text(spark_events(rows))
    model, _ = build_model(read_log(path))
    assert model.stage_slowness == ((1.0, 4.0),)
    assert model.work == ((1.0,) * 5,)
    assert model.slowness == (1.0, 4.0)


def test_tasks_that_never_succeeded_are_left_out_with_a_warning(tmp_path):
    rows = [(0, 0, 0, "0", "a", 0, 1000, "Success", False),
            (0, 1, 0, "0", "a", 1000, 2000, "ExceptionFailure", False),
            (0, 1, 1, "0", "a", 2000, 2500, "ExceptionFailure", False),
            (0, 2, 0, "0", "a", 2500, None, None, False)]
    path = tmp_path / "a"
    path.write_text(spark_events(rows))
    with pytest.warns(sg.ReplayWarning, match="2 tasks never succeeded in the log"):
        result = sg.replay(path, [])
    assert result.model.task_ids == ((0,),) and result.observed.tasks == 1


def test_the_first_success_wins_and_later_ones_count_as_wasted(tmp_path):
    rows = [(0, 0, 0, "0", "a", 0, 5000, "Success", False),
            (0, 0, 1, "1", "b", 1000, 3000, "Success", True),
            (0, 1, 0, "1", "b", 0, 2000, "ExceptionFailure", False),
            (0, 1, 1, "1", "b", 2000, 4000, "Success", False)]
    path = tmp_path / "a"
    path.write_text(spark_events(rows))
    result = sg.replay(path, [])
    o = result.observed
    assert (o.speculative, o.speculative_wins, o.failures, o.killed) == (1, 1, 1, 1)
    assert o.makespan == pytest.approx(4.0)
    # Wasted: the late success (5 s) and the failure (2 s) of 11 attempt-seconds.
    assert o.wasted_fraction == pytest.approx(7 / 11)
    # Both winners ran 2 s on executor 1, the stage's median: slowness 1, work 2 s each.
    assert result.model.work == ((2.0, 2.0),) and result.model.stage_slowness == ((1.0, 1.0),)


def test_the_command_line_table_matches_the_library(tmp_path, capsys):
    from straggler.__main__ import main

    assert main(["replay", str(spark_log("nospec-rolling")), "--policy", "spark"]) == 0
    out = capsys.readouterr().out
    result = sg.replay(spark_log("nospec-rolling"), ["spark"])
    assert result.table() in out
    assert f"{result.runs['none'].makespan:.2f} s" in out


if os.environ.get("STRAGGLER_PRINT_REPLAY"):  # pragma: no cover - for the README's example
    print(sg.replay(spark_log("spec-rolling")).table())
    shutil.rmtree  # noqa: B018


# --- the job's own speculation settings --------------------------------------------------------------


def with_properties(name: str, properties: dict, tmp_path) -> Path:
    """Run ``name``'s plain log with an environment event holding ``properties`` (the fixtures
    left Spark's out), where Spark writes it: after the application's start."""
    lines = plain_bytes(name).splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if b'"SparkListenerApplicationStart"' in line) + 1
    event = {"Event": "SparkListenerEnvironmentUpdate", "JVM Information": {}, "Spark Properties": properties,
             "Hadoop Properties": {}, "System Properties": {}, "Classpath Entries": {}}
    path = tmp_path / f"{name}-with-environment"
    path.write_bytes(b"".join(lines[:at]) + json.dumps(event).encode() + b"\n" + b"".join(lines[at:]))
    return path


# What make_spark_logs.py set for its speculative runs.
SCRIPT_CONF = {"spark.speculation": "true", "spark.speculation.multiplier": "1.5", "spark.speculation.quantile": "0.5",
               "spark.speculation.minTaskRuntime": "100ms", "spark.speculation.interval": "100ms",
               "spark.executor.cores": "2", "spark.master": "spark://127.0.0.1:7077"}


def test_a_log_of_a_speculative_run_is_also_replayed_under_its_own_settings(tmp_path):
    path = with_properties("spec-plain", SCRIPT_CONF, tmp_path)
    result = sg.replay(path, ["spark"])
    assert list(result.runs) == ["none", "spark", "spark-as-run"]
    same = sg.SparkPolicy(multiplier=1.5, quantile=0.5, min_runtime=0.1, interval=0.1, slots_per_executor=2)
    expected = sg.replay(path, [same]).runs["spark"]
    assert list(result.runs["spark-as-run"].events) == list(expected.events)
    # Its own rule replayed comes close to what it did.
    assert abs(result.runs["spark-as-run"].makespan / result.observed.makespan - 1) <= 0.25, result.table()


def test_no_run_under_the_job_s_settings_when_it_ran_without_speculation(tmp_path):
    path = with_properties("nospec-plain", dict(SCRIPT_CONF, **{"spark.speculation": "false"}), tmp_path)
    assert list(sg.replay(path, ["spark"]).runs) == ["none", "spark"]
    assert read_log(path).conf["spark.master"] == "spark://127.0.0.1:7077"


def test_speculation_settings_we_do_not_know_are_a_warning_and_no_run(tmp_path):
    path = with_properties("spec-plain", dict(SCRIPT_CONF, **{"spark.speculation.future.knob": "3"}), tmp_path)
    with pytest.warns(sg.ReplayWarning, match="speculation settings cannot be replayed.*future.knob"):
        result = sg.replay(path, ["spark"])
    assert list(result.runs) == ["none", "spark"] and len(result.warnings) == 1
