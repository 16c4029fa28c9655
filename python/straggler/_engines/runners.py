"""Runner loops: what the thread engine and the pool engine share.

A *runner* takes queued attempts from the ledger and runs them back to back until the ready
queue is empty; at most ``slots`` runners exist at once. Settling an ended attempt and taking
the next share one hold of the ledger's lock; the Future is resolved (its callbacks may submit
again) without it, and a runner leaves only after that, so ``shutdown(wait=True)`` never
returns before every Future is resolved. How one attempt runs is the subclass's ``execute``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import tempfile
import threading
from typing import Any, Callable, Optional

from straggler._context import _enter, _leave
from straggler._engines import EngineBase
from straggler._ledger import Attempt, Task

__all__ = ["RunnerEngine", "call_in_attempt", "current_ledger", "make_staging"]

logger = logging.getLogger("straggler")

# The ledger whose attempts (and Futures' callbacks) this thread runs, if any.
_thread = threading.local()


def current_ledger() -> Any:
    return getattr(_thread, "ledger", None)


def serving(ledger: Any) -> None:
    """Mark this thread as one that runs ``ledger``'s attempts and resolves its Futures."""
    _thread.ledger = ledger


def call_in_attempt(fn: Callable[..., Any], current: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``fn`` with ``current`` as the running attempt: what an engine (maybe in another
    process, then with an ``AttemptContext``) executes for every attempt handed to it."""
    previous = _enter(current)
    try:
        return fn(*args, **kwargs)
    finally:
        _leave(previous)


def make_staging(output: str, prefix: str) -> str:
    """A new, empty staging directory for one execution of an attempt, beside ``output`` (so
    the rename that commits it stays on one filesystem and is atomic)."""
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


class RunnerEngine(EngineBase):
    """Runs attempts in runner loops on ``self.runner_pool`` (a ``ThreadPoolExecutor``)."""

    attempt_type: Callable[..., Attempt] = Attempt
    runner_pool: concurrent.futures.Executor
    # Runners waiting for work (an engine whose runners park counts them under the lock).
    parked = 0
    # Whether ``runner_ready`` can say no (an engine that prepares its runners sets it).
    prepares = False

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.runners = 0
        # Attempts whose thread was abandoned (would not stop): that thread leaves when (if)
        # the attempt's function returns, without settling it again.
        self.abandoned: set[Attempt] = set()

    def spawn(self) -> None:
        """Start one runner (raises RuntimeError if the pool was shut down)."""
        self.runner_pool.submit(self._run)

    def park_locked(self) -> bool:
        """Under the ledger's lock, with nothing to run: wait for work (True) or leave (False).
        The default leaves at once (a pool reuses its threads itself)."""
        return False

    def wake_idle_locked(self, wanted: int) -> int:
        """Under the lock: wake up to ``wanted`` parked runners; how many were woken."""
        return 0

    def wake(self) -> None:
        if self.runners >= self.slots and not self.parked:
            # Every runner is going, and each takes from the queue (and, after it stopped
            # counting, looks at the intake) before it may leave or park: what was just queued
            # will be taken. A stale read only costs the lock.
            return
        ledger = self.ledger
        with ledger.lock:
            waiting = len(ledger.ready) + len(ledger.intake)
            if waiting == 0:
                return
            waiting -= self.wake_idle_locked(waiting)
            wanted = min(self.slots - self.runners, waiting)
            if wanted <= 0:
                return
            self.runners += wanted
            ledger.busy += wanted
        for _ in range(wanted):
            try:
                self.spawn()
            except RuntimeError:
                self._runner_refused()

    def _runner_refused(self) -> None:
        # The pool was shut down under us; the runners already going drain the queue, and if
        # none is left the queued tasks fail rather than wait for ever.
        ledger = self.ledger
        with ledger.changed:
            self.runners -= 1
            ledger.busy -= 1
            failed = ledger.fail_queue_locked() if self.runners == 0 else []
        error = RuntimeError("the engine's thread pool was shut down")
        for task in failed:
            if task.future.set_running_or_notify_cancel():
                task.future.set_exception(error)

    def _run(self) -> None:
        ledger = self.ledger
        lock = ledger.lock
        attempt_type = self.attempt_type
        serving(ledger)
        left_behind: Optional[str] = None
        ended: Optional[tuple[Attempt, Any, Optional[BaseException], float]] = None
        while True:
            follow_up = None
            with lock:
                if ended is not None:
                    if ended[0] in self.abandoned:
                        # Settled when it was abandoned, and a new runner took this one's slot;
                        # what it went on writing is nobody's output.
                        self.abandoned.discard(ended[0])
                        left_behind = ended[0].staging
                        break
                    follow_up = ledger.settle_locked(*ended)
                    ended = None
                # Make ready (start a worker process…) before taking an attempt, so that the
                # attempt's clock does not run while it waits for a place to run.
                prepare = self.prepares and bool(ledger.ready or ledger.intake) and not self.runner_ready()
                taken = None if prepare else ledger.take_locked(attempt_type)
                if taken is None and follow_up is None and not prepare:
                    ledger.busy -= 1
                    if ledger.closed or ledger.busy == 0:
                        ledger.changed.notify_all()  # shutdown and the scheduler wait for busy == 0
                    if self.park_locked():
                        continue  # woken with work: the waker counted it busy again
                    self.runners -= 1
                    if ledger.intake or ledger.ready:
                        # Submitted without the lock after this runner looked: its submitter
                        # may have seen this runner still counted and started none (and work
                        # in the queue is never left without a runner).
                        self.runners += 1
                        ledger.busy += 1
                        continue
                    serving(None)
                    return
                if taken is not None:
                    attempt = taken[0]
                    task = attempt.task
                    # Taken now: the winner clears them from the task once it settles.
                    fn, args, kwargs = task.fn, task.args, task.kwargs
            if follow_up is not None:
                ledger.finish_up(follow_up)
            if prepare:
                self.make_ready()
            if taken is not None:
                ended = self._attempt(attempt, task, fn, args, kwargs)
        if left_behind is not None:
            shutil.rmtree(left_behind, ignore_errors=True)
        serving(None)

    def runner_ready(self) -> bool:
        """Under the ledger's lock: whether this runner can start an attempt at once."""
        return True

    def make_ready(self) -> None:
        """Without the lock: get this runner ready (never raises; if it cannot, the next
        attempt fails with the reason)."""

    def _attempt(self, attempt: Attempt, task: Task, fn: Callable[..., Any], args: tuple, kwargs: dict
                 ) -> tuple[Attempt, Any, Optional[BaseException], float]:
        """Run one attempt: (the attempt, its result, its error or None, when it ended), the
        arguments of its ``settle_locked``."""
        try:
            if task.output is not None:
                attempt.staging = make_staging(task.output, self.ledger.staging_prefix(task, attempt.number))
            result = self.execute(attempt, fn, args, kwargs)
        except BaseException as exc:  # like ThreadPoolExecutor: the task's error goes to its Future
            end = attempt.clock()
            if attempt.staging is not None:
                shutil.rmtree(attempt.staging, ignore_errors=True)  # a failed attempt's output never counts
                attempt.staging = None
            return attempt, None, exc, end
        return attempt, result, None, attempt.clock()

    def execute(self, attempt: Attempt, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError  # pragma: no cover
