"""The ledger: the executor's tasks, attempts, ready queue, counters, scheduler inbox and event
log, and the only code that changes them.

Everyone else (the executor's front, the scheduler thread, the engines) reads and changes this
state through the methods here, under ``Ledger.lock``. A method whose name ends in ``_locked``
must be called with the lock held; it never blocks and never calls out of the package, so
that an engine may call it from any thread. Work that must run without the lock (resolving a
Future runs its callbacks, removing a staging directory touches the disk) comes back as a
``FollowUp`` for the caller to pass to ``finish_up`` once the lock is free.

An attempt's life, as the ledger sees it:

    queue_locked ──▶ take_locked ──▶ started_locked ──▶ settle_locked / lose_locked
    (ready queue)    (handed to the   (running: the      (ended: won, failed, killed,
                      engine)          Detector sees it)   lost)

``take_locked(start=True)`` does the first two steps at once (an engine that runs the attempt
in this process knows it starts now). The scheduler inbox receives every task, start and end
in the order they happened; the event log keeps the starts and ends for ``events()``.

A task submitted without options (the common case) does not take the lock: its submitter
appends it to ``intake`` (one atomic step) and whoever holds the lock next admits it (gives it
its id and queues its first attempt) before reading the queue or the counts: a runner taking
work, ``stats()``, shutdown. A submitter that takes no lock never queues behind a runner that
holds it, which on a busy interpreter otherwise makes every lock a hand-off between threads.
Two races are closed by checking after the append: a submitter that finds the ledger closed
withdraws its task unless it was admitted (``refuse_late``), and a runner that leaves or
parks looks at ``intake`` after it stopped counting as going (see ``runners``).

The event log holds rows of plain values (``event_row``), not the attempts: a job's log then
keeps no task or attempt alive once it is settled, and rows of numbers and strings are tuples
the garbage collector stops tracking, so a long log costs the collector nothing (holding the
attempts made the collector's passes over them a quarter of a no-op job's time).
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterator, NamedTuple, Optional

from straggler._context import AttemptContext, AttemptTimeout, TaskOptions
from straggler._future import new_future
from straggler._records import AttemptEvent, ExecutorStats

__all__ = ["Attempt", "FollowUp", "Ledger", "Queued", "StageCounts", "Task", "DEFAULT_STAGE", "STAGING_MARK"]

# The inbox's entry kinds (each entry is a kind followed by its object: a flat list, no tuple
# per entry, so the garbage collector has fewer objects to scan).
TASK, START, END, DROP = "task", "start", "end", "drop"  # DROP: a task ended without a result

# The stage of a task submitted without ``sg.options(stage=...)``.
DEFAULT_STAGE = "default"

# Staging directories are named ``.<output name>.<STAGING_MARK>-<executor>-t<task>a<attempt>-…``
# beside the output, so the rename that commits the winner stays on one filesystem.
STAGING_MARK = "straggler"


class Task:
    __slots__ = (
        "id", "fn", "args", "kwargs", "future", "stage", "options", "output", "done", "failures",
        "lost", "running", "queued", "next_attempt", "det_id", "det_won", "claimed", "counts",
    )

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, stage: str,
                 task_options: Optional[TaskOptions], output: Optional[str]) -> None:
        self.id = -1
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: Future = new_future()
        self.stage = stage
        self.options = task_options
        self.output = output          # the absolute output path, resolved once at submit
        self.done = False             # settled: won, failed for good, or cancelled
        self.failures = 0
        self.lost = 0                 # attempts the engine lost (never failures)
        self.running: list[Attempt] = []
        self.queued = 0               # attempts of it in the ready queue
        self.next_attempt = 1         # attempt numbers handed to retries and copies
        self.det_id = -1              # the Detector's id, set by the scheduler thread
        self.det_won = False          # the Detector was told of its win (scheduler thread only)
        self.claimed = False          # its Future was moved to RUNNING
        self.counts: StageCounts      # its stage's counters, set by ``add_task_locked``


class Attempt:
    """One attempt, and the live link its task sees (``cancelled``, ``beat``, ``clock``): one
    object per attempt, because the executor's cost per task is what a no-op job measures."""

    __slots__ = ("task", "number", "speculative", "start", "end", "outcome", "detector_id",
                 "beat_sent", "cancelled", "beat", "clock", "staging", "timed_out", "restarted", "_context",
                 "why", "__weakref__")

    node = 0  # engines without nodes to choose run everything on node 0
    # The policy's decision behind a copy or a restart, (elapsed, threshold), set by
    # ``take_locked``; None on every other attempt.
    why: Optional[tuple[float, float]]

    def __init__(self, task: Task, number: int, speculative: bool, clock: Callable[[], float]) -> None:
        self.task = task
        self.number = number
        self.speculative = speculative
        self.clock = clock
        self.start = clock()
        self.end = math.nan
        self.outcome = ""             # an Outcome once ended
        self.detector_id = -1
        self.beat_sent: Optional[tuple] = None
        self.cancelled = False
        self.beat: Optional[tuple] = None
        self.staging: Optional[str] = None
        self.timed_out: Optional[AttemptTimeout] = None  # set when the scheduler stops it for time
        self.restarted = False  # stopped by a kill-and-restart (Mantri): its end is no failure
        self._context: Optional[AttemptContext] = None
        self.why = None

    @property
    def _live(self) -> "Attempt":
        return self

    def context(self) -> AttemptContext:
        if self._context is None:
            task = self.task
            self._context = AttemptContext(task.id, self.number, self.speculative, self.node, self.staging, self)
        return self._context


