"""``python -m straggler simulate`` (and the demo's progress option), run in a subprocess as users run it."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
import straggler as sg

SMALL = ["--tasks", "60", "--nodes", "10", "--slow-nodes", "2", "--slow-factor", "4", "--seed", "1"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "straggler", *args], capture_output=True, text=True, timeout=120)


def table(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("policy"))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        name, *cells = line.replace(" %", "%").split()
        rows[name] = cells
    return rows


def test_help_at_every_level_names_the_commands_and_their_options():
    top = run("--help")
    assert top.returncode == 0 and "simulate" in top.stdout and "demo" in top.stdout
    sim = run("simulate", "--help")
    assert sim.returncode == 0
    for option in ("--tasks", "--nodes", "--slow-nodes", "--slow-factor", "--policy", "--seed", "--plot", "--runs"):
        assert option in sim.stdout
    demo = run("demo", "--help")
    assert demo.returncode == 0 and "--progress" in demo.stdout and "--no-progress" in demo.stdout


def test_simulate_prints_each_policy_against_no_speculation_as_the_library_computes_it():
    done = run("simulate", *SMALL, "--policy", "late", "--policy", "spark")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("straggler simulate: 60 tasks (lognormal, median 60 s, sigma 0.5) on 10 nodes")
    rows = table(done.stdout)
    assert list(rows) == ["none", "late", "spark"]
    base = sg.simulate(60, 10, 2, 4.0, seed=1).makespan
    for name in rows:
        r = sg.simulate(60, 10, 2, 4.0, policy=None if name == "none" else name, seed=1)
        makespan, ratio, p99, copies, wins, wasted = rows[name]
        assert ratio == f"{r.makespan / base:.2f}x"
        assert float(makespan) == pytest.approx(r.makespan, abs=0.05)
        assert float(p99) == pytest.approx(r.task_p99, abs=0.05)
        assert (int(copies), int(wins)) == (r.speculative, r.speculative_wins)
        assert float(wasted.rstrip("%")) == pytest.approx(100 * r.wasted_fraction, abs=0.05)
    assert rows["none"][1] == "1.00x"


def test_simulate_without_policy_compares_them_all_and_runs_average_seeds():
    done = run("simulate", *SMALL, "--runs", "2")
    assert done.returncode == 0, done.stderr
    assert "means over seeds 1..2" in done.stdout
    assert list(table(done.stdout)) == ["none", "spark", "spark4", "flink", "smallpond", "late", "mantri"]


def test_input_sizes_tell_the_detector_the_task_sizes():
    done = run("simulate", *SMALL, "--policy", "mantri", "--input-sizes")
    assert done.returncode == 0, done.stderr
    assert "sizes known as input bytes" in done.stdout
    r = sg.simulate(60, 10, 2, 4.0, policy="mantri", seed=1, input_sizes=True)
    assert float(table(done.stdout)["mantri"][0]) == pytest.approx(r.makespan, abs=0.05)
    refused = run("simulate", "--input-sizes", "--sigma", "3")
    assert refused.returncode == 2 and "--sigma" in refused.stderr and "--input-sizes" in refused.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["simulate", "--tasks", "0"], "--tasks"),
        (["simulate", "--nodes", "x"], "--nodes"),
        (["simulate", "--nodes", "4", "--slow-nodes", "5"], "--slow-nodes"),
        (["simulate", "--slow-factor", "0.5"], "--slow-factor"),
        (["simulate", "--policy", "hadoop"], "--policy"),
        (["simulate", "--distribution", "normal"], "--distribution"),
        (["simulate", "--failure-rate", "1"], "--failure-rate"),
        (["simulate", "--seed", "-1"], "--seed"),
        (["simulate", "--plot", "/no/such/folder/t.png"], "--plot"),
        (["simulate", "--bogus"], "--bogus"),
    ],
)
def test_bad_arguments_are_one_line_on_stderr_with_exit_code_2(args, named):
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("straggler simulate: error:") or done.stderr.startswith("straggler: error:")
    assert named in done.stderr


def test_plot_writes_a_png_timeline(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "timeline.png"
    done = run("simulate", *SMALL, "--policy", "late", "--plot", str(path))
    assert done.returncode == 0, done.stderr
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # The IHDR chunk comes first: its width and height, big-endian, after the length and type.
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 800 and height >= 400
    assert len(data) > 20_000  # bars were drawn, not an empty canvas
    assert f"timeline written to {path}" in done.stdout


# --- refused before any simulation runs ------------------------------------------------------------


def refused(capsys, *args: str) -> str:
    """Run the console script in-process on args that must be refused: exit code 2, nothing on
    stdout (so nothing was simulated: the header comes first), one line on stderr."""
    import straggler.__main__ as cli

    with pytest.raises(SystemExit) as exit:
        cli.main(list(args))
    out, err = capsys.readouterr()
    assert exit.value.code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "path",
    ["/proc/t.png", "{tmp}/timeline.xyz", "{tmp}/timeline", "{tmp}", "{tmp}/", ""],
    ids=["proc", "unknown-extension", "no-extension", "a-directory", "a-directory-slash", "empty"],
)
def test_a_plot_path_that_cannot_take_the_timeline_is_refused_before_simulating(capsys, tmp_path, monkeypatch, path):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)  # where "" or "DIR" + ".png" would land
    err = refused(capsys, "simulate", *SMALL, "--policy", "late", "--plot", path.format(tmp=tmp_path))
    assert err.startswith("straggler simulate: error: argument --plot:")
    assert list(tmp_path.iterdir()) == [], "nothing written"
    assert not (tmp_path.parent / f"{tmp_path.name}.png").exists()


def test_a_plot_in_a_read_only_directory_is_refused_before_simulating(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import os

    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    if os.geteuid() == 0:
        # root writes through the mode bits: answer as they would for any other user.
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
            not (mode & os.W_OK) if os.path.realpath(p) == str(folder) else real_access(p, mode, **kw)))
    err = refused(capsys, "simulate", *SMALL, "--policy", "late", "--plot", str(folder / "t.png"))
    assert err.startswith("straggler simulate: error: argument --plot:") and str(folder) in err
    assert list(folder.iterdir()) == []


def test_the_plot_is_written_where_asked_with_the_format_its_extension_names(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "timeline.svg"
    done = run("simulate", *SMALL, "--policy", "late", "--plot", str(path))
    assert done.returncode == 0, done.stderr
    assert path.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeline.svg"]  # no probe file left


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["simulate", "--tasks", "100000000000000000000000"], "--tasks"),
        (["simulate", "--tasks", "1e23"], "--tasks"),
        (["simulate", "--tasks", "3000000000"], "--tasks"),
        (["simulate", "--nodes", "3000000000"], "--nodes"),
        (["simulate", "--slots-per-node", "3000000000"], "--slots-per-node"),
        (["simulate", "--nodes", "100000", "--slots-per-node", "1000"], "--slots-per-node"),
        (["simulate", "--slow-nodes", "3000000000"], "--slow-nodes"),
        (["simulate", "--runs", "3000000000"], "--runs"),
        (["simulate", "--interval", "1e-12"], "--interval"),
        (["demo", "--tasks", "100000000000000000000000"], "--tasks"),
        (["demo", "--tasks", "1e23"], "--tasks"),
        (["demo", "--workers", "3000000000"], "--workers"),
    ],
)
def test_counts_beyond_their_bounds_are_one_line_and_exit_code_2(capsys, args, named):
    err = refused(capsys, *args)
    assert err.startswith(f"straggler {args[0]}: error: argument {named}")


def test_help_states_the_bounds_of_the_counts():
    sim = run("simulate", "--help").stdout
    for bound in ("at most 10,000,000", "at most 1,000,000"):
        assert bound in " ".join(sim.split()), bound
    demo = run("demo", "--help").stdout
    assert "at most 100,000" in " ".join(demo.split())
