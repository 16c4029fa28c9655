"""``simulate``: a batch job on a cluster of nodes, in virtual time, with the real Detector.

A discrete-event simulation that makes the executor's decisions with the executor's code: every
attempt is placed by ``_scheduling.choose_node``, every copy comes from ``Detector.check``
followed by ``_scheduling.plan_copies``, Flink's slow nodes are kept by
``_scheduling.NodeBlocklist``. Only the clock and the work are simulated.

The model
---------
- ``tasks`` tasks of one stage, all submitted at t = 0, on ``nodes`` nodes of
  ``slots_per_node`` slots each. ``slow_nodes`` of them (chosen at random) run every attempt
  ``slow_factor`` times longer.
- A task's size, in seconds on a healthy node, is drawn once: lognormal with median
  ``task_time`` and log-spread ``sigma``, or Pareto with median ``task_time`` and tail index
  ``shape``. An attempt of it on node n takes size x speed factor of n: a copy on a healthy node
  beats a straggler caused by a slow node, but not a task that is simply large.
- With ``input_sizes=True`` each task also declares its size to the Detector as input bytes
  (``add_tasks(..., input_bytes=...)``): ``round(size / task_time x 2**20)``, at least 1, so
  a task of the median size reads 1 MiB and every task takes the same time per byte on a
  healthy node. Policies that read bytes then judge time per byte: Flink (as Flink does once
  every task's bytes are known) and Mantri (t_new scaled by the task's bytes). By default the
  Detector knows no sizes, as before.
- Each attempt fails with probability ``failure_rate``, at a uniformly drawn point of its run.
  A failed task is retried (ahead of the waiting tasks, as the executor does) while no other
  attempt of it runs, until ``max_failures`` failures fail it for good.
- The first successful attempt wins; the other attempts of its task are killed at that moment.
  Time spent in killed and failed attempts is wasted.
- Every ``interval`` seconds of virtual time while an attempt runs, the scheduler checks: under
  LATE each running attempt first reports progress = elapsed / its duration (one
  ``heartbeat_many``), then ``Detector.check(now, pending=, slots=)`` and ``plan_copies`` decide
  the copies, which start at once on the nodes ``plan_copies`` chose. Only the checks that
  can answer differently from the one before are made: between two events an answer changes
  only when a running attempt's elapsed time crosses its threshold, so the loop jumps to the
  tick of the next crossing or the next event. A run costs time in proportion to its events,
  not to its length / ``interval``, and decides exactly as a check at every tick would.

Simplifications (against the executor and real clusters)
--------------------------------------------------------
- The default check interval is ``max(policy.interval, 1 s)``: Spark checks every 0.1 s, but
  in a job of minute-long tasks a second changes nothing and costs ten times the checks.
- A check that cannot start a copy (no slot free beyond the waiting tasks) is skipped, except
  under Flink, whose check also blocks nodes. ``check`` is a pure query and progress grows
  linearly, so skipping it changes no decision; it is what keeps 100,000 tasks fast.
- No network, no data locality, no start-up cost of an attempt, no records (Spark's
  efficiency test sees no processing rates), one stage. (``simulate_stages`` runs given
  task sizes in several stages, one after another, on nodes of their own slots and speeds:
  the model ``replay`` builds from a real job's log.)
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union, overload

import numpy as np

from straggler._checks import duration, flag, integer, real
from straggler._records import AttemptEvent
from straggler._scheduling import NodeBlocklist, Situation, choose_node, plan_copies
from straggler.policies import FlinkPolicy, LatePolicy, MantriPolicy, SmallpondPolicy, SparkPolicy

__all__ = [
    "MAX_NODES", "MAX_SLOTS", "MAX_TASKS", "POLICY_NAMES", "SimulationResult", "resolve_policy", "simulate",
    "simulate_stages",
]

# The policies ``simulate`` and the command line know by name, with their own defaults.
POLICY_NAMES: dict[str, Any] = {
    "spark": SparkPolicy,
    "spark4": SparkPolicy.spark4,
    "flink": FlinkPolicy,
    "smallpond": SmallpondPolicy,
    "late": LatePolicy,
    "mantri": MantriPolicy,
}
_KINDS = ("spark", "flink", "smallpond", "late", "mantri")
# The policies that read progress: every check, each running attempt reports it first.
_PROGRESS_KINDS = ("late", "mantri")
_STAGE = "sim"


def resolve_policy(policy: Any) -> tuple[str, Any]:
    """``(name, policy object or None)`` for ``simulate``'s ``policy`` argument."""
    if policy is None:
        return "none", None
    if isinstance(policy, type):
        raise TypeError(f"policy must be a policy object, not a class: call it, as {policy.__name__}(), "
                        f"got {policy!r}")
    if isinstance(policy, str):
        factory = POLICY_NAMES.get(policy)
        if factory is None:
            names = ", ".join(repr(n) for n in POLICY_NAMES)
            raise ValueError(f"policy must be None, {names} or a policy object, got {policy!r}")
        return policy, factory()
    if getattr(policy, "kind", None) not in _KINDS:
        raise TypeError(
            f"policy must be None, a policy name or a SparkPolicy, FlinkPolicy, SmallpondPolicy, "
            f"LatePolicy or MantriPolicy, got {policy!r}"
        )
    return policy.kind, policy


