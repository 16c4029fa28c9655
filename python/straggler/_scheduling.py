"""Which speculative copies to start, and where: the scheduler's decision, with no threads or clock.

The Detector says which attempts are slow; this module decides what to launch given the
scheduler's situation. The executor calls it from its scheduler thread with wall-clock times,
and a discrete-event simulator can call it with virtual times: the same decision either way.

    plan = plan_copies(check_result, policy=policy, situation=Situation(...))
    plan.copies        # CopyOrder(task, stage, node, copied_attempt, elapsed, threshold,
                       #           restart, priority), in the order to start them
    plan.block_nodes   # Flink: nodes of slow attempts, to block for block_slow_node_duration

What an engine must do with each ``CopyOrder`` (Mantri's orders are the ones that use the
last two fields):

- ``restart=False``: start one more attempt of ``task`` on ``node``; ``copied_attempt``
  keeps running (a speculative copy, every policy).
- ``restart=True`` (MantriPolicy's kill-and-restart): stop ``copied_attempt`` (with the
  engine's stop ladder; the kill is not a failure, and ``Detector.finish(copied_attempt,
  ok=False)`` ends it in the core) and start a new attempt of ``task`` on ``node``. Without
  nodes (``Situation.free_nodes`` None) the new attempt takes the slot the stopped one frees.
  With nodes it takes a free slot on ``node`` and the stopped attempt's slot becomes free; if
  ``node`` is None no other node had room: stop now, and queue the new attempt first, ahead
  of pending originals, for the next free slot on a node the task has not run on.
- ``priority=True``: start it before any pending original attempt (Mantri, or
  ``Situation.copies_first``): the plan has already counted it against ``free_slots``
  without leaving room for ``pending``. ``priority=False``: Spark's order, copies only
  after every pending original has a slot (the plan is then empty while originals wait).

``NodeBlocklist`` keeps Flink's blocked nodes; ``choose_node`` places any attempt (original or
copy) on a node with a free slot, never one the task already ran on, nor a blocked or slow one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Optional, Sequence

__all__ = ["CopyOrder", "NodeBlocklist", "Plan", "Situation", "choose_node", "max_attempts", "plan_copies"]


def max_attempts(policy: Any) -> int:
    """How many attempts of one task may run at once under ``policy`` (copies included).

    Spark copies a task only while exactly one attempt runs (TaskSetManager's
    checkSpeculatableTasks); Flink tops up to max_concurrent_executions; smallpond may copy its
    newest attempt again while older ones run, up to max_retry_count retries; LATE copies a
    task once ("not yet copied"); Mantri duplicates up to its γ = max_restarts extra attempts
    (the Detector stops naming a task once it has started 1 + max_restarts attempts).
    """
    kind = policy.kind
    if kind == "mantri":
        return int(policy.max_restarts) + 1
    if kind == "flink":
        return int(policy.max_concurrent_executions)
    if kind == "smallpond":
        return int(policy.max_retry_count) + 1
    return 2


@dataclass(frozen=True)
class Situation:
    """The scheduler's state at one check, as plain values.

    - pending: original (and retried) attempts waiting for a slot; copies come after them.
    - free_slots: slots with nothing running or queued.
    - slots: all slots (LATE's cap is a fraction of them).
    - attempts: task -> attempts running or queued for it (a queued copy counts as running, so
      a task is not copied twice before its first copy starts).
    - speculative_running: copies running or queued, over all tasks (LATE's cap).
    - free_nodes: node -> free slots on it; None when the engine has no nodes to choose (a
      thread or process pool), and then every copy gets node None (the engine picks).
    - task_nodes: task -> nodes it runs or ran on (a copy never goes there).
    - blocked_nodes: nodes no new attempt may go to (Flink's slow-node blocking).
    - slow_nodes: nodes that get no copies (LATE's slow nodes).
    - copies_first: copies go ahead of pending originals (they may take every free slot).
      False keeps Spark's order (copies only once no original waits); MantriPolicy always
      plans copies first, whatever this says.
    """

    pending: int
    free_slots: int
    slots: int
    attempts: Mapping[int, int]
    speculative_running: int = 0
    free_nodes: Optional[Mapping[int, int]] = None
    task_nodes: Mapping[int, Collection[int]] = field(default_factory=dict)
    blocked_nodes: Collection[int] = frozenset()
    slow_nodes: Collection[int] = frozenset()
    copies_first: bool = False


@dataclass(frozen=True)
class CopyOrder:
    """Start one attempt of ``task`` on ``node`` (None: wherever the engine runs it).

    ``copied_attempt``, ``elapsed`` and ``threshold`` come from the Detector's answer, for the
    log line and the timeline. ``restart``: stop ``copied_attempt`` and start the new attempt
    in its place (Mantri's kill-and-restart; the Detector's ``action`` 1), else it is a copy
    beside it. ``priority``: start it before pending originals (see the module docstring).
    """

    task: int
    stage: int
    node: Optional[int]
    copied_attempt: int
    elapsed: float
    threshold: float
    restart: bool = False
    priority: bool = False


@dataclass(frozen=True)
class Plan:
    copies: tuple[CopyOrder, ...] = ()
    block_nodes: tuple[int, ...] = ()


def choose_node(
    free_nodes: Optional[Mapping[int, int]],
    *,
    avoid: Collection[int] = (),
    blocked: Collection[int] = (),
) -> Optional[int]:
    """The node with the most free slots outside ``avoid`` and ``blocked`` (lowest id on ties).

    Returns None when ``free_nodes`` is None (no nodes to choose) and -1 when no node fits.
    """
    if free_nodes is None:
        return None
    best, best_free = -1, 0
    for node in sorted(free_nodes):
        free = free_nodes[node]
        if free > best_free and node not in avoid and node not in blocked:
            best, best_free = node, free
    return best


def _column(check: Any, name: str) -> Sequence[Any]:
    values = getattr(check, name)
    return values.tolist() if hasattr(values, "tolist") else list(values)


def late_cap(policy: Any, slots: int) -> int:
    """LATE's cap on copies running at once: ``max(min_speculative, floor(cap x slots))``."""
    return max(policy.min_speculative, math.floor(policy.speculative_cap * slots))


def plan_copies(check: Any, *, policy: Any, situation: Situation) -> Plan:
    """The copies to start now, given the Detector's ``check`` answer (most urgent first).

    ``check`` is anything with equal-length sequences ``task``, ``attempt``, ``stage``,
    ``node``, ``elapsed``, ``threshold`` and optionally ``action`` (the Detector's answer;
    no ``action`` means every row is a copy). Copies start only when a slot is free and, unless
    copies go first (MantriPolicy or ``situation.copies_first``), no original attempt is
    pending; within ``max_attempts(policy)`` attempts per task (Flink: all the missing ones at
    once), LATE's cap on running copies, and never on a node the task runs or ran on, nor a
    blocked or (LATE) slow node. A restart (``action`` 1) needs no free slot where the engine
    picks nodes (it reuses the slot it frees); with nodes it needs a free slot elsewhere and
    frees its own.
    """
    s = situation
    tasks = _column(check, "task")
    if not tasks:
        return Plan()
    attempts_cols = _column(check, "attempt")
    stages = _column(check, "stage")
    nodes = _column(check, "node")
    elapsed = _column(check, "elapsed")
    threshold = _column(check, "threshold")
    actions = _column(check, "action") if hasattr(check, "action") else [0] * len(tasks)

    kind = policy.kind
    block: list[int] = []
    if kind == "flink":
        # Flink blocks the slow attempts' nodes whether or not a copy can start now.
        block = sorted({int(n) for n in nodes})
    # Spark's dequeueTask offers speculative tasks only after every pending regular task;
    # Mantri acts ahead of the queue, because a slot freed early speeds the whole job (§5.1).
    first = kind == "mantri" or s.copies_first
    budget = s.free_slots if first else s.free_slots - s.pending
    has_restart = any(int(a) == 1 for a in actions)
    if budget <= 0 and not has_restart:
        return Plan((), tuple(block))
    limit = max_attempts(policy)
    spec_running = s.speculative_running
    free_nodes = dict(s.free_nodes) if s.free_nodes is not None else None
    blocked = set(s.blocked_nodes) | set(block)
    avoid_slow = set(s.slow_nodes) if kind == "late" else set()
    copies: list[CopyOrder] = []
    placed: dict[int, set[int]] = {}
    for i, task in enumerate(tasks):
        task = int(task)
        if int(actions[i]) == 1:
            order = _restart(i, task, stages, attempts_cols, nodes, elapsed, threshold, s,
                             free_nodes, blocked, placed)
            if order is not None:
                copies.append(order)
            continue
        if budget <= 0:
            continue
        wanted = limit - s.attempts.get(task, 0)
        if kind != "flink":
            wanted = min(wanted, 1)  # only Flink starts all the missing attempts at once
        for _ in range(max(wanted, 0)):
            if budget <= 0:
                break
            # LATE: at most max(min_speculative, floor(speculative_cap x slots)) copies run at
            # once, the cap the Detector's check already applied (so the two never disagree).
            if kind == "late" and spec_running >= late_cap(policy, s.slots):
                break
            avoid = set(s.task_nodes.get(task, ())) | placed.get(task, set()) | avoid_slow
            node = choose_node(free_nodes, avoid=avoid, blocked=blocked)
            if node == -1:
                break  # no node may take it now; the next check tries again
            copies.append(
                CopyOrder(task, int(stages[i]), node, int(attempts_cols[i]), float(elapsed[i]),
                          float(threshold[i]), priority=first)
            )
            budget -= 1
            spec_running += 1
            if free_nodes is not None and node is not None:
                free_nodes[node] -= 1
                # Two copies of one task never share a node either.
                placed.setdefault(task, set()).add(node)
    return Plan(tuple(copies), tuple(block))


def _restart(
    i: int,
    task: int,
    stages: Sequence[Any],
    attempts: Sequence[Any],
    nodes: Sequence[Any],
    elapsed: Sequence[Any],
    threshold: Sequence[Any],
    s: Situation,
    free_nodes: Optional[dict[int, int]],
    blocked: set[int],
    placed: dict[int, set[int]],
) -> Optional[CopyOrder]:
    """Mantri's kill-and-restart of row ``i``: with nodes, the new attempt goes to a free slot
    on another node (a restart on the same node meets the same contention), or, when none is
    free, gets node None: it waits first in the queue, ahead of pending originals, for the next
    slot on a node it has not run on. Without nodes it takes the slot it frees."""
    if s.attempts.get(task, 1) > 1:
        return None  # a copy or an earlier restart of it is already running or queued
    node: Optional[int] = None
    if free_nodes is not None:
        avoid = set(s.task_nodes.get(task, ())) | placed.get(task, set()) | {int(nodes[i])}
        node = choose_node(free_nodes, avoid=avoid, blocked=blocked)
        if node == -1:
            node = None  # kill now; the new attempt waits, first in the queue, for a slot
        elif node is not None:
            free_nodes[node] -= 1
            placed.setdefault(task, set()).add(node)
        killed = int(nodes[i])
        if killed in free_nodes:
            free_nodes[killed] += 1
    return CopyOrder(task, int(stages[i]), node, int(attempts[i]), float(elapsed[i]),
                     float(threshold[i]), restart=True, priority=True)


class NodeBlocklist:
    """Flink's blocked slow nodes: a node blocked at ``now`` for ``duration`` takes no new attempt
    until ``now + duration``; blocking it again extends the block."""

    def __init__(self) -> None:
        self._until: dict[int, float] = {}

    def block(self, node: int, now: float, duration: float) -> None:
        until = now + duration
        if until > self._until.get(node, float("-inf")):
            self._until[node] = until

    def blocked(self, now: float) -> frozenset[int]:
        for node in [n for n, until in self._until.items() if until <= now]:
            del self._until[node]
        return frozenset(self._until)
