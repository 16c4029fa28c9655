"""The ``straggler`` command line.

    python -m straggler demo      # a real job with injected stragglers, without and with speculation
    python -m straggler simulate  # every policy against no speculation, in simulated time
    python -m straggler replay LOG  # a real job's log (Spark's or ours) replayed under every policy

Subcommands live in ``_COMMANDS``; each is a function that adds its arguments to its parser
and one that runs it, so ``simulate`` and others slot in beside ``demo``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import sys
import tempfile
import time
from typing import Any, Callable, Optional, Sequence

import straggler as sg
from straggler import simulation as _simulation
from straggler._checks import text_integer, text_real
from straggler.simulation import MAX_NODES, MAX_SLOTS, MAX_TASKS, MIN_INTERVAL

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported on one line (and exit code 2, as argparse does)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


# Bounds on the counts (the simulator's own: ``straggler.simulation``), stated in --help.
_DEMO_MAX_TASKS = 100_000  # real tasks of --task-time seconds each
_DEMO_MAX_WORKERS = 1_000  # threads
_MAX_RUNS = 1_000


def _at_most(n: int) -> str:
    return f"at most {n:,}"


# --- demo ---------------------------------------------------------------------------------------

# The demo's policies: the peers' rules with thresholds scaled down to a job of 50 ms tasks.
_DEMO_POLICIES: dict[str, Callable[[], Any]] = {
    "spark": lambda: sg.SparkPolicy(min_runtime=0.05, interval=0.02),
    "flink": lambda: sg.FlinkPolicy(baseline_lower_bound=0.05, block_slow_node_duration=1.0, interval=0.02),
    "smallpond": lambda: sg.SmallpondPolicy(min_samples=20, probe_timeout=0.1, interval=0.02),
    "late": lambda: sg.LatePolicy(min_runtime=0.05, speculative_cap=0.25, interval=0.02),
    "mantri": lambda: sg.MantriPolicy(interval=0.02),
}


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=text_integer(1, _DEMO_MAX_TASKS), default=200,
                        help=f"tasks in the job (default 200, {_at_most(_DEMO_MAX_TASKS)})")
    parser.add_argument("--workers", type=text_integer(1, _DEMO_MAX_WORKERS), default=8,
                        help=f"worker threads (default 8, {_at_most(_DEMO_MAX_WORKERS)})")
    parser.add_argument("--task-time", type=text_real(0.0, 10.0, low_open=True), default=0.05,
                        help="seconds a healthy attempt takes (default 0.05)")
    parser.add_argument("--slow-fraction", type=text_real(0.0, 1.0), default=0.03,
                        help="share of first attempts that straggle (default 0.03)")
    parser.add_argument("--slow-factor", type=text_real(1.0, 1000.0), default=25.0,
                        help="how much longer a straggler takes, on average; each draws from "
                             "0.8x to 1.2x of it (default 25)")
    parser.add_argument("--policy", choices=sorted(_DEMO_POLICIES), default="spark",
                        help="the policy to compare with no speculation (default spark)")
    parser.add_argument("--seed", type=text_integer(), default=0, help="which tasks straggle (default 0)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar per job on stderr (needs tqdm: pip install 'straggler[progress]'; "
                             "default: shown when tqdm is installed and stderr is a terminal)")


def _tqdm_installed() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class _DemoTask:
    """A task of the demo: works ``seconds`` in 5 ms steps, heartbeating; a straggling first
    attempt works ``slow[i]`` seconds instead."""

    def __init__(self, seconds: float, slow: dict[int, float]) -> None:
        self.seconds = seconds
        self.slow = slow

    def __call__(self, i: int) -> int:
        attempt = sg.current_attempt()
        seconds = self.slow.get(i, self.seconds) if attempt is None or attempt.attempt == 0 else self.seconds
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            sg.heartbeat(progress=max(0.0, min(1.0, 1.0 - left / seconds)))
            time.sleep(min(0.005, left))
        return i


def _run_demo_job(args: argparse.Namespace, policy: Any, task: _DemoTask) -> dict[str, float]:
    start = time.monotonic()
    with sg.SpeculativeExecutor(max_workers=args.workers, policy=policy) as ex:
        results = list(ex.map(task, range(args.tasks), progress=args.progress))
    makespan = time.monotonic() - start
    if results != list(range(args.tasks)):  # pragma: no cover - would be a bug of ours
        raise RuntimeError("the demo job returned wrong results")
    # A task's time: from its first attempt's start to its winning attempt's end.
    first_start: dict[int, float] = {}
    task_times = []
    for event in ex.events():
        if event.kind == "start":
            first_start.setdefault(event.task, event.time)
        elif event.kind == "finish":
            task_times.append(event.time - first_start[event.task])
    task_times.sort()
    stats = ex.stats()
    return {
        "makespan (s)": makespan,
        "p99 task time (s)": task_times[min(len(task_times) - 1, int(0.99 * len(task_times)))],
        "copies started": stats.speculative,
        "copies that won": stats.speculative_wins,
        "wasted seconds": stats.wasted_seconds,
    }


def _demo(args: argparse.Namespace) -> int:
    if args.progress is None:
        args.progress = _tqdm_installed() and sys.stderr.isatty()
    elif args.progress and not _tqdm_installed():
        _fail("demo", "--progress needs tqdm: pip install 'straggler[progress]'")
    rng = random.Random(args.seed)
    n_slow = round(args.tasks * args.slow_fraction)
    slow = {
        i: args.task_time * args.slow_factor * rng.uniform(0.8, 1.2)
        for i in rng.sample(range(args.tasks), n_slow)
    }
    task = _DemoTask(args.task_time, slow)
    print(
        f"straggler demo: {args.tasks} tasks of {args.task_time:g} s on {args.workers} threads; "
        f"{n_slow} first attempts ~{args.slow_factor:g}x slower (seed {args.seed})",
        flush=True,
    )
    columns = {"no speculation": _run_demo_job(args, None, task)}
    columns[args.policy] = _run_demo_job(args, _DEMO_POLICIES[args.policy](), task)
    width = max(len(row) for row in next(iter(columns.values())))
    print()
    print(" " * width + "".join(f"{name:>16}" for name in columns))
    for row in next(iter(columns.values())):
        cells = "".join(
            f"{value:>16.2f}" if isinstance(value, float) else f"{value:>16d}"
            for value in (column[row] for column in columns.values())
        )
        print(f"{row:<{width}}{cells}")
    base, spec = (column["makespan (s)"] for column in columns.values())
    print(f"\nmakespan with {args.policy}: {spec / base:.2f}x the baseline's")
    return 0


# --- simulate -----------------------------------------------------------------------------------

_SIM_POLICIES = ("spark", "spark4", "flink", "smallpond", "late", "mantri")


def _add_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=text_integer(1, MAX_TASKS), default=2000,
                        help=f"tasks in the job (default 2000, {_at_most(MAX_TASKS)})")
    parser.add_argument("--nodes", type=text_integer(1, MAX_NODES), default=100,
                        help=f"nodes in the cluster (default 100, {_at_most(MAX_NODES)})")
    parser.add_argument("--slots-per-node", type=text_integer(1, MAX_SLOTS), default=1,
                        help=f"attempts a node runs at once (default 1; nodes x slots {_at_most(MAX_SLOTS)})")
    parser.add_argument("--slow-nodes", type=text_integer(0, MAX_NODES), default=10,
                        help="how many nodes (chosen at random) are slow (default 10)")
    parser.add_argument("--slow-factor", type=text_real(1.0, 1e6), default=5.0,
                        help="how many times longer an attempt takes on a slow node (default 5)")
    parser.add_argument("--policy", action="append", choices=_SIM_POLICIES, metavar="P",
                        help=f"a policy to compare with no speculation, with its peer system's defaults: "
                             f"{', '.join(_SIM_POLICIES)}; repeat for several (default: all)")
    parser.add_argument("--task-time", type=text_real(0.0, 1e9, low_open=True), default=60.0,
                        help="median task size in seconds on a healthy node (default 60; the policies' "
                             "thresholds are in real seconds, e.g. Flink's 60 s lower bound)")
    parser.add_argument("--distribution", choices=("lognormal", "pareto"), default="lognormal",
                        help="task sizes: lognormal (log-spread --sigma) or pareto (tail index --shape); "
                             "default lognormal")
    parser.add_argument("--sigma", type=text_real(0.0, 10.0), default=0.5,
                        help="lognormal log-spread of task sizes (default 0.5)")
    parser.add_argument("--shape", type=text_real(1.0, 1e6, low_open=True), default=2.0,
                        help="Pareto tail index of task sizes, > 1 (default 2)")
    parser.add_argument("--failure-rate", type=text_real(0.0, 0.99), default=0.0,
                        help="chance that an attempt fails part way (default 0)")
    parser.add_argument("--input-sizes", action="store_true",
                        help="tell the Detector each task's size as its input bytes (Flink and Mantri "
                             "then judge time per byte; default: sizes unknown)")
    parser.add_argument("--interval", type=text_real(MIN_INTERVAL, 1e6), default=None,
                        help=f"seconds between checks, from {MIN_INTERVAL:g} (default: the policy's own, at least 1)")
    parser.add_argument("--seed", type=text_integer(0), default=0, help="random seed (default 0)")
    parser.add_argument("--runs", type=text_integer(1, _MAX_RUNS), default=1,
                        help=f"run seeds seed .. seed+runs-1 and report the means (default 1, {_at_most(_MAX_RUNS)})")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write a timeline of no speculation and the first --policy (late when none is "
                             "given), for the first seed, in the format the extension names (.png, .svg, "
                             ".pdf, ...; needs matplotlib: pip install 'straggler[plot]')")


def _check_plot_path(path: str, command: str = "simulate") -> None:
    """Refuse a --plot path the timeline cannot be written to, before any simulation runs (it
    takes a while): one line and exit code 2, as for any bad argument."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        _fail(command, "argument --plot needs matplotlib: pip install 'straggler[plot]'")
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    known = ", ".join(f".{f}" for f in formats)
    if not path:
        _fail(command, f"argument --plot: expected a file name such as timeline.png, got {path!r}")
    if os.path.isdir(path) or path.endswith(os.sep):
        _fail(command, f"argument --plot: {path!r} is a directory; expected a file name in it, such as "
                       f"{os.path.join(path, 'timeline.png')!r}")
    extension = os.path.splitext(path)[1]
    if extension.lstrip(".").lower() not in formats:
        # matplotlib would add ".png" to a name without one (or fail after the run on another).
        found = f"{extension!r}" if extension else "none"
        _fail(command, f"argument --plot: expected a file extension naming an image format ({known}), "
                       f"got {found} in {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        _fail(command, f"argument --plot: no such directory: {folder!r}")
    # os.access answers for the mode bits; creating a file also meets what they do not show
    # (a read-only or special file system such as /proc, root's rights, quotas).
    reason = None if os.access(folder, os.W_OK | os.X_OK) else "permission denied"
    if reason is None:
        try:
            handle, probe = tempfile.mkstemp(dir=folder, prefix=".straggler-plot-")
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or str(exc)
    if reason is None and os.path.exists(path) and not os.access(path, os.W_OK):
        reason = f"{path!r} is not writable"
    if reason is not None:
        _fail(command, f"argument --plot: cannot write in {folder!r}: {reason}")


def _option_names(message: str, names: Sequence[str]) -> str:
    """A library message about ``task_time`` as the command line says it: ``--task-time``."""
    for name in sorted(names, key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){name}\b", "--" + name.replace("_", "-"), message)
    return message


def _simulate(args: argparse.Namespace) -> int:
    if args.slow_nodes > args.nodes:
        _fail("simulate", f"argument --slow-nodes: {args.slow_nodes} is more than --nodes {args.nodes}")
    if args.plot is not None:
        _check_plot_path(args.plot)
    policies = list(dict.fromkeys(args.policy or _SIM_POLICIES))
    settings = dict(
        tasks=args.tasks, nodes=args.nodes, slow_nodes=args.slow_nodes, slow_factor=args.slow_factor,
        distribution=args.distribution, failure_rate=args.failure_rate, slots_per_node=args.slots_per_node,
        task_time=args.task_time, sigma=args.sigma, shape=args.shape, interval=args.interval,
        input_sizes=args.input_sizes,
    )
    # The settings together (nodes x slots, the longest attempt), as simulate checks them.
    try:
        _simulation._arguments(policy=None, seed=args.seed, max_failures=4, **settings)
    except (TypeError, ValueError) as exc:
        message = _option_names(str(exc), list(settings))
        _fail("simulate", f"argument {message.split(' ', 1)[0]}: {message.split(' ', 1)[1]}")
    spread = f"sigma {args.sigma:g}" if args.distribution == "lognormal" else f"shape {args.shape:g}"
    seeds = list(range(args.seed, args.seed + args.runs))
    print(
        f"straggler simulate: {args.tasks} tasks ({args.distribution}, median {args.task_time:g} s, {spread}) "
        f"on {args.nodes} nodes x {args.slots_per_node} slots; {args.slow_nodes} nodes {args.slow_factor:g}x slower; "
        f"failure rate {args.failure_rate:g}; "
        + ("sizes known as input bytes; " if args.input_sizes else "")
        + (f"seed {args.seed}" if args.runs == 1 else f"means over seeds {seeds[0]}..{seeds[-1]}"),
        flush=True,
    )
    runs: dict[str, list[Any]] = {}
    for name in ["none", *policies]:
        runs[name] = [sg.simulate(policy=None if name == "none" else name, seed=seed, **settings) for seed in seeds]

    def mean(name: str, field: str) -> float:
        return math.fsum(getattr(r, field) for r in runs[name]) / len(runs[name])

    base = mean("none", "makespan")
    header = ("policy", "makespan (s)", "vs none", "p99 task (s)", "copies", "wins", "wasted")
    rows = []
    for name in runs:
        makespan = mean(name, "makespan")
        count = "{:.0f}" if args.runs == 1 else "{:.1f}"
        rows.append((
            name, f"{makespan:.1f}", f"{makespan / base:.2f}x" if base > 0 else "-", f"{mean(name, 'task_p99'):.1f}",
            count.format(mean(name, "speculative")), count.format(mean(name, "speculative_wins")),
            f"{100 * mean(name, 'wasted_fraction'):.1f} %",
        ))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    if args.plot is not None:
        shown = policies[0] if args.policy else "late"
        if shown not in runs:  # pragma: no cover - policies default to all of them
            runs[shown] = [sg.simulate(policy=shown, seed=seeds[0], **settings)]
        try:
            sg.plot_timeline({"no speculation": runs["none"][0], shown: runs[shown][0]}, args.plot,
                             title=f"straggler simulate: no speculation vs {shown} (seed {seeds[0]})")
        except OSError as exc:  # checked before the run; the disk may still fill up
            _fail("simulate", f"argument --plot: cannot write {args.plot!r}: {exc.strerror or exc}")
        print(f"\ntimeline written to {args.plot}")
    return 0


# --- replay -------------------------------------------------------------------------------------


def _add_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG",
                        help="a Spark event log: a file of JSON lines (plain or .zstd) or Spark 4's rolling "
                             "eventlog_v2_* directory; or a log written by straggler's write_events")
    parser.add_argument("--policy", action="append", choices=_SIM_POLICIES, metavar="P",
                        help=f"a policy to replay the job under, with its peer system's defaults: "
                             f"{', '.join(_SIM_POLICIES)}; repeat for several (default: all)")
    parser.add_argument("--interval", type=text_real(MIN_INTERVAL, 1e6), default=None,
                        help=f"seconds between a policy's checks, from {MIN_INTERVAL:g} (default: each policy's own)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write a timeline of the observed run, the replay without speculation and the first "
                             "--policy (spark when none is given), in the format the extension names (.png, .svg, "
                             ".pdf, ...; needs matplotlib: pip install 'straggler[plot]')")


