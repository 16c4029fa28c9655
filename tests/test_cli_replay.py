"""``python -m straggler replay LOG``, run in a subprocess as users run it (and in-process where a
module has to be hidden)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
import straggler as sg
import zstandard
from straggler.__main__ import main

SPARK = Path(__file__).parent / "data" / "spark"


def spark_log(name: str) -> Path:
    (entry,) = [p for p in (SPARK / name).iterdir() if not p.name.startswith(".")]
    return entry


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "straggler", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def rows(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    table = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        name, *cells = line.replace(" %", "%").split()
        table[name] = cells
    return table


def test_replay_of_spark_4_s_default_log_prints_the_observed_run_then_every_policy():
    path = spark_log("nospec-rolling")
    done = run("replay", path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    table = rows(done.stdout)
    assert list(table) == ["observed", "none", "spark", "spark4", "flink", "smallpond", "late", "mantri"]
    result = sg.replay(path)
    for name, r in [("observed", result.observed), *result.runs.items()]:
        makespan, _, p99, copies, wins, wasted = table[name]
        assert float(makespan) == pytest.approx(r.makespan, abs=0.006)
        assert float(p99) == pytest.approx(r.task_p99, abs=0.006)
        assert (int(copies), int(wins)) == (r.speculative, r.speculative_wins)
        assert float(wasted.rstrip("%")) == pytest.approx(100 * r.wasted_fraction, abs=0.06)
    assert "Spark event log of app-" in done.stdout and "3 stages, 24 tasks, 2 executors (4 slots)" in done.stdout
    assert "127.0.0.3" in done.stdout and "127.0.0.2" in done.stdout
    assert "model check: the replay without speculation takes" in done.stdout


def test_policies_can_be_chosen_and_a_plot_is_written(tmp_path):
    out = tmp_path / "replay.png"
    done = run("replay", spark_log("spec-plain"), "--policy", "spark4", "--policy", "mantri", "--plot", out)
    assert done.returncode == 0, done.stderr
    assert list(rows(done.stdout)) == ["observed", "none", "spark4", "mantri"]
    assert "the observed run speculated" in done.stdout
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 400 and height > 300
    assert f"timeline written to {out}" in done.stdout


def test_a_log_cut_part_way_is_replayed_with_a_one_line_warning(tmp_path):
    data = spark_log("nospec-plain").read_bytes()
    path = tmp_path / "app-cut"
    path.write_bytes(data[: int(len(data) * 0.75)])
    done = run("replay", path, "--policy", "spark")
    assert done.returncode == 0, done.stderr
    warning = done.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith("straggler replay: warning: ")
    assert "ends part way through a line" in warning[0] and str(path) in warning[0]
    assert "observed" in rows(done.stdout)


@pytest.mark.parametrize(("content", "message"), [
    (b"just some text\n", "not an event log"),
    (b"", "empty; not an event log"),
    (b'{"Event": "SparkListenerLogStart", "Spark Version": "4.3.0"}\n', "no task attempt in this Spark event log"),
    (b"\x28\xb5\x2f\xfd garbage", "not a zstd stream"),
])
def test_what_cannot_be_replayed_is_one_line_and_exit_code_2(tmp_path, content, message):
    path = tmp_path / "bad.log"
    path.write_bytes(content)
    done = run("replay", path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("straggler replay: error: ") and message in lines[0] and str(path) in lines[0]


def test_a_missing_log_and_a_directory_that_is_none_are_one_line_and_exit_code_2(tmp_path):
    for path, message in ((tmp_path / "absent", "no such file or directory"),
                          (tmp_path, "no events_<n>_<app> files")):
        done = run("replay", path)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert message in done.stderr and str(path) in done.stderr


def test_a_zstd_log_without_the_codec_installed_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "app.zstd"
    path.write_bytes(zstandard.ZstdCompressor().compress(spark_log("nospec-plain").read_bytes()))
    for module in ("zstandard", "compression", "compression.zstd"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "compressed with zstd" in err[0] and "pip install 'straggler[replay]'" in err[0]
    assert str(path) in err[0]


@pytest.mark.parametrize(("args", "named"), [
    (["--policy", "nope"], "--policy"),
    (["--interval", "0"], "--interval"),
    (["--interval", "abc"], "--interval"),
    (["--plot", "out.unknown"], "--plot"),
])
def test_bad_options_are_one_line_and_exit_code_2(args, named):
    done = run("replay", spark_log("nospec-plain"), *args)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr


def test_help_names_the_command_and_its_options():
    top = run("--help")
    assert top.returncode == 0 and "replay" in top.stdout
    sub = run("replay", "--help")
    assert sub.returncode == 0
    for option in ("LOG", "--policy", "--plot", "--interval", "eventlog_v2_"):
        assert option in sub.stdout


def test_straggler_s_own_log_is_replayed_and_many_executors_are_summed_up_slowest_first(tmp_path):
    r = sg.simulate(tasks=200, nodes=20, slow_nodes=2, slow_factor=6.0, policy=None, seed=3)
    path = tmp_path / "sim.jsonl"
    sg.write_events(r.events, path)
    done = run("replay", path, "--policy", "late")
    assert done.returncode == 0, done.stderr
    assert "straggler log: 1 stage, 200 tasks, 20 executors (20 slots)" in done.stdout
    lines = done.stdout.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("executor: ")))
    listed = [line.split(":")[0].strip() for line in lines[first + 1:first + 13]]
    assert sorted(listed[:2]) == sorted(str(n) for n in r.slow_nodes)
    assert lines[first + 13].strip() == "... and 8 faster executors"
    table = rows(done.stdout)
    # The model of a simulated run replays it as it ran.
    assert table["observed"][0] == table["none"][0] == f"{r.makespan:.2f}"