class EventLog(Sequence[AttemptEvent]):
    """The simulation's timeline as ``AttemptEvent`` records (the executor's ``events()`` type),
    built on access: a 100,000-task run has some 200,000 of them."""

    __slots__ = ("_rows",)

    def __init__(self, rows: Sequence[tuple]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> AttemptEvent: ...

    @overload
    def __getitem__(self, index: slice) -> list[AttemptEvent]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[AttemptEvent, list[AttemptEvent]]:
        if isinstance(index, slice):
            return [AttemptEvent(*row) for row in self._rows[index]]
        return AttemptEvent(*self._rows[index])

    def __iter__(self) -> Iterator[AttemptEvent]:
        for row in self._rows:
            yield AttemptEvent(*row)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventLog):
            return self._rows == other._rows
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._rows))

    def __repr__(self) -> str:
        return f"<EventLog of {len(self._rows)} events>"


@dataclass(frozen=True)
class SimulationResult:
    """What one simulated job did. Times are virtual seconds from the job's submission.

    - makespan: when the last task completed (or failed for good).
    - task_p50, task_p99: numpy's linear percentiles of the completed tasks' completion times
      (end of the winning attempt - submission at 0); nan if none completed.
    - speculative: copies started; speculative_wins: tasks a copy completed first.
    - attempts, failures (attempts that failed), killed (losers stopped at the winner's end),
      failed_tasks (tasks that reached max_failures).
    - useful_seconds (the winning attempts' run time) + wasted_seconds (failed and killed
      attempts' run time) = all attempt-seconds; wasted_fraction = wasted / all.
    - slow_nodes: the ids of the slow nodes; events: the timeline (``AttemptEvent`` records,
      ``node`` being the simulated node; the input of ``plot_timeline``).
    """

    policy: str
    tasks: int
    nodes: int
    seed: int
    makespan: float
    task_p50: float
    task_p99: float
    speculative: int
    speculative_wins: int
    attempts: int
    failures: int
    killed: int
    failed_tasks: int
    useful_seconds: float
    wasted_seconds: float
    wasted_fraction: float
    slow_nodes: tuple[int, ...]
    events: EventLog


# --- argument checks ----------------------------------------------------------------------------

# Bounds on what one run may ask for. Counts: the run keeps a few Python objects per task, slot
# and node, so these keep it within a few GB. Times: every attempt's length is bounded (below)
# so that sums of times and times / interval stay finite floats.
MAX_TASKS = 10_000_000
MAX_NODES = 1_000_000
MAX_SLOTS = 10_000_000  # nodes x slots_per_node
MAX_SIGMA = 20.0  # lognormal draws stay below exp(20 x 14), whatever the seed
MIN_INTERVAL = 1e-9
MAX_SECONDS = 1e200  # task_time x slow_factor x the largest draw the distribution can give
# The largest |draw| numpy's generators can give: a standard normal below 14 (the ziggurat's
# tail, r + 36.8 / r with r = 3.65), a standard exponential below 45 (7.7 + 36.8): 2**-53 is
# the smallest uniform they take a log of.
_NORMAL_MAX = 14.0
_EXPONENTIAL_MAX = 45.0
# input_sizes: the bytes of a task of the median size, and the most bytes a task may declare
# (so that every count is an exact, positive int64 whatever the draw).
BYTES_PER_MEDIAN = 2**20
MAX_INPUT_BYTES = 2**62


def _longest_factor(distribution: str, sigma: float, shape: float) -> float:
    """The largest task size the distribution can draw, as a multiple of its median."""
    if distribution == "lognormal":
        return math.exp(sigma * _NORMAL_MAX)
    # Pareto: scale x exp(E / shape) with the scale median / 2**(1/shape) (see _task_sizes).
    return math.exp(_EXPONENTIAL_MAX / shape) / 2.0 ** (1.0 / shape)


def _check_time_scale(task_time: float, slow_factor: float, distribution: str, sigma: float,
                      shape: float) -> None:
    """Refuse settings whose longest possible attempt is not a finite, summable time, naming the
    argument that contributes most."""
    tail = _longest_factor(distribution, sigma, shape)
    longest = task_time * slow_factor * tail
    if longest <= MAX_SECONDS:
        return
    spread = f"sigma={sigma!r}" if distribution == "lognormal" else f"shape={shape!r}"
    parts = {"task_time": task_time, "slow_factor": slow_factor,
             "sigma" if distribution == "lognormal" else "shape": tail}
    name = max(parts, key=lambda k: parts[k])
    value = {"task_time": task_time, "slow_factor": slow_factor, "sigma": sigma, "shape": shape}[name]
    raise ValueError(
        f"{name} must keep task_time x slow_factor x the largest {distribution} draw ({spread}: up to "
        f"{tail:.3g}x the median) at most {MAX_SECONDS:g} s, got {name}={value!r} "
        f"(task_time={task_time!r}, slow_factor={slow_factor!r}: up to {longest:.3g} s)"
    )


def _check_input_sizes(distribution: str, sigma: float, shape: float) -> None:
    """Refuse input_sizes=True where the largest draw would declare more than MAX_INPUT_BYTES."""
    tail = _longest_factor(distribution, sigma, shape)
    if tail * BYTES_PER_MEDIAN <= MAX_INPUT_BYTES:
        return
    name, value = ("sigma", sigma) if distribution == "lognormal" else ("shape", shape)
    limit = MAX_INPUT_BYTES // BYTES_PER_MEDIAN
    raise ValueError(
        f"{name} must keep the largest {distribution} draw at most {limit:.3g}x the median when "
        f"input_sizes is on (a task declares {BYTES_PER_MEDIAN} bytes per median size, at most "
        f"{MAX_INPUT_BYTES}), got {name}={value!r} (up to {tail:.3g}x the median)"
    )