def _replay(args: argparse.Namespace) -> int:
    import warnings

    from straggler._replay import ReplayWarning, replay

    if args.plot is not None:
        _check_plot_path(args.plot, "replay")
    policies = list(dict.fromkeys(args.policy or _SIM_POLICIES))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ReplayWarning)
        try:
            result = replay(args.log, policies, interval=args.interval)
        except (ValueError, ImportError, OSError) as exc:
            _fail("replay", _one_line(exc))
    for warning in caught:
        if issubclass(warning.category, ReplayWarning):
            sys.stderr.write(f"straggler replay: warning: {_one_line(warning.message)}\n")
    model = result.model
    kind = "Spark event log" if result.kind == "spark" else "straggler log"
    app = f" of {result.application}" if result.application else ""
    tasks = sum(len(w) for w in model.work)
    _say(f"straggler replay: {result.path}: {kind}{app}: {_count(len(model.stages), 'stage')}, "
          f"{_count(tasks, 'task')}, {_count(len(model.executors), 'executor')} "
          f"({_count(sum(model.slots), 'slot')})")
    _say(f"executor: slots, slowness in stage {', '.join(model.stages)} (its median task time over the stage's)")
    # The slowest first when there are many; the rest summed up in one line.
    order = sorted(range(len(model.executors)), key=lambda n: -max(row[n] for row in model.stage_slowness))
    listed = range(len(model.executors)) if len(order) <= _REPLAY_EXECUTORS_SHOWN else order[:_REPLAY_EXECUTORS_SHOWN]
    for n in listed:
        e, h, k = model.executors[n], model.hosts[n], model.slots[n]
        slowness = ", ".join(f"{row[n]:.2f}x" for row in model.stage_slowness)
        _say(f"  {e}{f' ({h})' if h else ''}: {_count(k, 'slot')}, {slowness}")
    if len(order) > _REPLAY_EXECUTORS_SHOWN:
        _say(f"  ... and {len(order) - _REPLAY_EXECUTORS_SHOWN} faster executors")
    _say()
    _say(result.table())
    observed, none = result.observed, result.runs["none"]
    off = 100 * (none.makespan / observed.makespan - 1) if observed.makespan > 0 else math.nan
    _say()
    note = ("" if observed.speculative == 0 else
            "; the observed run speculated, so compare it with its policy's row rather than with none")
    _say(f"model check: the replay without speculation takes {none.makespan:.2f} s, {off:+.1f} % against the "
          f"observed {observed.makespan:.2f} s{note}")
    if args.plot is not None:
        shown = policies[0] if args.policy else "spark"
        panels = {"observed": observed, "replay: no speculation": none, f"replay: {shown}": result.runs[shown]}
        try:
            sg.plot_timeline(panels, args.plot, title=f"straggler replay: {os.path.basename(result.path)}")
        except OSError as exc:
            _fail("replay", f"argument --plot: cannot write {args.plot!r}: {exc.strerror or exc}")
        _say(f"\ntimeline written to {args.plot}")
    return 0


