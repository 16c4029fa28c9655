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
- Each attempt fails with probability ``failure_rate``, at a uniformly drawn point of its run.
  A failed task is retried (ahead of the waiting tasks, as the executor does) while no other
  attempt of it runs, until ``max_failures`` failures fail it for good.
- The first successful attempt wins; the other attempts of its task are killed at that moment.
  Time spent in killed and failed attempts is wasted.
- Every ``interval`` seconds of virtual time while an attempt runs, the scheduler checks: under
  LATE each running attempt first reports progress = elapsed / its duration (one
  ``heartbeat_many``), then ``Detector.check(now, pending=, slots=)`` and ``plan_copies`` decide
  the copies, which start at once on the nodes ``plan_copies`` chose.

Simplifications (against the executor and real clusters)
--------------------------------------------------------
- The default check interval is ``max(policy.interval, 1 s)``: Spark checks every 0.1 s, but
  in a job of minute-long tasks a second changes nothing and costs ten times the checks.
- A check that cannot start a copy (no slot free beyond the waiting tasks) is skipped, except
  under Flink, whose check also blocks nodes. ``check`` is a pure query and progress grows
  linearly, so skipping it changes no decision; it is what keeps 100,000 tasks fast.
- No network, no data locality, no start-up cost of an attempt, no records (Spark's
  efficiency test sees no processing rates), one stage.
