"""The ``straggler`` command line.

    python -m straggler demo      # a real job with injected stragglers, without and with speculation
    python -m straggler simulate  # every policy against no speculation, in simulated time

Subcommands live in ``_COMMANDS``; each is a function that adds its arguments to its parser
and one that runs it, so ``simulate`` and others slot in beside ``demo``.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from typing import Any, Callable, Optional, Sequence

import straggler as sg

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported on one line (and exit code 2, as argparse does)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _number(low: float, high: float = float("inf"), *, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > low if low_open else value >= low) or not value <= high:
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"expected a number in {bounds}, got {text!r}")
        return value

    return parse


# --- demo ---------------------------------------------------------------------------------------

# The demo's policies: the peers' rules with thresholds scaled down to a job of 50 ms tasks.
_DEMO_POLICIES: dict[str, Callable[[], Any]] = {
    "spark": lambda: sg.SparkPolicy(min_runtime=0.05, interval=0.02),
    "flink": lambda: sg.FlinkPolicy(baseline_lower_bound=0.05, block_slow_node_duration=1.0, interval=0.02),
    "smallpond": lambda: sg.SmallpondPolicy(min_samples=20, probe_timeout=0.1, interval=0.02),
    "late": lambda: sg.LatePolicy(min_runtime=0.05, speculative_cap=0.25, interval=0.02),
}


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=_positive_int, default=200, help="tasks in the job (default 200)")
    parser.add_argument("--workers", type=_positive_int, default=8, help="worker threads (default 8)")
    parser.add_argument("--task-time", type=_number(0.0, 10.0, low_open=True), default=0.05,
                        help="seconds a healthy attempt takes (default 0.05)")
    parser.add_argument("--slow-fraction", type=_number(0.0, 1.0), default=0.03,
                        help="share of first attempts that straggle (default 0.03)")
    parser.add_argument("--slow-factor", type=_number(1.0, 1000.0), default=25.0,
                        help="how much longer a straggler takes, on average; each draws from "
                             "0.8x to 1.2x of it (default 25)")
    parser.add_argument("--policy", choices=sorted(_DEMO_POLICIES), default="spark",
                        help="the policy to compare with no speculation (default spark)")
    parser.add_argument("--seed", type=int, default=0, help="which tasks straggle (default 0)")
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
    parser.add_argument("--tasks", type=_positive_int, default=2000, help="tasks in the job (default 2000)")
    parser.add_argument("--nodes", type=_positive_int, default=100, help="nodes in the cluster (default 100)")
    parser.add_argument("--slots-per-node", type=_positive_int, default=1,
                        help="attempts a node runs at once (default 1)")
    parser.add_argument("--slow-nodes", type=_count, default=10,
                        help="how many nodes (chosen at random) are slow (default 10)")
    parser.add_argument("--slow-factor", type=_number(1.0, 1e6), default=5.0,
                        help="how many times longer an attempt takes on a slow node (default 5)")
    parser.add_argument("--policy", action="append", choices=_SIM_POLICIES, metavar="P",
                        help=f"a policy to compare with no speculation, with its peer system's defaults: "
                             f"{', '.join(_SIM_POLICIES)}; repeat for several (default: all)")
    parser.add_argument("--task-time", type=_number(0.0, 1e9, low_open=True), default=60.0,
                        help="median task size in seconds on a healthy node (default 60; the policies' "
                             "thresholds are in real seconds, e.g. Flink's 60 s lower bound)")
    parser.add_argument("--distribution", choices=("lognormal", "pareto"), default="lognormal",
                        help="task sizes: lognormal (log-spread --sigma) or pareto (tail index --shape); "
                             "default lognormal")
    parser.add_argument("--sigma", type=_number(0.0, 10.0), default=0.5,
                        help="lognormal log-spread of task sizes (default 0.5)")
    parser.add_argument("--shape", type=_number(1.0, 1e6, low_open=True), default=2.0,
                        help="Pareto tail index of task sizes, > 1 (default 2)")
    parser.add_argument("--failure-rate", type=_number(0.0, 0.99), default=0.0,
                        help="chance that an attempt fails part way (default 0)")
    parser.add_argument("--interval", type=_number(0.0, 1e6, low_open=True), default=None,
                        help="seconds between checks (default: the policy's own, at least 1)")
    parser.add_argument("--seed", type=_count, default=0, help="random seed (default 0)")
    parser.add_argument("--runs", type=_positive_int, default=1,
                        help="run seeds seed .. seed+runs-1 and report the means (default 1)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write a timeline PNG of no speculation and the first --policy (late when "
                             "none is given), for the first seed (needs matplotlib: pip install "
                             "'straggler[plot]')")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _simulate(args: argparse.Namespace) -> int:
    if args.slow_nodes > args.nodes:
        _fail("simulate", f"argument --slow-nodes: {args.slow_nodes} is more than --nodes {args.nodes}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _fail("simulate", "argument --plot needs matplotlib: pip install 'straggler[plot]'")
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            _fail("simulate", f"argument --plot: no such directory: {folder!r}")
    policies = list(dict.fromkeys(args.policy or _SIM_POLICIES))
    settings = dict(
        tasks=args.tasks, nodes=args.nodes, slow_nodes=args.slow_nodes, slow_factor=args.slow_factor,
        distribution=args.distribution, failure_rate=args.failure_rate, slots_per_node=args.slots_per_node,
        task_time=args.task_time, sigma=args.sigma, shape=args.shape, interval=args.interval,
    )
    spread = f"sigma {args.sigma:g}" if args.distribution == "lognormal" else f"shape {args.shape:g}"
    seeds = list(range(args.seed, args.seed + args.runs))
    print(
        f"straggler simulate: {args.tasks} tasks ({args.distribution}, median {args.task_time:g} s, {spread}) "
        f"on {args.nodes} nodes x {args.slots_per_node} slots; {args.slow_nodes} nodes {args.slow_factor:g}x slower; "
        f"failure rate {args.failure_rate:g}; "
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
        sg.plot_timeline({"no speculation": runs["none"][0], shown: runs[shown][0]}, args.plot,
                         title=f"straggler simulate: no speculation vs {shown} (seed {seeds[0]})")
        print(f"\ntimeline written to {args.plot}")
    return 0


def _fail(command: str, message: str) -> None:
    """A bad argument found after parsing: one line on stderr, exit code 2 (as argparse)."""
    sys.stderr.write(f"straggler {command}: error: {message}\n")
    raise SystemExit(2)


# --- the parser -------------------------------------------------------------------------------

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("run a real job with injected stragglers, without and with speculation", _add_demo, _demo),
    "simulate": (("simulate a job on a cluster with slow nodes, in virtual time: every policy against no "
                  "speculation"), _add_simulate, _simulate),
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
    return _COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
