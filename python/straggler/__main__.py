"""The ``straggler`` command line.

    python -m straggler demo      # a real job with injected stragglers, without and with speculation

Subcommands live in ``_COMMANDS``; each is a function that adds its arguments to its parser
and one that runs it, so ``simulate`` and others slot in beside ``demo``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any, Callable, Optional, Sequence

import straggler as sg

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported on one line (and exit code 2, as argparse does)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
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
        results = list(ex.map(task, range(args.tasks)))
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


# --- the parser -------------------------------------------------------------------------------

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "demo": ("run a real job with injected stragglers, without and with speculation", _add_demo, _demo),
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
