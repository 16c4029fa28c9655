"""``replay``: what every policy would have done to a job that really ran, read from its log.

A Spark event log (a plain or compressed file, or Spark 4's rolling ``eventlog_v2_*``
directory) or straggler's own JSON-lines log is read into its task attempts
(``straggler._eventlog``), turned into a model of the job, and the model is run in the simulator
(``simulate_stages``) without speculation and under each policy.

The model
---------
- Stages: the log's stages (a Spark task set; a straggler stage), in the order their first
  attempt started, run one after another, each waiting for the one before (a shuffle's
  barrier) plus the idle time the log shows between them (the driver's own work).
- Executors are the simulator's nodes: every executor that ran an attempt. Its slots: its cores
  (``SparkListenerExecutorAdded``) over the CPUs a task takes, or, where the log does not say
  (straggler's logs), the most attempts it ran at once. (Not that count in Spark's logs: a
  task's end is stamped when the driver has its result, after its slot took the next task.)
- Each executor's slowness: the median, over its successful attempts, of the attempt's time
  over the median time of its stage's tasks (so one figure pools every stage). An executor
  without a successful attempt counts as healthy (1).
- Each task's work: the time of its successful attempt (the first to succeed, when several
  did) over its executor's slowness. An attempt of that task on executor e then takes work x
  slowness of e, in the replay as in the model.

What it leaves out: data locality and the cost of moving data (a copy runs as fast as on the
executor's own data), failures (failed attempts' time shows in the observed row only),
executors that come and go (all are there from the start), stages that ran side by side (run
one after another), and tasks that never succeeded (failed for good, or still running where
the log ends; a warning says how many).
"""

from __future__ import annotations

import math
import os
import statistics
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from straggler._checks import real
from straggler._eventlog import Attempt, JobLog, read_log
from straggler.policies import SparkPolicy
from straggler.simulation import (
    MIN_INTERVAL,
    POLICY_NAMES,
    EventLog,
    SimulationResult,
    resolve_policy,
    simulate_stages,
)

__all__ = ["ReplayModel", "ReplayResult", "ReplayWarning", "replay", "build_model"]

PathArg = Union[str, "os.PathLike[str]"]

# Slowness is kept positive: an executor whose attempts took no time at all is not infinitely fast.
_FASTEST = 1e-6
# An executor this many times slower than its stages' medians is shaded as slow in a plot.
_SLOW = 1.5


# The run under Spark's rule with the job's own spark.speculation.* settings, when it had them on.
AS_RUN = "spark-as-run"


class ReplayWarning(UserWarning):
    """The log was read only in part (cut off part way through a line or a compressed frame)."""


@dataclass(frozen=True)
class ReplayModel:
    """The job as ``replay`` runs it: ``work[k][i]``, the seconds task i of stage ``stages[k]``
    takes on an executor of slowness 1; per executor (``executors``, the simulator's nodes in
    this order): ``slots``, ``slowness``, ``hosts``; ``gaps[k]``: idle seconds before stage k
    starts (after stage k-1's last task, or the job's start); ``task_ids[k][i]``: the task's id
    in the log (Spark's partition index)."""

    stages: tuple[str, ...]
    work: tuple[tuple[float, ...], ...]
    task_ids: tuple[tuple[int, ...], ...]
    executors: tuple[str, ...]
    hosts: tuple[Optional[str], ...]
    slots: tuple[int, ...]
    slowness: tuple[float, ...]
    stage_slowness: tuple[tuple[float, ...], ...]
    gaps: tuple[float, ...]


