"""The thread engine (the default, ``"threads"``): attempts run in this process's threads.

A runner is a loop in one thread that calls each attempt's function directly, with no hop
through another thread per task. Its threads are our own daemon threads, or those of a
``ThreadPoolExecutor`` the user passed (then left running).

Stopping an attempt (a loser, a timed-out attempt, a task cancelled) is a ladder:
1. at once, the cancel flag: its next ``heartbeat()`` raises ``AttemptCancelled``;
2. after ``stop_grace`` seconds, ``AttemptCancelled`` raised in its thread (``_interrupt``),
   which lands at the thread's next Python bytecode (a blocking C call delays it);
3. after another ``stop_grace``, a thread still in the attempt is abandoned: the attempt is
   settled as the stop meant it, a new runner takes the slot, and the old thread leaves when
   (if) the function returns; its result is dropped. Our threads are daemons, so an abandoned
   one never keeps ``shutdown()`` waiting nor the interpreter from exiting. A user's pool
   cannot give its thread back: there step 3 only logs.

A task's ``sg.options(cpus=, gpus=, memory=)`` are ignored here: every attempt takes one slot.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from straggler._context import AttemptCancelled
from straggler._engines._interrupt import Guard
from straggler._engines.runners import RunnerEngine
from straggler._ledger import Attempt

__all__ = ["ThreadEngine"]

logger = logging.getLogger("straggler")


class ThreadEngine(RunnerEngine):
    def __init__(self, slots: int, pool: Optional[ThreadPoolExecutor] = None) -> None:
        super().__init__(slots)
        self.own_threads = pool is None
        if pool is not None:
            self.runner_pool = pool
        self.guard = Guard()
        # The per-task path: ``execute`` is the guard's call itself, one frame fewer.
        self.execute = self.guard.call_in_attempt  # type: ignore[method-assign]
        self.names = itertools.count()
        self.order = itertools.count()  # ties in the ladder's heap never compare attempts
        self.closed = False
        # The ladder's pending steps: (when, sequence, attempt, step).
        self.steps: list[tuple[float, int, Attempt, int]] = []
        self.steps_changed = threading.Condition(threading.Lock())
        self.stopper: Optional[threading.Thread] = None

    # A runner with nothing to do parks for a while instead of ending, so that a job submitted
    # one task at a time does not start a thread per task.
    IDLE = 5.0

    def bind(self, ledger: Any, blocklist: Any, interval: float) -> None:
        super().bind(ledger, blocklist, interval)
        self.work = threading.Condition(ledger.lock)
        self.parked = 0     # runners waiting in park_locked
        self.wakeups = 0    # wake-ups owed to parked runners (see park_locked)
        self.live_threads: set[threading.Thread] = set()  # runner threads, less abandoned ones

    def park_locked(self) -> bool:
        if not self.own_threads or self.closed:
            return False
        ledger = self.ledger
        self.parked += 1
        if not ledger.intake:  # else: submitted without the lock after this runner looked
            self.work.wait(self.IDLE)
        self.parked -= 1
        # Woken by ``wake_idle_locked`` means a wake-up is owed, not that ``wait`` said so: a
        # notify that lands as the wait times out reports a timeout, and the wake-up it
        # carried would be lost (and a runner counted twice). Whichever parked runner looks
        # first takes an owed wake-up; the work it was for is taken by a runner either way.
        if self.wakeups:
            self.wakeups -= 1
            woken = True
        else:
            woken = bool(ledger.intake)
        if woken and not self.closed:
            ledger.busy += 1
            return True
        return False

    def wake_idle_locked(self, wanted: int) -> int:
        woken = min(self.parked - self.wakeups, wanted)
        if woken > 0:
            self.wakeups += woken
            self.work.notify(woken)
            return woken
        return 0

    def spawn(self) -> None:
        if not self.own_threads:
            super().spawn()
            return
        if self.closed:
            raise RuntimeError("the thread engine was closed")
        thread = threading.Thread(target=self._own_run, name=f"straggler-worker-{next(self.names)}", daemon=True)
        with self.ledger.lock:
            self.live_threads.add(thread)
        thread.start()

    def _own_run(self) -> None:
        try:
            self._run()
        finally:
            with self.ledger.lock:
                self.live_threads.discard(threading.current_thread())

    def execute(self, attempt: Attempt, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return self.guard.call_in_attempt(attempt, fn, args, kwargs)  # pragma: no cover - see __init__

    # --- the stop ladder --------------------------------------------------------------------

    def stop_attempt(self, attempt: Attempt) -> None:
        """Under the ledger's lock: step 1 (the flag) is set; schedule step 2."""
        self._schedule(attempt, 2)

    def _schedule(self, attempt: Attempt, step: int) -> None:
        with self.steps_changed:
            heapq.heappush(self.steps, (time.monotonic() + self.stop_grace, next(self.order), attempt, step))
            if self.stopper is None:
                self.stopper = threading.Thread(target=self._stop_loop, name="straggler-stopper", daemon=True)
                self.stopper.start()
            self.steps_changed.notify()

    def _stop_loop(self) -> None:
        while True:
            with self.steps_changed:
                while True:
                    if self.closed and not self.steps:
                        return
                    now = time.monotonic()
                    if self.steps and self.steps[0][0] <= now:
                        _, _, attempt, step = heapq.heappop(self.steps)
                        break
                    self.steps_changed.wait(None if not self.steps else self.steps[0][0] - now)
            try:
                if step == 2:
                    self._interrupt(attempt)
                else:
                    self._abandon(attempt)
            except Exception:  # pragma: no cover - this thread must not die
                logger.exception("straggler: stopping attempt %d of task %d failed", attempt.number, attempt.task.id)

    def _interrupt(self, attempt: Attempt) -> None:
        if attempt.outcome or not self.guard.running(attempt):
            return  # ended (or ending) on its own
        self.guard.interrupt(attempt, AttemptCancelled)
        self._schedule(attempt, 3)

    def _abandon(self, attempt: Attempt) -> None:
        ledger = self.ledger
        with ledger.changed:
            if attempt.outcome or not self.guard.running(attempt):
                return
            if not self.own_threads:
                logger.warning("straggler: attempt %d of task %d does not stop; its thread belongs to the "
                               "ThreadPoolExecutor passed in and stays busy", attempt.number, attempt.task.id)
                return
            self.abandoned.add(attempt)
            stuck = self.guard.inside.get(id(attempt))
            self.live_threads = {t for t in self.live_threads if t.ident != stuck}  # never joined
            follow_up = ledger.abandon_attempt_locked(attempt)
            self.runners -= 1
            ledger.busy -= 1
            ledger.changed.notify_all()
        logger.warning("straggler: abandoned attempt %d of task %d: its thread did not stop within %g s",
                       attempt.number, attempt.task.id, 2 * self.stop_grace)
        if follow_up is not None:
            ledger.finish_up(follow_up)
        self.wake()  # a new runner for the slot, if work waits

    def close(self, wait: bool) -> None:
        ledger = getattr(self, "ledger", None)
        runners: list[threading.Thread] = []
        if ledger is not None:
            with ledger.lock:
                self.closed = True
                self.work.notify_all()  # parked runners leave
                runners = list(self.live_threads)
        if wait:
            for thread in runners:
                if thread is not threading.current_thread():
                    thread.join()
        with self.steps_changed:
            self.closed = True
            # Once the work is done, the steps left are for attempts that ended or were
            # abandoned: nothing is left to stop.
            self.steps.clear()
            self.steps_changed.notify()
            stopper = self.stopper
        if wait and stopper is not None and stopper is not threading.current_thread():
            stopper.join()