def _arguments(tasks: Any, nodes: Any, slow_nodes: Any, slow_factor: Any, policy: Any, seed: Any,
               distribution: Any, failure_rate: Any, slots_per_node: Any, task_time: Any, sigma: Any,
               shape: Any, max_failures: Any, interval: Any, input_sizes: Any = False) -> dict[str, Any]:
    """``simulate``'s arguments checked and normalised (Python numbers; ``policy`` resolved to
    ``(name, policy object)``); the command line checks with it too, before any run."""
    tasks = integer("tasks", tasks, low=1, high=MAX_TASKS)
    nodes = integer("nodes", nodes, low=1, high=MAX_NODES)
    slow_nodes = integer("slow_nodes", slow_nodes, low=0)
    if slow_nodes > nodes:
        raise ValueError(f"slow_nodes must be <= nodes ({nodes}), got {slow_nodes!r}")
    slow_factor = real("slow_factor", slow_factor, low=1.0)
    name, policy_obj = resolve_policy(policy)
    seed = integer("seed", seed, low=0)
    if not isinstance(distribution, str):
        raise TypeError(f"distribution must be 'lognormal' or 'pareto', got {distribution!r}")
    if distribution not in ("lognormal", "pareto"):
        raise ValueError(f"distribution must be 'lognormal' or 'pareto', got {distribution!r}")
    failure_rate = real("failure_rate", failure_rate, low=0.0, high=1.0, high_open=True)
    slots_per_node = integer("slots_per_node", slots_per_node, low=1)
    if nodes * slots_per_node > MAX_SLOTS:
        raise ValueError(
            f"slots_per_node must keep nodes x slots_per_node at most {MAX_SLOTS}, got {slots_per_node!r} "
            f"(with nodes={nodes})"
        )
    task_time = duration("task_time", task_time)
    sigma = real("sigma", sigma, low=0.0, high=MAX_SIGMA)
    shape = real("shape", shape, low=1.0, low_open=True)
    _check_time_scale(task_time, slow_factor, distribution, sigma, shape)
    input_sizes = flag("input_sizes", input_sizes)
    if input_sizes:
        _check_input_sizes(distribution, sigma, shape)
    max_failures = integer("max_failures", max_failures, low=1)
    if interval is None:
        interval = max(float(policy_obj.interval), 1.0) if policy_obj is not None else 1.0
    else:
        interval = real("interval", interval, low=MIN_INTERVAL)
    return dict(
        tasks=tasks, nodes=nodes, slow_nodes=slow_nodes, slow_factor=slow_factor, name=name, policy=policy_obj,
        seed=seed, distribution=distribution, failure_rate=failure_rate, slots_per_node=slots_per_node,
        task_time=task_time, sigma=sigma, shape=shape, max_failures=max_failures, interval=interval,
        input_sizes=input_sizes,
    )


def _input_bytes(sizes: np.ndarray, median: float) -> list[int]:
    """The bytes each task declares with input_sizes=True: proportional to its size."""
    scaled = np.rint(sizes / median * BYTES_PER_MEDIAN)
    return np.clip(scaled, 1, MAX_INPUT_BYTES).astype(np.int64).tolist()


def _task_sizes(rng: np.random.Generator, n: int, distribution: str, median: float,
                sigma: float, shape: float) -> np.ndarray:
    if distribution == "lognormal":
        return median * rng.lognormal(mean=0.0, sigma=sigma, size=n)  # sigma 0: exactly the median
    # Pareto (type I) with scale x_m has median x_m * 2**(1/shape); numpy's pareto is x/x_m - 1.
    scale = median / 2.0 ** (1.0 / shape)
    return scale * (1.0 + rng.pareto(shape, size=n))


# --- the simulation -----------------------------------------------------------------------------


def simulate(
    tasks: int,
    nodes: int,
    slow_nodes: int = 0,
    slow_factor: float = 1.0,
    policy: Any = None,
    seed: int = 0,
    distribution: str = "lognormal",
    failure_rate: float = 0.0,
    *,
    slots_per_node: int = 1,
    task_time: float = 60.0,
    sigma: float = 0.5,
    shape: float = 2.0,
    max_failures: int = 4,
    interval: Optional[float] = None,
    input_sizes: bool = False,
) -> SimulationResult:
    """Run one job of ``tasks`` tasks on ``nodes`` nodes in virtual time; see the module's
    docstring for the model.

    ``policy``: None (no speculation), "spark", "spark4", "flink", "smallpond", "late" (each
    with its peer system's defaults, in seconds) or a policy object. ``task_time`` is the median
    task size in seconds on a healthy node (60 s by default: the policies' thresholds, such as
    Flink's 60 s lower bound and smallpond's 180 s probe timeout, are meant for minutes-long
    tasks); ``sigma`` is the lognormal's log-spread, ``shape`` the Pareto tail index (> 1, so
    the mean is finite). ``interval``: seconds between checks (default max(policy.interval, 1)).
    ``input_sizes``: the Detector learns each task's size as its input bytes (see the module's
    docstring; Flink and Mantri then judge time per byte). The same arguments and ``seed``
    give the same result, events included.

    Bounds: at most ``MAX_TASKS`` tasks, ``MAX_NODES`` nodes and ``MAX_SLOTS`` slots in all;
    ``sigma`` at most 20; ``interval`` at least 1e-9 s; task_time x slow_factor x the largest
    task size the distribution can draw (as a multiple of its median) at most ``MAX_SECONDS``,
    so that every time stays a finite float; with ``input_sizes``, that largest draw at most
    2**42 x the median (lognormal sigma up to about 2.08, Pareto shape from about 1.52), so that
    every byte count fits an int64. Integers and reals may be numpy scalars.
    """
    return _build(
        tasks, nodes, slow_nodes, slow_factor, policy, seed, distribution, failure_rate,
        slots_per_node=slots_per_node, task_time=task_time, sigma=sigma, shape=shape,
        max_failures=max_failures, interval=interval, input_sizes=input_sizes,
    ).run()


