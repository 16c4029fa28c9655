"""The command line, run as users run it: ``python -m straggler ...`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest
import straggler.__main__ as cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "straggler", *args], capture_output=True, text=True, timeout=120)


def test_demo_compares_no_speculation_with_spark_and_exits_0():
    done = run("demo", "--tasks", "40", "--workers", "4", "--task-time", "0.02",
               "--slow-fraction", "0.05", "--slow-factor", "20")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("straggler demo: 40 tasks of 0.02 s on 4 threads; 2 first attempts")
    header = next(line for line in lines if "no speculation" in line)
    assert header.split() == ["no", "speculation", "spark"]
    rows = {line[:20].strip(): line[20:].split() for line in lines if line.startswith(
        ("makespan (s)", "p99 task time", "copies", "wasted"))}
    assert set(rows) == {"makespan (s)", "p99 task time (s)", "copies started", "copies that won", "wasted seconds"}
    assert rows["copies started"][0] == "0" and int(rows["copies started"][1]) >= 1
    assert done.stderr == ""


def test_help_lists_the_demo_command():
    done = run("--help")
    assert done.returncode == 0 and "demo" in done.stdout
    done = run("demo", "--help")
    assert done.returncode == 0 and "--slow-factor" in done.stdout


def test_bad_arguments_get_one_line_on_stderr_and_exit_code_2():
    for args in (["demo", "--tasks", "0"], ["demo", "--slow-fraction", "2"], ["demo", "--policy", "hadoop"],
                 ["nonsense"], []):
        done = run(*args)
        assert done.returncode == 2, args
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, (args, done.stderr)
        assert done.stderr.startswith("straggler") and "error:" in done.stderr


def test_main_is_the_console_scripts_entry_point(capsys):
    # pyproject.toml: straggler = "straggler.__main__:main"
    with pytest.raises(SystemExit) as exit:
        cli.main(["demo", "--workers", "x"])
    assert exit.value.code == 2
    assert "--workers" in capsys.readouterr().err