class StageCounts:
    """One stage's share of the executor's counters (``ExecutorStats``'s, per stage)."""

    __slots__ = ("tasks", "attempts", "speculative", "wins", "failures", "killed", "lost", "timeouts",
                 "abandoned", "wasted")

    def __init__(self) -> None:
        self.tasks = self.attempts = self.speculative = self.wins = self.failures = 0
        self.killed = self.lost = self.timeouts = self.abandoned = 0
        self.wasted = 0.0

    def stats(self) -> ExecutorStats:
        return ExecutorStats(tasks=self.tasks, attempts=self.attempts, speculative=self.speculative,
                             speculative_wins=self.wins, failures=self.failures, killed=self.killed,
                             wasted_seconds=self.wasted, lost=self.lost, timeouts=self.timeouts,
                             abandoned=self.abandoned)


class Queued(NamedTuple):
    """One attempt in the ready queue; ``node`` is where the planner wants it (-1: anywhere);
    ``why`` the policy's (elapsed, threshold) for a copy or a restart it asked for."""

    task: Task
    number: int
    speculative: bool
    node: int = -1
    why: Optional[tuple[float, float]] = None


class FollowUp(NamedTuple):
    """What is left to do without the lock once an attempt settled."""

    remove: Optional[str]              # a staging directory to remove
    task: Optional[Task]               # a task whose Future to resolve (None: nothing)
    value: Any = None
    error: Optional[BaseException] = None
    cancel: bool = False               # resolve by cancelling (its caller cancelled it)


def _no_stop(attempt: Attempt) -> None:
    pass


def entry_of(item: Any) -> Queued:
    """A ready-queue item as a ``Queued`` entry (a bare Task is its first attempt)."""
    if item.__class__ is Task:
        return Queued(item, 0, False)
    return item