def simulate_stages(
    stages: Sequence[Sequence[float]],
    slots_per_node: Sequence[int],
    speed: Sequence[Sequence[float]],
    policy: Any = None,
    *,
    gaps: Optional[Sequence[float]] = None,
    names: Optional[Sequence[str]] = None,
    slow_nodes: Sequence[int] = (),
    interval: Optional[float] = None,
) -> SimulationResult:
    """Run a job of stages one after another, each a barrier (as a Spark job's shuffle): stage k
    starts ``gaps[k]`` seconds after stage k-1's last task completed (``gaps[0]`` after 0).

    ``stages[k]`` holds the sizes of stage k's tasks (seconds on a node of speed 1); node n has
    ``slots_per_node[n]`` slots and runs an attempt of a stage k task of size s in
    ``s x speed[k][n]`` seconds. Each stage has a Detector of its own, as each Spark TaskSet
    has its own statistics. No attempt fails. ``interval``: seconds between checks (default:
    the policy's own interval, which may be under ``simulate``'s floor of 1 s). The result sums
    the stages' counts; ``task_p50`` and ``task_p99`` are over every task's completion time
    from the start of its stage; events carry the stage's name (``names[k]``, default "k") and
    task ids numbered across the stages, in the job's time.
    """
    name, policy_obj = resolve_policy(policy)
    for argument, value in (("stages", stages), ("slots_per_node", slots_per_node), ("speed", speed)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__getitem__"):
            raise TypeError(f"{argument} must be a sequence, got {value!r}")
    if len(stages) == 0:
        raise ValueError("stages must hold at least one stage, got none")
    nodes = len(slots_per_node)
    if nodes == 0:
        raise ValueError("slots_per_node must name at least one node, got none")
    if len(speed) != len(stages):
        raise ValueError(f"speed must have one row per stage ({len(stages)}), got {len(speed)}")
    slots = [integer(f"slots_per_node[{n}]", k, low=0) for n, k in enumerate(slots_per_node)]
    if sum(slots) < 1:
        raise ValueError(f"slots_per_node must give at least one slot, got {list(slots_per_node)!r}")
    if sum(slots) > MAX_SLOTS:
        raise ValueError(f"slots_per_node must give at most {MAX_SLOTS} slots, got {sum(slots)}")
    speeds = []
    for k, row in enumerate(speed):
        if len(row) != nodes:
            raise ValueError(f"speed[{k}] must have one entry per node ({nodes}), got {len(row)}")
        speeds.append([real(f"speed[{k}][{n}]", v, low=0.0, low_open=True, high=MAX_SECONDS)
                       for n, v in enumerate(row)])
    gaps = [0.0] * len(stages) if gaps is None else list(gaps)
    if len(gaps) != len(stages):
        raise ValueError(f"gaps must have one entry per stage ({len(stages)}), got {len(gaps)}")
    gaps = [real(f"gaps[{k}]", g, low=0.0) for k, g in enumerate(gaps)]
    names = [str(k) for k in range(len(stages))] if names is None else [str(n) for n in names]
    if len(names) != len(stages):
        raise ValueError(f"names must have one entry per stage ({len(stages)}), got {len(names)}")
    if interval is None:
        interval = float(policy_obj.interval) if policy_obj is not None else 1.0
    interval = real("interval", interval, low=MIN_INTERVAL)
    if isinstance(slow_nodes, (str, bytes)) or not hasattr(slow_nodes, "__iter__"):
        raise TypeError(f"slow_nodes must be a sequence of node numbers, got {slow_nodes!r}")
    slow_nodes = tuple(integer(f"slow_nodes[{i}]", n, low=0, high=nodes - 1) for i, n in enumerate(slow_nodes))

    rows: list[tuple] = []
    times: list[float] = []
    counts = dict(speculative=0, speculative_wins=0, attempts=0, failures=0, killed=0, failed_tasks=0)
    useful = wasted = 0.0
    clock = 0.0
    first_task = 0
    for k, sizes in enumerate(stages):
        sizes = [real(f"stages[{k}][{i}]", s, low=0.0, high=MAX_SECONDS) for i, s in enumerate(sizes)]
        if not sizes:
            raise ValueError(f"stages[{k}] must hold at least one task, got none")
        run = _Simulation(name, policy_obj, slots, sizes, speeds[k], tuple(slow_nodes), 0.0, random.Random(0), 4,
                          interval, 0, stage_name=names[k]).run()
        start = clock + gaps[k]
        for row in run.events._rows:
            rows.append((row[0], row[1] + start, row[2] + first_task, *row[3:]))
        # Completion times within the stage (simulate's task_p50 counts from 0, the stage's start).
        ends = [row[1] for row in run.events._rows if row[0] == "finish"]
        times.extend(ends)
        for field in counts:
            counts[field] += getattr(run, field)
        useful += run.useful_seconds
        wasted += run.wasted_seconds
        clock = start + run.makespan
        first_task += len(sizes)
    p50, p99 = np.percentile(times, [50, 99]).tolist() if times else (math.nan, math.nan)
    total = useful + wasted
    return SimulationResult(
        policy=name, tasks=first_task, nodes=nodes, seed=0, makespan=clock, task_p50=p50, task_p99=p99,
        useful_seconds=useful, wasted_seconds=wasted, wasted_fraction=wasted / total if total > 0 else 0.0,
        slow_nodes=tuple(slow_nodes), events=EventLog(rows), **counts,
    )


def _build(tasks: Any, nodes: Any, slow_nodes: Any = 0, slow_factor: Any = 1.0, policy: Any = None,
           seed: Any = 0, distribution: Any = "lognormal", failure_rate: Any = 0.0, *, slots_per_node: Any = 1,
           task_time: Any = 60.0, sigma: Any = 0.5, shape: Any = 2.0, max_failures: Any = 4,
           interval: Any = None, input_sizes: Any = False) -> _Simulation:
    """The run ``simulate`` makes with these arguments, ready to ``run()``."""
    a = _arguments(tasks, nodes, slow_nodes, slow_factor, policy, seed, distribution, failure_rate,
                   slots_per_node, task_time, sigma, shape, max_failures, interval, input_sizes)
    rng = np.random.default_rng(a["seed"])
    sizes = _task_sizes(rng, a["tasks"], a["distribution"], a["task_time"], a["sigma"], a["shape"])
    slow = tuple(sorted(int(n) for n in rng.choice(a["nodes"], size=a["slow_nodes"], replace=False)))
    # Failures draw from their own stream, so a run without failures draws nothing from it.
    fail_rng = random.Random(a["seed"])
    speed = [1.0] * a["nodes"]
    for node in slow:
        speed[node] = a["slow_factor"]
    return _Simulation(
        a["name"], a["policy"], [a["slots_per_node"]] * a["nodes"], sizes.tolist(), speed, slow,
        a["failure_rate"], fail_rng, a["max_failures"], a["interval"], a["seed"],
        input_bytes=_input_bytes(sizes, a["task_time"]) if a["input_sizes"] else None,
    )


class _Simulation:
    """One run. Plain lists indexed by task id and attempt id (the Detector's ids, dense from 0)
    keep the per-event work small; the event heap holds (time, sequence, attempt) with
    attempt -1 for "a blocked node was released"."""

    def __init__(self, name: str, policy: Any, slots_per_node: Sequence[int], sizes: list[float],
                 speed: Sequence[float], slow: tuple[int, ...], failure_rate: float, fail_rng: random.Random,
                 max_failures: int, interval: float, seed: int, stage_name: str = _STAGE,
                 input_bytes: Optional[list[int]] = None) -> None:
        """Node n has ``slots_per_node[n]`` slots and runs an attempt of task t in
        ``sizes[t] x speed[n]`` seconds; ``slow`` names the slow nodes for the result;
        ``input_bytes``, if given, are the tasks' bytes the Detector is told."""
        from straggler._core import Detector

        tasks = len(sizes)
        nodes = len(slots_per_node)
        self.name = name
        self.policy = policy
        self.kind = policy.kind if policy is not None else None
        self.n_tasks = tasks
        self.n_nodes = nodes
        self.slots = sum(slots_per_node)
        self.sizes = sizes
        self.slow = slow
        self.speed = list(speed)
        self.stage_name = stage_name
        self.failure_rate = failure_rate
        self.fail_rng = fail_rng
        self.max_failures = max_failures
        self.interval = interval
        self.seed = seed

        self.detector = Detector(policy=policy)
        stage = self.detector.add_stage(num_tasks=tasks, name=stage_name)
        self.detector.add_tasks(stage, tasks, input_bytes=input_bytes)

        # Slots: node n owns the k = slots_per_node[n] slots from first[n] on, taken lowest first;
        # a node is in free_nodes while it has a free slot.
        first = [0, *itertools.accumulate(slots_per_node)]
        self.free_slots_of: list[list[int]] = [
            list(range(first[n + 1] - 1, first[n] - 1, -1)) for n in range(nodes)
        ]
        self.free_nodes: dict[int, int] = {n: k for n, k in enumerate(slots_per_node) if k > 0}
        self.n_free = self.slots
        # LATE's heartbeats read the running attempts per slot as arrays.
        self.slot_attempt = np.full(self.slots, -1, dtype=np.int64)
        self.slot_start = np.zeros(self.slots)
        self.slot_duration = np.ones(self.slots)

        # Per task.
        self.done = [False] * tasks
        self.running: list[list[int]] = [[] for _ in range(tasks)]
        self.ran_on: list[list[int]] = [[] for _ in range(tasks)]
        self.failures = [0] * tasks
        self.next_number = [0] * tasks
        self.completion = [math.nan] * tasks
        # Per attempt.
        self.a_task: list[int] = []
        self.a_number: list[int] = []
        self.a_node: list[int] = []
        self.a_slot: list[int] = []
        self.a_start: list[float] = []
        self.a_spec: list[bool] = []
        self.a_alive: list[bool] = []

        self.pending: collections.deque[int] = collections.deque(range(tasks))
        self.restarts: collections.deque[int] = collections.deque()  # Mantri's, first in line
        # A deferred restart's decision, (elapsed, threshold), for its start's record.
        self.restart_why: dict[int, tuple[float, float]] = {}
        self.heap: list[tuple[float, int, int, bool]] = []
        self.seq = 0
        self.n_running = 0
        self.spec_running = 0
        self.blocklist = NodeBlocklist()
        self.log: list[tuple] = []
        self.n_speculative = self.n_wins = self.n_failures = self.n_killed = self.n_failed_tasks = 0
        self.useful = 0.0
        self.wasted = 0.0
        self.now = 0.0

        # Jumping between events (see quiet_until); False checks at every tick (the reference).
        self.jump = True
        self.stage = stage
        self.flagged = np.empty(0, dtype=np.int64)  # the tasks the last check flagged
        self.flagged_nodes: tuple[int, ...] = ()  # and the nodes it blocked (Flink)
        self.seen_blocked: frozenset[int] = frozenset()
        self.refresh_nodes: tuple[int, ...] = ()  # Flink: blocked again by each skipped check
        self.refresh_step = 0
        self.release_due: Optional[float] = None
        self.release_at: Optional[float] = None  # the release the last check's blocks need

    # --- attempts -----------------------------------------------------------------------------

    def start(self, task: int, node: int, now: float, speculative: bool, why: tuple = ()) -> None:
        """Start an attempt; ``why``: the decision's (elapsed, threshold[, reason]) for the record."""
        slot = self.free_slots_of[node].pop()
        left = self.free_nodes[node] - 1
        if left:
            self.free_nodes[node] = left
        else:
            del self.free_nodes[node]
        self.n_free -= 1
        attempt = self.detector.start(task, now, node=node)
        number = self.next_number[task]
        self.next_number[task] = number + 1
        self.a_task.append(task)
        self.a_number.append(number)
        self.a_node.append(node)
        self.a_slot.append(slot)
        self.a_start.append(now)
        self.a_spec.append(speculative)
        self.a_alive.append(True)
        self.running[task].append(attempt)
        self.ran_on[task].append(node)
        self.n_running += 1
        if speculative:
            self.spec_running += 1
            self.n_speculative += 1
        duration = self.sizes[task] * self.speed[node]
        ok = True
        if self.failure_rate and self.fail_rng.random() < self.failure_rate:
            ok = False
            duration *= self.fail_rng.random()  # it fails part way through
        if self.kind in _PROGRESS_KINDS:
            self.slot_attempt[slot] = attempt
            self.slot_start[slot] = now
            # Progress reported is elapsed / the run's full length, failing runs included.
            self.slot_duration[slot] = max(self.sizes[task] * self.speed[node], 1e-9)
        self.seq += 1
        heapq.heappush(self.heap, (now + duration, self.seq, attempt, ok))
        self.log.append(("start", now, task, number, self.stage_name, node, speculative, *why))

    def end(self, attempt: int, now: float, outcome: str, reason: Optional[str] = None) -> None:
        """Free the attempt's slot and tell the Detector; ``outcome``: finish, fail or kill."""
        self.a_alive[attempt] = False
        node = self.a_node[attempt]
        slot = self.a_slot[attempt]
        self.free_slots_of[node].append(slot)
        self.free_nodes[node] = self.free_nodes.get(node, 0) + 1
        self.n_free += 1
        if self.kind in _PROGRESS_KINDS:
            self.slot_attempt[slot] = -1
        self.n_running -= 1
        speculative = self.a_spec[attempt]
        if speculative:
            self.spec_running -= 1
        task = self.a_task[attempt]
        self.running[task].remove(attempt)
        self.detector.finish(attempt, now, ok=outcome == "finish")
        seconds = now - self.a_start[attempt]
        if outcome == "finish":
            self.useful += seconds
        else:
            self.wasted += seconds
        if reason is None:
            self.log.append((outcome, now, task, self.a_number[attempt], self.stage_name, node, speculative))
        else:
            self.log.append((outcome, now, task, self.a_number[attempt], self.stage_name, node, speculative, None, None,
                             reason))

    def settle(self, attempt: int, now: float, ok: bool) -> None:
        task = self.a_task[attempt]
        if ok:
            self.end(attempt, now, "finish")
            self.done[task] = True
            self.completion[task] = now
            self.n_wins += self.a_spec[attempt]
            for other in list(self.running[task]):
                self.end(other, now, "kill")  # lost the race: stopped now, its time wasted
                self.n_killed += 1
            return
        self.end(attempt, now, "fail")
        self.n_failures += 1
        self.failures[task] += 1
        if self.failures[task] >= self.max_failures:
            self.done[task] = True
            self.n_failed_tasks += 1
            for other in list(self.running[task]):
                self.end(other, now, "kill")
                self.n_killed += 1
        elif not self.running[task]:
            # As the executor: a retry goes ahead of the waiting tasks; while another attempt
            # of the task runs, that one carries on instead.
            self.pending.appendleft(task)

    def dispatch(self, now: float) -> None:
        """Start waiting tasks on free slots, placed by ``choose_node`` (Flink's blocked nodes
        take none)."""
        while self.restarts and self.free_nodes:
            # Restarted tasks first (Mantri), each on a node it has not run on; one with no
            # such node free waits for the next slot.
            task = self.restarts[0]
            if self.done[task]:
                self.restarts.popleft()
                continue
            node = choose_node(self.free_nodes, avoid=self.ran_on[task])
            if node == -1 and len(set(self.ran_on[task])) >= self.n_nodes:
                node = choose_node(self.free_nodes)  # it has run on every node
            if node == -1 or node is None:
                break
            self.restarts.popleft()
            self.start(task, node, now, True, self.restart_why.pop(task, ()))
        pending = self.pending
        if not pending or not self.free_nodes:
            return
        blocked = self.blocklist.blocked(now) if self.kind == "flink" else ()
        while pending and self.free_nodes:
            node = choose_node(self.free_nodes, blocked=blocked)
            if node == -1:
                return  # every free node is blocked; the release event dispatches again
            assert node is not None  # free_nodes is a mapping: choose_node returns a node or -1
            self.start(pending.popleft(), node, now, False)

    # --- the scheduler's check ----------------------------------------------------------------

    def check(self, now: float) -> bool:
        """One check at ``now``: copies and (Flink) blocks. True if it started a copy."""
        detector = self.detector
        if self.kind in _PROGRESS_KINDS:
            live = self.slot_attempt >= 0
            progress = np.clip((now - self.slot_start[live]) / self.slot_duration[live], 0.0, 1.0)
            detector.heartbeat_many(self.slot_attempt[live], now, progress=progress)
        pending = len(self.pending) + len(self.restarts)
        answer = detector.check(now, pending=pending, slots=self.slots)
        self.flagged = answer.task
        self.flagged_nodes = ()
        self.release_at = None
        if len(answer) == 0:
            return False
        candidates = answer.task.tolist()
        situation = Situation(
            pending=pending,
            free_slots=self.n_free,
            slots=self.slots,
            attempts={t: len(self.running[t]) for t in candidates},
            speculative_running=self.spec_running,
            free_nodes=self.free_nodes,
            task_nodes={t: self.ran_on[t] for t in candidates},
            blocked_nodes=self.blocklist.blocked(now) if self.kind == "flink" else frozenset(),
            slow_nodes=frozenset(detector.slow_nodes(now).tolist()) if self.kind == "late" else frozenset(),
        )
        plan = plan_copies(answer, policy=self.policy, situation=situation)
        if plan.block_nodes:
            duration = float(self.policy.block_slow_node_duration)
            for node in plan.block_nodes:
                self.blocklist.block(node, now, duration)
            self.seen_blocked = self.blocklist.blocked(now)
            self.flagged_nodes = plan.block_nodes
            if duration > 0:
                self.release_at = now + duration  # the loop pushes it, or defers it (see run)
        for order in plan.copies:
            if order.restart:
                # Mantri's kill-and-restart: the attempt stops now (its time wasted); the new
                # one starts on the node the plan chose, or waits first in line for a slot.
                self.end(order.copied_attempt, now, "kill", "restart")
                self.n_killed += 1
                why: tuple = (order.elapsed, order.threshold, "restart")
                if order.node is None:
                    self.restarts.append(order.task)
                    self.restart_why[order.task] = why
                    continue
            else:
                why = (order.elapsed, order.threshold)
            assert order.node is not None  # placed on one of free_nodes
            self.start(order.task, order.node, now, True, why)
        self.dispatch(now)
        return bool(plan.copies)

    def check_is_useful(self) -> bool:
        # A check whose copies could not start changes nothing (it is a pure query), except
        # Flink's, which also blocks the slow attempts' nodes, and Mantri's, whose restarts need
        # no free slot.
        return self.kind in ("flink", "mantri") or self.n_free > len(self.pending)

    def push_release(self, at: float) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, -1, True))

    # --- jumping between events ---------------------------------------------------------------
    #
    # Between two events the Detector's statistics, the running attempts, the free slots and the
    # waiting tasks stay as they are; only the clock moves. A check that started no copy is
    # therefore repeated, answer and plan alike (Flink blocking the same nodes again), by every
    # later check until an attempt's elapsed time crosses its threshold (or, under LATE, its
    # minimum run time or its "too late to copy" point). The loop skips those repeats: it checks
    # again at the tick of the next crossing or after the next event, whichever comes first.

    def step_at_or_after(self, t: float) -> int:
        """The first tick k with k x interval >= t, compared as the loop compares (floats)."""
        i = self.interval
        k = math.ceil(t / i)
        for _ in range(4):  # t / i rounds; a grid finer than the floats near t needs no more
            if k > 1 and (k - 1) * i >= t:
                k -= 1
            elif k * i < t:
                k += 1
            else:
                break
        return k

    def step_after(self, t: float) -> int:
        """The first tick k with k x interval > t."""
        k = self.step_at_or_after(t)
        if k * self.interval <= t:
            k = self.step_at_or_after(math.nextafter(t, math.inf))
        return k

    def quiet_until(self, step: int, now: float, next_event: float) -> float:
        """After the check of ``step`` (at ``now``) started no copy: the first tick whose check
        can answer otherwise (math.inf: none), 0 when no tick before ``next_event`` can be
        skipped."""
        if self.step_at_or_after(next_event) <= step + 1:
            return 0  # the next event comes before or at the next tick: nothing to skip
        if self.kind == "mantri":
            return 0  # its restarts read progress and pending work: no crossing model yet, so no skip
        if self.kind == "late":
            live = self.slot_attempt >= 0
            start = self.slot_start[live]
            if start.size and start.max() >= now:
                # Attempts started at this check have no progress rate yet (0 until a
                # heartbeat after their start): the next check sees them otherwise.
                return self.step_after(now)
            crossings = [start + float(self.policy.min_runtime)]
            stats = self.detector.stage_stats(self.stage)
            if self.policy.require_benefit and stats["successes"] > 0 and not math.isnan(stats["p50"]):
                # An attempt stops being a candidate when its time left (its length - elapsed)
                # falls to the stage's median: a fresh copy would no longer finish first.
                crossings.append(start + self.slot_duration[live] - stats["p50"])
            times = np.concatenate(crossings)
            times = times[times > now - self.interval]
        else:
            # Spark, Flink and smallpond flag an attempt once its elapsed time passes a cutoff
            # that stays fixed between events: the flagged set only grows. The answer at the
            # next event's time holds every attempt that crosses before it, with its cutoff.
            # Past that event the probe sees nothing: should the event change nothing (a killed
            # attempt's end), the check at the first tick after it looks again.
            horizon = self.step_at_or_after(next_event)
            probe = self.detector.check(next_event, pending=len(self.pending), slots=self.slots)
            if len(probe) == len(self.flagged):
                return horizon
            new = ~np.isin(probe.task, self.flagged)
            times = next_event - probe.elapsed[new] + probe.threshold[new]
            if times.size == 0:
                return horizon
        if times.size == 0:
            return math.inf
        first = float(times.min())
        # A tick early, and a few ulps: the crossing computed here may differ from the
        # Detector's comparison in the last bits.
        margin = self.interval + 8 * math.ulp(max(abs(first), abs(next_event)))
        return max(self.step_at_or_after(first - margin), self.step_after(now))

    def refresh_blocks(self, step: int) -> None:
        """Flink: the checks skipped before tick ``step`` would each have blocked the nodes of
        the slow attempts again; the last of them sets how long the blocks last."""
        if not self.refresh_nodes or step - 1 < self.refresh_step:
            return
        last = max((step - 1) * self.interval, self.now)
        duration = float(self.policy.block_slow_node_duration)
        for node in self.refresh_nodes:
            self.blocklist.block(node, last, duration)
        self.seen_blocked = self.blocklist.blocked(last)
        self.refresh_step = step
        # Each skipped check's release event would find the node blocked again, except the
        # last one's: it is pushed when the quiet spell ends.
        self.release_due = last + duration

    def end_quiet(self) -> None:
        """An event changed the state: the blocks of the skipped checks end as the last one's."""
        if self.release_due is not None:
            self.push_release(self.release_due)
        self.refresh_nodes = ()
        self.release_due = None

    # --- the event loop -----------------------------------------------------------------------

    def run(self) -> SimulationResult:
        heap = self.heap
        interval = self.interval
        checks = self.policy is not None
        step = 1  # the next check is at step * interval (exact multiples: no drift)
        wake: float = 0  # while step < wake, a check would repeat the last one: skipped
        self.dispatch(0.0)
        while True:
            next_event = heap[0][0] if heap else math.inf
            if checks and self.n_running:
                # Never before the events already handled (checks pause while nothing runs).
                check_time = max(step * interval, self.now)
                if check_time < next_event:  # an event at the check's time goes first
                    if not self.check_is_useful():
                        # Nothing changes until the next event: jump to the first check at or
                        # after it.
                        step = max(step + 1, math.ceil(next_event / interval))
                    elif step < wake:
                        step = int(min(wake, self.step_at_or_after(next_event)))
                    else:
                        # The check ending a quiet spell blocks the same nodes again (and
                        # more), later: the spell's pending release would change nothing.
                        self.refresh_nodes, self.release_due = (), None
                        wake = 0
                        if not self.check(check_time) and self.jump:
                            wake = self.quiet_until(step, check_time, next_event)
                        if wake:
                            self.refresh_nodes = self.flagged_nodes
                            self.refresh_step = step + 1
                        release = self.release_at
                        if release is not None:
                            if wake and release > (step + 1) * interval:
                                # The next tick's check would block the node again before
                                # this release: it waits for the end of the quiet spell.
                                self.release_due = release
                            else:
                                self.push_release(release)
                        step += 1
                    continue
            if not heap:
                break
            if wake:
                self.refresh_blocks(step)
                if self.release_due is not None and self.release_due < next_event:
                    self.push_release(self.release_due)  # a block that ends before the event
                    self.release_due = None
                    continue
            now, _, attempt, ok = heapq.heappop(heap)
            self.now = now
            if attempt >= 0:
                if not self.a_alive[attempt]:
                    continue  # killed when another attempt of its task won
                self.settle(attempt, now, ok)
            else:
                blocked = self.blocklist.blocked(now)
                released = blocked != self.seen_blocked
                self.seen_blocked = blocked
                if wake and not released:
                    continue  # its node was blocked again since: nothing changes
            if wake:
                self.end_quiet()
                wake = 0
            self.dispatch(now)
        return self.result()

    def result(self) -> SimulationResult:
        if self.pending or self.restarts:  # pragma: no cover - every waiting task gets a slot eventually
            raise RuntimeError(f"simulation ended with {len(self.pending)} tasks never started")
        times = np.array([t for t in self.completion if not math.isnan(t)])
        p50, p99 = (np.percentile(times, [50, 99]).tolist() if times.size else (math.nan, math.nan))
        total = self.useful + self.wasted
        return SimulationResult(
            policy=self.name,
            tasks=self.n_tasks,
            nodes=self.n_nodes,
            seed=self.seed,
            makespan=self.log[-1][1] if self.log else 0.0,
            task_p50=p50,
            task_p99=p99,
            speculative=self.n_speculative,
            speculative_wins=self.n_wins,
            attempts=len(self.a_task),
            failures=self.n_failures,
            killed=self.n_killed,
            failed_tasks=self.n_failed_tasks,
            useful_seconds=self.useful,
            wasted_seconds=self.wasted,
            wasted_fraction=self.wasted / total if total > 0 else 0.0,
            slow_nodes=self.slow,
            events=EventLog(self.log),
        )