_REPLAY_EXECUTORS_SHOWN = 12


def _say(text: str = "") -> None:
    """``print`` for what a log names (an application, executors, stages): a lone surrogate
    (JSON may escape one) is written as its escape instead of failing the encoding."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding, getattr(sys.stdout, "errors", None) or "strict")
    except UnicodeEncodeError:
        text = text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:  # pragma: no cover - an encoding or error handler Python does not know
        pass
    print(text)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _fail(command: str, message: str) -> None:
    """A bad argument found after parsing: one line on stderr, exit code 2 (as argparse)."""
    sys.stderr.write(f"straggler {command}: error: {message}\n")
    raise SystemExit(2)


# --- the parser -------------------------------------------------------------------------------

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("run a real job with injected stragglers, without and with speculation", _add_demo, _demo),
    "simulate": (("simulate a job on a cluster with slow nodes, in virtual time: every policy against no "
                  "speculation"), _add_simulate, _simulate),
    "replay": ("replay a real job's log (Spark's event log, or straggler's) under no speculation and every "
               "policy", _add_replay, _replay),
}


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="straggler", description=sg.__doc__.splitlines()[0] if sg.__doc__ else None)
    parser.add_argument("--version", action="version", version=f"straggler {sg.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, (summary, add_arguments, _) in _COMMANDS.items():
        add_arguments(commands.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script: ``straggler <command> [options]``; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code = _COMMANDS[args.command][2](args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader of our output went away (``| head``): stop quietly, as a pipeline expects,
        # and keep the interpreter's own flush at exit from failing again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # pragma: no cover - no file behind stdout
            pass
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