@dataclass(frozen=True)
class ReplayResult:
    """What ``replay`` found. ``observed``: the job as the log tells it (its attempts as
    ``events``, on the simulator's nodes); ``runs``: the replay without speculation ("none")
    and under each policy, by name (and "spark-as-run": Spark's rule with the job's own
    settings, when its log says it ran with ``spark.speculation`` on); ``fit``: the "none"
    replay's makespan over the observed one (the model's check on a run without speculation);
    ``warnings``: what was wrong with the log."""

    path: str
    kind: str
    application: Optional[str]
    model: ReplayModel
    observed: SimulationResult
    runs: dict[str, SimulationResult]
    warnings: tuple[str, ...]

    @property
    def fit(self) -> float:
        observed = self.observed.makespan
        return self.runs["none"].makespan / observed if observed > 0 else math.nan

    def table(self) -> str:
        """The table the command line prints: one row for the observed run, then one per replay."""
        base = self.runs["none"].makespan
        header = ("run", "makespan (s)", "vs none", "p99 task (s)", "copies", "wins", "wasted")
        rows = []
        for name, r in [("observed", self.observed), *self.runs.items()]:
            rows.append((
                name, f"{r.makespan:.2f}", f"{r.makespan / base:.2f}x" if base > 0 else "-", f"{r.task_p99:.2f}",
                str(r.speculative), str(r.speculative_wins), f"{100 * r.wasted_fraction:.1f} %",
            ))
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        return "\n".join(
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in [header, *rows]
        )


def replay(log: PathArg, policies: Optional[Sequence[Any]] = None, *,
           interval: Optional[float] = None) -> ReplayResult:
    """Replay the job of ``log`` under no speculation and under each of ``policies`` (names such
    as "spark", "flink", or policy objects; default: every policy ``simulate`` knows by name,
    with its peer system's defaults). A Spark log whose properties say the job ran with
    ``spark.speculation`` on adds the run "spark-as-run": Spark's rule with the job's own
    ``spark.speculation.*`` settings. See the module's docstring for the model.

    ``log``: a Spark event log (a JSON-lines file, plain or zstd-compressed, or a rolling
    ``eventlog_v2_*`` directory) or a log written by ``write_events``. ``interval``: seconds
    between the policy's checks (default: each policy's own). A log cut off part way is
    replayed as far as it is complete, with a ``ReplayWarning``; a file that is no event log or
    holds no finished task is a ``ValueError``, a compressed log whose codec is not installed an
    ``ImportError``, both naming the file.
    """
    if isinstance(policies, (str, bytes)) or policies is not None and not hasattr(policies, "__iter__"):
        raise TypeError(f"policies must be a sequence of policy names or objects, got {policies!r}")
    names = list(POLICY_NAMES) if policies is None else list(policies)
    if interval is not None:
        interval = real("interval", interval, low=MIN_INTERVAL)
    resolved = [resolve_policy(p) for p in names]
    if any(obj is None for _, obj in resolved):
        raise ValueError(f"policies: the replay without speculation is always run; leave None out, got {names!r}")
    job = read_log(log)
    for message in job.warnings:
        warnings.warn(message, ReplayWarning, stacklevel=2)
    model, observed = build_model(job)
    runs = {"none": _run(model, None, interval, job.path)}
    labelled = [(given if isinstance(given, str) else name, policy) for (name, policy), given in zip(resolved, names)]
    as_run = _logged_spark_policy(job)
    if as_run is not None:
        labelled.append((AS_RUN, as_run))
    for label, policy in labelled:
        while label in runs:
            label += "'"
        runs[label] = _run(model, policy, interval, job.path)
    return ReplayResult(job.path, job.kind, job.application, model, observed, runs, tuple(job.warnings))


def _logged_spark_policy(job: JobLog) -> Any:
    """Spark's rule with the settings the job ran with, when its log says speculation was on;
    settings this straggler does not know are a warning (and no such run)."""
    if job.conf.get("spark.speculation", "false").strip().lower() != "true":
        return None
    keys = {k: v for k, v in job.conf.items()
            if k.startswith("spark.speculation") or k in ("spark.executor.cores", "spark.task.cpus")}
    try:
        return SparkPolicy.from_conf(keys)
    except (TypeError, ValueError) as exc:
        message = f"{job.path}: the job's speculation settings cannot be replayed ({exc}); no {AS_RUN!r} run"
        job.warnings.append(message)
        warnings.warn(message, ReplayWarning, stacklevel=3)
        return None