class Ledger:
    """See the module's docstring. ``max_events`` bounds the event log (None: unbounded;
    0: none kept); counts in ``stats()`` are never bounded."""

    def __init__(self, *, max_failures: int, clock: Callable[[], float], slots: int,
                 max_events: Optional[int], token: str) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)   # work arrived, attempts ended
        self.max_failures = max_failures
        self.clock = clock
        self.slots = slots
        self.token = token                               # names this executor's staging dirs
        self.closed = False
        self.n_tasks = 0
        self.stages: dict[str, Optional[int]] = {}       # name -> num_tasks
        self.stage_counts: dict[str, StageCounts] = {}   # name -> its counters, in first-seen order
        self.outputs: set[str] = set()                   # outputs of tasks not settled yet
        # The ready queue: a task's first attempt is the Task itself (the per-task path makes no
        # entry object); retries and copies are ``Queued`` entries (``entry_of`` reads both).
        self.ready: collections.deque[Any] = collections.deque()
        self.pending = 0          # first attempts and retries in the ready queue
        self.active = 0           # attempts running or queued
        self.spec_active = 0      # copies running or queued
        self.busy = 0             # engine work outstanding (a runner loop, an attempt sent away)
        self.n_attempts = self.n_speculative = self.n_wins = self.n_failures = 0
        self.n_killed = self.n_lost = self.n_timeouts = self.n_abandoned = 0
        # Whether any task (or the executor) set a timeout: the scheduler skips its scan if not.
        self.timeouts = False
        self.timeout: Optional[float] = None            # the executor-wide limits
        self.heartbeat_timeout: Optional[float] = None
        self.wasted = 0.0
        self.inbox: list[Any] = []
        # Tasks submitted without the lock, not admitted yet (see the module's docstring), and
        # whether a submitter may add one: once the default stage is known to have no size
        # (sizes are fixed when a stage is first seen), until the ledger closes.
        self.intake: collections.deque[Task] = collections.deque()
        self.intake_open = False
        self.scheduler_idle = False
        # (kind, attempt) pairs in the order they happened; a bounded deque drops the oldest
        # pairs whole (its length is even).
        self.log: collections.deque[tuple] = collections.deque(maxlen=max_events)
        self.logging = max_events != 0
        # Called under the lock for each attempt that must stop (it lost the race, or its task
        # was cancelled); the engine's hook, which must not block.
        self.stop_attempt: Callable[[Attempt], None] = _no_stop

    # --- tasks ------------------------------------------------------------------------------

    def add_task_locked(self, task: Task, num_tasks: Optional[int]) -> None:
        """Register a submitted task and queue its first attempt. Raises (state unchanged) on
        a closed ledger, a stage size that disagrees, or an output taken by another task."""
        if self.closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self.intake:
            self.admit_locked()  # submitted before this one: ids follow the submission order
        stage = task.stage
        counts = self.stage_counts.get(stage)
        if counts is None or num_tasks is not None or task.output is not None or self.stages[stage] is not None:
            counts = self._add_checked_locked(task, num_tasks)
        self._register_locked(task, counts)
        if self.scheduler_idle:
            self.changed.notify_all()

    def _register_locked(self, task: Task, counts: StageCounts) -> None:
        counts.tasks += 1
        task.counts = counts
        task.id = self.n_tasks
        self.n_tasks += 1
        self.inbox.extend((TASK, task))
        # The first attempt, queued as the task itself (see ``ready``).
        self.ready.append(task)
        task.queued = 1
        self.active += 1
        self.pending += 1

    def admit_locked(self) -> None:
        """Register the tasks in ``intake`` (all of the default stage, which has no size), in
        the order they were submitted."""
        intake = self.intake
        counts = self.stage_counts[DEFAULT_STAGE]
        register = self._register_locked
        while intake:
            register(intake.popleft(), counts)
        if self.scheduler_idle:
            self.changed.notify_all()

    def refuse_late(self, task: Task) -> None:
        """A submitter appended ``task`` to ``intake`` and then found the ledger closed: if
        it was not admitted (before the close), take it back and raise as a closed ledger
        does; if it was, it runs."""
        with self.changed:
            if task.id >= 0:
                return
            try:
                self.intake.remove(task)
            except ValueError:  # pragma: no cover - only the lock's holders take from intake
                pass
            self.changed.notify_all()  # wait_idle may be waiting for the intake to empty
        raise RuntimeError("cannot schedule new futures after shutdown")

    def close_locked(self) -> None:
        """No more tasks: submitters are refused from now on; those already in ``intake``
        are admitted and run."""
        self.closed = True
        self.intake_open = False
        if self.intake:
            self.admit_locked()
        self.changed.notify_all()

    def _add_checked_locked(self, task: Task, num_tasks: Optional[int]) -> StageCounts:
        """``add_task_locked``'s checks for a new stage, a declared size or an output: raises
        with nothing changed, else reserves the output and returns the stage's counters."""
        stage = task.stage
        known = self.stages.get(stage, _UNSET)
        if known is not _UNSET and num_tasks is not None and known != num_tasks:
            raise ValueError(f"num_tasks: stage {stage!r} was declared with num_tasks={known!r}, got {num_tasks!r}")
        size = num_tasks if known is _UNSET or known is None else known
        submitted = 0 if known is _UNSET else self.stage_counts[stage].tasks
        if size is not None and submitted >= size:
            raise ValueError(f"num_tasks: stage {stage!r} was declared with num_tasks={size!r} and has them all")
        output = task.output
        if output is not None:
            self._reserve_output_locked(output)
        if known is _UNSET:
            self.stages[stage] = num_tasks
            self.stage_counts[stage] = StageCounts()
            if stage == DEFAULT_STAGE and num_tasks is None:
                self.intake_open = True  # from now on a task without options needs no lock
        return self.stage_counts[stage]

    def _reserve_output_locked(self, output: str) -> None:
        if output in self.outputs:
            raise ValueError(f"output: another task of this executor already writes {output!r}")
        for other in self.outputs:
            # A commit renames a whole directory: one task's output inside another's would be
            # replaced, or block the rename, whichever commits first.
            if output.startswith(other + os.sep) or other.startswith(output + os.sep):
                raise ValueError(f"output: {output!r} and {other!r} (another task's) are nested")
        if os.path.lexists(output):
            raise OutputExistsError(f"output: {output!r} already exists")
        self.outputs.add(output)

    # --- the ready queue --------------------------------------------------------------------

    def queue_locked(self, task: Task, number: int, *, speculative: bool, front: bool = False,
                     node: int = -1, why: Optional[tuple[float, float]] = None) -> None:
        entry = Queued(task, number, speculative, node, why)
        if front:
            self.ready.appendleft(entry)
        else:
            self.ready.append(entry)
        task.queued += 1
        self.active += 1
        if speculative:
            self.spec_active += 1
        else:
            self.pending += 1
        if self.scheduler_idle:
            self.changed.notify_all()

    def next_number_locked(self, task: Task) -> int:
        number = task.next_attempt
        task.next_attempt += 1
        return number

    def _unqueue_locked(self, entry: Any) -> Queued:
        """Take ``entry`` (a ``ready`` item) off the counts; returns it as a ``Queued``."""
        entry = entry_of(entry)
        entry.task.queued -= 1
        self.active -= 1
        if entry.speculative:
            self.spec_active -= 1
        else:
            self.pending -= 1
        return entry

    def claim_locked(self, task: Task) -> bool:
        """Move the task's Future to RUNNING (as ``ThreadPoolExecutor`` does before a task
        runs); False, and the task settled, if its caller cancelled it first."""
        if task.claimed:
            return True
        if task.done:
            return False
        if not task.future.set_running_or_notify_cancel():
            self.abandon_locked(task)
            return False
        task.claimed = True
        return True

    def take_locked(self, factory: Callable[[Task, int, bool, Callable[[], float]], Attempt] = Attempt,
                    *, start: bool = True) -> Optional[tuple[Attempt, int]]:
        """The next attempt to run, as (attempt, the node the planner chose or -1), or None
        when the ready queue holds nothing runnable. With ``start`` the attempt starts now (it
        runs in this process); otherwise the engine reports its start with ``started_locked``.
        The task's Future is claimed (RUNNING) with its first attempt."""
        if self.intake:
            self.admit_locked()
        ready = self.ready
        while ready:
            entry = ready.popleft()
            if entry.__class__ is Task:  # a first attempt (see ``ready``): the per-task path
                task = entry
                number, speculative, node, why = 0, False, -1, None
                task.queued -= 1
                self.active -= 1
                self.pending -= 1
            else:
                self._unqueue_locked(entry)
                task, number, speculative, node, why = entry
            if task.done:
                continue  # a copy or retry whose task was settled meanwhile
            if not task.claimed:
                if start:
                    # Claim it: its Future moves to RUNNING (as ThreadPoolExecutor's does
                    # before a task runs), unless its caller cancelled it first.
                    if not task.future.set_running_or_notify_cancel():
                        self.abandon_locked(task)
                        continue
                    task.claimed = True
                elif task.future.cancelled():
                    task.done = True
                    self._release_output_locked(task)
                    self.inbox.extend((DROP, task))
                    continue
            # A copy started after its original ended (it failed meanwhile) is a plain retry.
            if speculative and not task.running:
                speculative = False
            attempt = factory(task, number, speculative, self.clock)
            if why is not None:
                attempt.why = why
            task.running.append(attempt)
            self.active += 1
            if start:
                # started_locked(attempt), inlined: this is the per-task path.
                self.n_attempts += 1
                counts = task.counts
                counts.attempts += 1
                if speculative:
                    self.spec_active += 1
                    self.n_speculative += 1
                    counts.speculative += 1
                self.inbox.extend((START, attempt))
                if self.logging:
                    self.log.append(event_row(START, attempt) if why is not None else
                                    ("start", attempt.start, task.id, number, task.stage, attempt.node, speculative))
            elif speculative:
                self.spec_active += 1
            return attempt, node
        return None

    def started_locked(self, attempt: Attempt) -> None:
        """An attempt taken with ``start=False`` runs now (its ``start`` and ``node`` are set).
        Only started attempts count in ``stats()`` and appear in the events."""
        self.n_attempts += 1
        self.n_speculative += attempt.speculative
        counts = attempt.task.counts
        counts.attempts += 1
        counts.speculative += attempt.speculative
        self.inbox.extend((START, attempt))
        if self.logging:
            self.log.append(event_row(START, attempt))

    def drop_locked(self, attempt: Attempt) -> None:
        """An attempt of a settled task that never started (withdrawn from the engine's queue):
        it leaves no trace, as a task cancelled before it ran leaves none."""
        self._detach_locked(attempt)

    def rerun_locked(self, attempt: Attempt, factory: Callable[..., Attempt], at: float) -> Attempt:
        """The engine ran the same attempt again (its worker died; Dask reruns the key): the
        first run ends "lost" at ``at`` and a new record of the same number takes its place."""
        task = attempt.task
        rerun = factory(task, attempt.number, attempt.speculative, self.clock)
        rerun.cancelled = attempt.cancelled
        why = attempt.why
        if why is not None:
            rerun.why = why
        # The lost run was last seen alive at its last heartbeat (the rerun starts only once the
        # engine noticed the death): that is the time it wasted.
        beat = attempt.beat
        self._end_locked(attempt, beat[0] if beat is not None else at, "lost")
        self.n_lost += 1
        task.counts.lost += 1
        task.running[task.running.index(attempt)] = rerun
        return rerun

    def _end_locked(self, attempt: Attempt, at: float, outcome: str) -> None:
        beat = attempt.beat
        start = attempt.start
        if beat is not None and beat[0] > at:
            at = beat[0]
        attempt.end = at if at > start else start
        attempt.outcome = outcome
        if outcome != "finish":
            wasted = attempt.end - start
            self.wasted += wasted
            attempt.task.counts.wasted += wasted
        self.inbox.extend((END, attempt))
        if self.logging:
            self.log.append(event_row(END, attempt))

    def withdraw_locked(self) -> list[Task]:
        """``shutdown(cancel_futures=True)``: empty the ready queue of first attempts (their
        tasks never started) and return those tasks, marked done, for the caller to cancel
        their Futures outside the lock. Retries and copies stay queued."""
        if self.intake:
            self.admit_locked()
        kept: collections.deque[Any] = collections.deque()
        withdrawn = []
        for item in self.ready:
            entry = entry_of(item)
            task = entry.task
            if entry.number == 0 and not entry.speculative and not task.claimed and not task.running:
                self._unqueue_locked(entry)
                if not task.done:
                    task.done = True
                    self._release_output_locked(task)
                    self.inbox.extend((DROP, task))
                    withdrawn.append(task)
            else:
                kept.append(item)
        self.ready = kept
        return withdrawn

    def fail_queue_locked(self) -> list[Task]:
        """The engine can take no more work: empty the ready queue; the tasks it leaves with no
        attempt running are returned, marked done, to fail outside the lock."""
        if self.intake:
            self.admit_locked()
        failed = []
        while self.ready:
            task = self._unqueue_locked(self.ready.popleft()).task
            if not task.done and not task.running:
                task.done = True
                self._release_output_locked(task)
                self.inbox.extend((DROP, task))
                failed.append(task)
        self.changed.notify_all()
        return failed

    # --- ends -------------------------------------------------------------------------------

    def _detach_locked(self, attempt: Attempt) -> None:
        task = attempt.task
        task.running.remove(attempt)
        self.active -= 1
        if attempt.speculative:
            self.spec_active -= 1

    def settle_locked(self, attempt: Attempt, value: Any, error: Optional[BaseException],
                      end: Optional[float] = None) -> Optional[FollowUp]:
        """The attempt ended with ``value`` or ``error``: what that means for its task (the
        first success wins and commits its output; a failure is retried or, at
        ``max_failures``, fails the task; anything after the task is done is a kill)."""
        task = attempt.task
        staging = attempt.staging
        if error is None and staging is None and not self.timeouts and not task.done and attempt.timed_out is None:
            # The common win (no output to commit, no limit to check): the per-task path.
            task.running.remove(attempt)
            self.active -= 1
            if attempt.speculative:
                self.spec_active -= 1
                self.n_wins += 1
                task.counts.wins += 1
            task.done = True
            if task.output is not None:
                self.outputs.discard(task.output)
            if task.running:
                self.stop_others_locked(task, attempt)
            # _end_locked(attempt, at, "finish"), inlined.
            at = self.clock() if end is None else end
            beat = attempt.beat
            if beat is not None and beat[0] > at:
                at = beat[0]
            start = attempt.start
            attempt.end = at = at if at > start else start
            attempt.outcome = "finish"
            self.inbox.extend((END, attempt))
            if self.logging:
                self.log.append(("finish", at, task.id, attempt.number, task.stage, attempt.node, attempt.speculative))
            return _new_tuple(FollowUp, (None, task, value, None, False))
        committed = False
        resolve: Optional[Task] = None
        self._detach_locked(attempt)
        outcome = ""
        if attempt.timed_out is None and self.timeouts and not task.done:
            # Ended past its timeout before the scheduler's scan saw it (a timeout shorter than
            # the check interval): as timed out as one the scan stopped.
            timeout = self.limits(task)[0]
            finished = self.clock() if end is None else end
            if timeout is not None and finished - attempt.start > timeout:
                attempt.timed_out = AttemptTimeout(task.id, attempt.number, "timeout", timeout)
        if attempt.timed_out is not None and not task.done:
            # Stopped for running too long (or going silent): whatever it raised or returned
            # after the limit, its end is the timeout, a failure.
            error = attempt.timed_out
            value = None
            self.n_timeouts += 1
            task.counts.timeouts += 1
        if task.done or (attempt.restarted and error is not None):
            # Lost the race (or its task was cancelled), or stopped to be restarted (its new
            # attempt is already queued): a kill, never a failure.
            outcome = "kill"
        elif error is None:
            if staging is not None:
                try:
                    os.rename(staging, task.output)  # type: ignore[arg-type]
                    committed = True
                except OSError as exc:
                    error = exc
            if error is None:
                outcome = "finish"
                task.done = True
                self.n_wins += attempt.speculative
                task.counts.wins += attempt.speculative
                self.outputs.discard(task.output)
                if task.running:
                    self.stop_others_locked(task, attempt)
                resolve = task
        if not outcome:
            outcome = "fail"
            task.failures += 1
            self.n_failures += 1
            task.counts.failures += 1
            if task.failures >= self.max_failures:
                task.done = True
                self._release_output_locked(task)
                self.stop_others_locked(task, attempt)
                resolve = task
            elif not task.running and not task.queued:
                self.queue_locked(task, self.next_number_locked(task), speculative=False, front=True)
        if outcome == "kill":
            self.n_killed += 1
            task.counts.killed += 1
        self._end_locked(attempt, self.clock() if end is None else end, outcome)
        if resolve is not None and outcome == "fail":
            self.inbox.extend((DROP, task))  # failed for good: it leaves its stage's size
        remove = staging if staging is not None and not committed else None
        if remove is None and resolve is None:
            return None
        if outcome == "finish":
            return _new_tuple(FollowUp, (remove, resolve, value, None, False))
        return _new_tuple(FollowUp, (remove, resolve, None, error, False))

    def lose_locked(self, attempt: Attempt, error: BaseException, end: Optional[float] = None) -> Optional[FollowUp]:
        """The engine lost the attempt without a verdict (its worker died): requeue the task as
        a new attempt without counting a failure, unless it lost ``max_failures`` attempts this
        way (a task that kills every worker it touches must not loop for ever)."""
        task = attempt.task
        self._detach_locked(attempt)
        self.n_lost += 1
        task.counts.lost += 1
        self._end_locked(attempt, self.clock() if end is None else end, "lost")
        resolve = None
        if not task.done:
            task.lost += 1
            if task.lost >= self.max_failures:
                task.done = True
                self._release_output_locked(task)
                self.inbox.extend((DROP, task))
                self.stop_others_locked(task, attempt)
                resolve = task
            elif not task.running and not task.queued:
                self.queue_locked(task, self.next_number_locked(task), speculative=False, front=True)
        if attempt.staging is None and resolve is None:
            return None
        return FollowUp(attempt.staging, resolve, None, error)

    def restart_locked(self, attempt: Attempt, node: int = -1, why: Optional[tuple[float, float]] = None) -> int:
        """Kill-and-restart (Mantri): stop ``attempt`` (a kill, not a failure) and queue a new
        attempt of its task first in line; returns the new attempt's number, or -1 if the
        attempt already ended or is being stopped."""
        task = attempt.task
        if attempt.cancelled or attempt.outcome or task.done:
            return -1
        attempt.restarted = True
        attempt.cancelled = True
        number = self.next_number_locked(task)
        self.queue_locked(task, number, speculative=False, front=True, node=node, why=why)
        try:
            self.stop_attempt(attempt)
        except Exception:  # pragma: no cover - the engine's hook must not break the scheduler
            import logging

            logging.getLogger("straggler").exception("straggler: could not stop attempt %d of task %d",
                                                     attempt.number, task.id)
        return number

    def limits(self, task: Task) -> tuple[Optional[float], Optional[float]]:
        """(timeout, heartbeat_timeout) of the task: its own options, else the executor's."""
        timeout, silence = self.timeout, self.heartbeat_timeout
        task_options = task.options
        if task_options is not None:
            if task_options.timeout is not None:
                timeout = task_options.timeout
            if task_options.heartbeat_timeout is not None:
                silence = task_options.heartbeat_timeout
        return timeout, silence

    def time_out_locked(self, attempt: Attempt, limit: str, seconds: float) -> None:
        """Stop an attempt that ran past ``limit`` ("timeout" or "heartbeat_timeout"): it ends
        as a failure with ``AttemptTimeout`` (retried up to ``max_failures``). The task's other
        attempts run on."""
        if attempt.cancelled or attempt.outcome:
            return
        attempt.timed_out = AttemptTimeout(attempt.task.id, attempt.number, limit, seconds)
        attempt.cancelled = True
        try:
            self.stop_attempt(attempt)
        except Exception:  # pragma: no cover - the engine's hook must not break the scheduler
            import logging

            logging.getLogger("straggler").exception("straggler: could not stop attempt %d of task %d",
                                                     attempt.number, attempt.task.id)

    def abandon_attempt_locked(self, attempt: Attempt) -> Optional[FollowUp]:
        """The engine gave up stopping an attempt (its thread would not stop): settle it now,
        as the stop meant it (a kill, or a timeout failure); its late result is never read."""
        self.n_abandoned += 1
        attempt.task.counts.abandoned += 1
        error = attempt.timed_out or _Abandoned(f"task {attempt.task.id}: attempt {attempt.number} would not stop")
        return self.settle_locked(attempt, None, error)

    def stop_others_locked(self, task: Task, winner: Optional[Attempt]) -> None:
        for other in task.running:
            if other is not winner and not other.cancelled:
                other.cancelled = True
                try:
                    self.stop_attempt(other)
                except Exception:  # pragma: no cover - the engine's hook must not break a settle
                    import logging

                    logging.getLogger("straggler").exception("straggler: could not stop attempt %d of task %d",
                                                             other.number, task.id)

    def abandon_locked(self, task: Task) -> None:
        """The task ends without a result (its caller cancelled it): stop its attempts."""
        task.done = True
        self._release_output_locked(task)
        self.inbox.extend((DROP, task))
        self.stop_others_locked(task, None)

    def _release_output_locked(self, task: Task) -> None:
        if task.output is not None:
            self.outputs.discard(task.output)

    def finish_up(self, follow_up: FollowUp) -> None:
        """Run a settle's follow-up without the lock: remove a losing staging directory, then
        resolve the Future (its callbacks may submit again)."""
        if follow_up.remove is not None:
            shutil.rmtree(follow_up.remove, ignore_errors=True)
        task = follow_up.task
        if task is None:
            return
        future = task.future
        if follow_up.error is None:
            future.set_result(follow_up.value)
        else:
            future.set_exception(follow_up.error)
        # Drop what the task held, the Future too: the caller holds it (with the result), and
        # the event log may keep the task. Nothing reads them once the task is done (every
        # reader checks ``done`` first, under the lock).
        task.fn = task.args = task.kwargs = task.future = None  # type: ignore[assignment]

    def wait_idle(self) -> None:
        """Block until the ready queue is empty and no engine work is outstanding."""
        with self.changed:
            while self.busy or self.ready or self.intake:
                self.changed.wait()

    # --- staging directories ---------------------------------------------------------------

    def staging_prefix(self, task: Task, number: int) -> str:
        """The name every staging directory of this attempt starts with (beside the output)."""
        name = os.path.basename(task.output or "")
        return f".{name}.{STAGING_MARK}-{self.token}-t{task.id}a{number}-"

    # --- reading ----------------------------------------------------------------------------

    def stats_locked(self) -> ExecutorStats:
        if self.intake:
            self.admit_locked()
        return ExecutorStats(
            tasks=self.n_tasks,
            attempts=self.n_attempts,
            speculative=self.n_speculative,
            speculative_wins=self.n_wins,
            failures=self.n_failures,
            killed=self.n_killed,
            wasted_seconds=self.wasted,
            lost=self.n_lost,
            timeouts=self.n_timeouts,
            abandoned=self.n_abandoned,
        )

    def stage_stats_locked(self) -> dict[str, ExecutorStats]:
        if self.intake:
            self.admit_locked()
        return {stage: counts.stats() for stage, counts in self.stage_counts.items()}

    def events(self) -> list[AttemptEvent]:
        with self.lock:
            rows = list(self.log)
        return [AttemptEvent(*row) for row in rows]