"""

from __future__ import annotations

import collections
import heapq
import math
import numbers
import random
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Union, overload

import numpy as np

from straggler._records import AttemptEvent
from straggler._scheduling import NodeBlocklist, Situation, choose_node, plan_copies
from straggler.policies import FlinkPolicy, LatePolicy, MantriPolicy, SmallpondPolicy, SparkPolicy

__all__ = ["POLICY_NAMES", "SimulationResult", "resolve_policy", "simulate"]

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


def _count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def _seconds(name: str, value: Any, *, low: float, low_open: bool = False, high: float = math.inf,
             high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    ok = math.isfinite(number) and (number > low if low_open else number >= low) and (
        number < high if high_open else number <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return number


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
) -> SimulationResult:
    """Run one job of ``tasks`` tasks on ``nodes`` nodes in virtual time; see the module's
    docstring for the model.

    ``policy``: None (no speculation), "spark", "spark4", "flink", "smallpond", "late" (each
    with its peer system's defaults, in seconds) or a policy object. ``task_time`` is the median
    task size in seconds on a healthy node (60 s by default: the policies' thresholds, such as
    Flink's 60 s lower bound and smallpond's 180 s probe timeout, are meant for minutes-long
    tasks); ``sigma`` is the lognormal's log-spread, ``shape`` the Pareto tail index (> 1, so
    the mean is finite). ``interval``: seconds between checks (default max(policy.interval, 1)).
    The same arguments and ``seed`` give the same result, events included.
    """
    tasks = _count("tasks", tasks, 1)
    nodes = _count("nodes", nodes, 1)
    slow_nodes = _count("slow_nodes", slow_nodes, 0)
    if slow_nodes > nodes:
        raise ValueError(f"slow_nodes must be <= nodes ({nodes}), got {slow_nodes!r}")
    slow_factor = _seconds("slow_factor", slow_factor, low=1.0)
    name, policy_obj = resolve_policy(policy)
    seed = _count("seed", seed, 0)
    if not isinstance(distribution, str):
        raise TypeError(f"distribution must be 'lognormal' or 'pareto', got {distribution!r}")
    if distribution not in ("lognormal", "pareto"):
        raise ValueError(f"distribution must be 'lognormal' or 'pareto', got {distribution!r}")
    failure_rate = _seconds("failure_rate", failure_rate, low=0.0, high=1.0, high_open=True)
    slots_per_node = _count("slots_per_node", slots_per_node, 1)
    task_time = _seconds("task_time", task_time, low=0.0, low_open=True)
    sigma = _seconds("sigma", sigma, low=0.0)
    shape = _seconds("shape", shape, low=1.0, low_open=True)
    max_failures = _count("max_failures", max_failures, 1)
    if interval is None:
        interval = max(float(policy_obj.interval), 1.0) if policy_obj is not None else 1.0
    else:
        interval = _seconds("interval", interval, low=0.0, low_open=True)

    rng = np.random.default_rng(seed)
    sizes = _task_sizes(rng, tasks, distribution, task_time, sigma, shape)
    slow = tuple(sorted(int(n) for n in rng.choice(nodes, size=slow_nodes, replace=False)))
    # Failures draw from their own stream, so a run without failures draws nothing from it.
    fail_rng = random.Random(seed)
    return _Simulation(
        name, policy_obj, tasks, nodes, slots_per_node, sizes.tolist(), slow, slow_factor,
        failure_rate, fail_rng, max_failures, interval, seed,
    ).run()


class _Simulation:
    """One run. Plain lists indexed by task id and attempt id (the Detector's ids, dense from 0)
    keep the per-event work small; the event heap holds (time, sequence, attempt) with
    attempt -1 for "a blocked node was released"."""

    def __init__(self, name: str, policy: Any, tasks: int, nodes: int, slots_per_node: int,
                 sizes: list[float], slow: tuple[int, ...], slow_factor: float, failure_rate: float,
                 fail_rng: random.Random, max_failures: int, interval: float, seed: int) -> None:
        from straggler._core import Detector

        self.name = name
        self.policy = policy
        self.kind = policy.kind if policy is not None else None
        self.n_tasks = tasks
        self.n_nodes = nodes
        self.slots = nodes * slots_per_node
        self.sizes = sizes
        self.slow = slow
        self.speed = [1.0] * nodes
        for node in slow:
            self.speed[node] = slow_factor
        self.failure_rate = failure_rate
        self.fail_rng = fail_rng
        self.max_failures = max_failures
        self.interval = interval
        self.seed = seed

        self.detector = Detector(policy=policy)
        stage = self.detector.add_stage(num_tasks=tasks, name=_STAGE)
        self.detector.add_tasks(stage, tasks)

        # Slots: node n owns slots n*k .. n*k+k-1; a node is in free_nodes while it has a free slot.
        self.free_slots_of: list[list[int]] = [
            list(range((n + 1) * slots_per_node - 1, n * slots_per_node - 1, -1)) for n in range(nodes)
        ]
        self.free_nodes: dict[int, int] = {n: slots_per_node for n in range(nodes)}
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

    # --- attempts -----------------------------------------------------------------------------

    def start(self, task: int, node: int, now: float, speculative: bool) -> None:
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
        self.log.append(("start", now, task, number, _STAGE, node, speculative))

    def end(self, attempt: int, now: float, outcome: str) -> None:
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
        self.log.append((outcome, now, task, self.a_number[attempt], _STAGE, node, speculative))

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
            self.start(task, node, now, True)
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

    def check(self, now: float) -> None:
        detector = self.detector
        if self.kind in _PROGRESS_KINDS:
            live = self.slot_attempt >= 0
            progress = np.clip((now - self.slot_start[live]) / self.slot_duration[live], 0.0, 1.0)
            detector.heartbeat_many(self.slot_attempt[live], now, progress=progress)
        pending = len(self.pending) + len(self.restarts)
        answer = detector.check(now, pending=pending, slots=self.slots)
        if len(answer) == 0:
            return
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
            if duration > 0:
                self.seq += 1
                heapq.heappush(self.heap, (now + duration, self.seq, -1, True))
        for order in plan.copies:
            if order.restart:
                # Mantri's kill-and-restart: the attempt stops now (its time wasted); the new
                # one starts on the node the plan chose, or waits first in line for a slot.
                self.end(order.copied_attempt, now, "kill")
                self.n_killed += 1
                if order.node is None:
                    self.restarts.append(order.task)
                    continue
            assert order.node is not None  # placed on one of free_nodes
            self.start(order.task, order.node, now, True)
        self.dispatch(now)

    def check_is_useful(self) -> bool:
        # A check whose copies could not start changes nothing (it is a pure query), except
        # Flink's, which also blocks the slow attempts' nodes, and Mantri's, whose restarts need
        # no free slot.
        return self.kind in ("flink", "mantri") or self.n_free > len(self.pending)

    # --- the event loop -----------------------------------------------------------------------

    def run(self) -> SimulationResult:
        heap = self.heap
        interval = self.interval
        checks = self.policy is not None
        step = 1  # the next check is at step * interval (exact multiples: no drift)
        self.dispatch(0.0)
        while True:
            next_event = heap[0][0] if heap else math.inf
            if checks and self.n_running:
                # Never before the events already handled (checks pause while nothing runs).
                check_time = max(step * interval, self.now)
                if check_time < next_event:  # an event at the check's time goes first
                    if self.check_is_useful():
                        self.check(check_time)
                        step += 1
                    else:
                        # Nothing changes until the next event: jump to the first check at or
                        # after it.
                        step = max(step + 1, math.ceil(next_event / interval))
                    continue
            if not heap:
                break
            now, _, attempt, ok = heapq.heappop(heap)
            self.now = now
            if attempt >= 0:
                if not self.a_alive[attempt]:
                    continue  # killed when another attempt of its task won
                self.settle(attempt, now, ok)
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