def _run(model: ReplayModel, policy: Any, interval: Optional[float], path: str) -> SimulationResult:
    slow = tuple(n for n, s in enumerate(model.slowness) if s >= _SLOW)
    try:
        return simulate_stages([list(w) for w in model.work], list(model.slots),
                               [list(s) for s in model.stage_slowness], policy, gaps=list(model.gaps),
                               names=list(model.stages), slow_nodes=slow, interval=interval)
    except ValueError as exc:
        # The arguments are checked before; what is left comes from the log (times, cores or
        # names the simulator cannot run): say which log, as for any other bad log.
        raise ValueError(f"{path}: the log's job cannot be simulated: {exc}") from None


# --- the model ----------------------------------------------------------------------------------


def _end(attempt: Attempt) -> float:
    """The end of an attempt the model uses: only attempts that ended are kept."""
    end = attempt.end
    assert end is not None
    return end


def _executor_order(name: str) -> tuple[int, int, str]:
    # Numbers in their order ("2" before "10"), then the other names; the name itself breaks
    # ties ("1" and "01"), so that the order never depends on a set's (hash seed's) order.
    # isdigit() also holds for "²", which int() refuses: ASCII digits only.
    return (0, int(name), name) if name.isascii() and name.isdigit() else (1, 0, name)