def event_row(kind: str, attempt: Attempt) -> tuple:
    """A START or END of ``attempt`` as the fields of its ``AttemptEvent``, in a plain tuple.
    Called when it is logged: the fields read are set by then and never change after."""
    task = attempt.task
    if kind == START:
        why = attempt.why
        if why is None:
            return ("start", attempt.start, task.id, attempt.number, task.stage, attempt.node, attempt.speculative)
        return ("start", attempt.start, task.id, attempt.number, task.stage, attempt.node, attempt.speculative,
                why[0], why[1], None if attempt.speculative else "restart")
    outcome = attempt.outcome
    if outcome == "fail":
        timed_out = attempt.timed_out
        if timed_out is not None:
            return (outcome, attempt.end, task.id, attempt.number, task.stage, attempt.node, attempt.speculative,
                    None, None, timed_out.limit, timed_out.seconds)
    elif outcome == "kill" and attempt.restarted:
        return (outcome, attempt.end, task.id, attempt.number, task.stage, attempt.node, attempt.speculative,
                None, None, "restart")
    return (outcome, attempt.end, task.id, attempt.number, task.stage, attempt.node, attempt.speculative)


def event_records(entries: list) -> Iterator[AttemptEvent]:
    """The inbox's (kind, object) pairs as records (START and END entries; others skipped)."""
    pairs = iter(entries)
    for kind, item in zip(pairs, pairs):
        if kind == START or kind == END:
            yield AttemptEvent(*event_row(kind, item))


_UNSET: Any = object()
_new_tuple = tuple.__new__  # a NamedTuple made without its Python-level __new__


class OutputExistsError(FileExistsError, ValueError):
    """``output=`` names a path that exists: a bad argument (``ValueError``) about a file
    (``FileExistsError``), caught by either."""


class _Abandoned(Exception):
    """The error an abandoned attempt settles with (it only reaches a Future if the task had no
    other attempt and was cancelled, which resolves the Future otherwise)."""