def build_model(job: JobLog) -> tuple[ReplayModel, SimulationResult]:
    """The model of ``job`` (see the module's docstring) and its observed run as a result."""
    ended = [a for a in job.attempts if a.end is not None]  # the model's attempts: every one that ended
    executors = sorted({a.executor for a in ended}, key=_executor_order)
    node = {e: n for n, e in enumerate(executors)}
    hosts = {a.executor: a.host for a in ended}

    # Each stage's tasks and the attempt that completed each (the first to succeed).
    winners: dict[str, dict[int, Attempt]] = defaultdict(dict)
    first_start: dict[str, float] = {}
    for a in ended:
        first_start[a.stage] = min(first_start.get(a.stage, math.inf), a.start)
        if a.outcome == "finish":
            held = winners[a.stage].get(a.task)
            if held is None or (_end(a), a.start) < (_end(held), held.start):
                winners[a.stage][a.task] = a
    stages = sorted(winners, key=lambda s: (first_start[s], s))
    duration = {id(a): _end(a) - a.start for s in stages for a in winners[s].values()}

    # Slowness in a stage: the median time of an executor's winning attempts over the stage's.
    # Over the job: the median of its attempts' time / their stage's median, every stage pooled
    # (for the stages it won no attempt in).
    medians = {s: statistics.median(duration[id(a)] for a in winners[s].values()) for s in stages}
    ratios: dict[str, list[float]] = defaultdict(list)
    for s in stages:
        for a in winners[s].values():
            if medians[s] > 0:
                ratios[a.executor].append(duration[id(a)] / medians[s])
    slowness = [max(statistics.median(ratios[e]), _FASTEST) if ratios[e] else 1.0 for e in executors]
    stage_slowness = []
    for s in stages:
        times: dict[str, list[float]] = defaultdict(list)
        for a in winners[s].values():
            times[a.executor].append(duration[id(a)])
        stage_slowness.append(tuple(
            max(statistics.median(times[e]) / medians[s], _FASTEST) if times[e] and medians[s] > 0 else slowness[n]
            for n, e in enumerate(executors)
        ))

    # Slots: cores over CPUs per task where the log says; else the most attempts run at once.
    concurrency = _concurrency(ended, executors)
    slots = []
    for e in executors:
        cores = job.cores.get(e)
        # Not the most at once where cores are known: Spark stamps a task's end when the driver has
        # its result, after the slot already took the next task, so attempts seem to overlap.
        slots.append(max(cores // job.task_cpus, 1) if cores is not None else max(concurrency[e], 1))

    work: list[tuple[float, ...]] = []
    task_ids: list[tuple[int, ...]] = []
    gaps: list[float] = []
    previous_end = first_start[stages[0]]
    for s in stages:
        tasks = sorted(winners[s])
        task_ids.append(tuple(tasks))
        k = len(work)
        work.append(tuple(duration[id(winners[s][t])] / stage_slowness[k][node[winners[s][t].executor]]
                          for t in tasks))
        gaps.append(max(0.0, first_start[s] - previous_end))
        previous_end = max(_end(a) for a in winners[s].values())
    model = ReplayModel(tuple(stages), tuple(work), tuple(task_ids), tuple(executors),
                        tuple(hosts[e] for e in executors), tuple(slots), tuple(slowness), tuple(stage_slowness),
                        tuple(gaps))
    return model, _observed(job, model, winners, first_start, node)


def _concurrency(attempts: list[Attempt], executors: list[str]) -> dict[str, int]:
    """The most attempts each executor ran at once (an end at t frees its slot before a start at t)."""
    points: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for a in attempts:
        points[a.executor].append((a.start, 1))
        points[a.executor].append((_end(a), -1))
    most = {}
    for e in executors:
        running = peak = 0
        for _, step in sorted(points[e]):
            running += step
            peak = max(peak, running)
        most[e] = peak
    return most


def _observed(job: JobLog, model: ReplayModel, winners: dict[str, dict[int, Attempt]],
              first_start: dict[str, float], node: dict[str, int]) -> SimulationResult:
    """The logged run as a ``SimulationResult``: times from the first attempt's start; task
    times from the start of the task's stage; only the stages the model holds."""
    kept = set(model.stages)
    attempts = [a for a in job.attempts if a.end is not None and a.stage in kept]
    origin = min(first_start[s] for s in model.stages)
    number = {s: k for k, s in enumerate(model.stages)}
    offset = [0, *np.cumsum([len(t) for t in model.task_ids]).tolist()]
    local = {s: {t: i for i, t in enumerate(model.task_ids[k])} for k, s in enumerate(model.stages)}
    winner_ids = {id(a) for s in model.stages for a in winners[s].values()}
    rows: list[tuple] = []
    useful = wasted = 0.0
    copies = wins = failures = killed = 0
    seen_attempt: dict[tuple[str, int], int] = defaultdict(int)
    for a in sorted(attempts, key=lambda a: (a.start, _end(a))):
        if a.task not in local[a.stage]:
            continue  # a task that never succeeded: not in the model
        task = offset[number[a.stage]] + local[a.stage][a.task]
        seconds = _end(a) - a.start
        won = id(a) in winner_ids
        outcome = "finish" if won else ("kill" if a.outcome == "finish" else a.outcome)
        useful += seconds if won else 0.0
        wasted += 0.0 if won else seconds
        copies += a.speculative
        wins += a.speculative and won
        failures += outcome == "fail"
        killed += outcome == "kill"
        n = seen_attempt[a.stage, a.task]
        seen_attempt[a.stage, a.task] = n + 1
        rows.append(("start", a.start - origin, task, n, a.stage, node[a.executor], a.speculative))
        rows.append((outcome, _end(a) - origin, task, n, a.stage, node[a.executor], a.speculative))
    rows.sort(key=lambda r: (r[1], r[0] == "start"))
    times = [_end(a) - first_start[s] for s in model.stages for a in winners[s].values()]
    p50, p99 = np.percentile(times, [50, 99]).tolist()
    makespan = max(_end(a) for s in model.stages for a in winners[s].values()) - origin
    total = useful + wasted
    return SimulationResult(
        policy="observed", tasks=offset[-1], nodes=len(model.executors), seed=0, makespan=makespan,
        task_p50=p50, task_p99=p99, speculative=copies, speculative_wins=wins, attempts=len(attempts),
        failures=failures, killed=killed, failed_tasks=0, useful_seconds=useful, wasted_seconds=wasted,
        wasted_fraction=wasted / total if total > 0 else 0.0,
        slow_nodes=tuple(n for n, s in enumerate(model.slowness) if s >= _SLOW), events=EventLog(rows),
    )
