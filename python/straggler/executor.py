"""``SpeculativeExecutor``: a ``concurrent.futures.Executor`` that copies its stragglers.

The executor is a front over three parts, each with one job:

    submit ─▶ Ledger (_ledger.py): tasks, attempts, ready queue, counters, inbox, event log
                 ▲  │ take / settle / lose                  ▲ inbox, heartbeats
                 │  ▼                                       │
              engine (_engines/): runs attempts         Scheduler (_scheduler.py): one thread
              threads │ processes │            that owns the Detector, checks every
              any Executor │ Dask                    ``interval`` and queues copies

- ``submit`` records the task in the ledger, which queues its first attempt, and wakes the
  engine. The engine takes attempts from the ledger and reports their ends; the ledger settles
  each at once: the first success resolves the Future (and commits its output), the other
  attempts of the task are told to stop, a failure is retried or, at ``max_failures``, fails
  the Future.
- The scheduler thread feeds the ledger's inbox and the heartbeats to the Detector, calls
  ``check`` and queues the copies ``plan_copies`` (``_scheduling.py``) chooses.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
import uuid
import weakref
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator, Optional

from straggler._checks import integer, real
from straggler._context import TaskOptions, _WithOptions
from straggler._engines import EngineBase, resolve
from straggler._engines.runners import current_ledger
from straggler._export import write_events
from straggler._future import cancel_for_good
from straggler._ledger import DEFAULT_STAGE, Ledger, Task
from straggler._records import AttemptEvent, ExecutorStats
from straggler._scheduler import Scheduler
from straggler._scheduling import NodeBlocklist
from straggler.policies import SparkPolicy

__all__ = ["AttemptEvent", "ExecutorStats", "SpeculativeExecutor"]

_KINDS = ("spark", "flink", "smallpond", "late", "mantri")
# The event log's default bound: two events per attempt, about 100 bytes each while kept.
_MAX_EVENTS = 100_000
# The longest interval, timeout or grace accepted: a year, far below threading.TIMEOUT_MAX.
_LONGEST = 365 * 86400.0


class SpeculativeExecutor(concurrent.futures.Executor):
    """Run tasks on an engine and start speculative copies of the slow ones, as ``policy``
    decides.

    ``executor`` (the engine): None or ``"threads"`` — a private pool of ``max_workers``
    threads; ``"processes"`` — ``max_workers`` worker processes of our own (spawn; a
    ``multiprocessing`` context instead of the name chooses another start method), each killable
    on its own; any ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``…; a
    ``ThreadPoolExecutor`` passed in runs the attempts in its own threads and is left running);
    a ``distributed.Client`` (or its ``get_executor()``): attempts then run on the Dask
    cluster, a node is a worker and the slots are the workers' threads (``max_workers`` does
    not apply); or ``"ray"`` (or the ``ray`` module): each attempt is a Ray task on the running
    Ray runtime (a local one is started if none runs), a node is a Ray node and the slots are
    the nodes' CPUs (``max_workers`` does not apply).

    ``policy=None`` runs the same machinery without speculation (the baseline). ``interval`` is
    the scheduler's check period (default: the policy's own interval; 0.1 s without a policy).
    A task whose attempts fail ``max_failures`` times gets the last exception.
    ``max_events`` bounds ``events()`` to the newest events (None: keep all; 0: keep none);
    ``stats()`` counts everything regardless.

    ``timeout`` (seconds of wall time per attempt) and ``heartbeat_timeout`` (no
    ``heartbeat()`` for that long means hung) stop an attempt and count it as a failure; a task
    whose last allowed attempt timed out gets ``AttemptTimeout``. ``sg.options`` sets them per
    task. An attempt is stopped by a ladder: ``heartbeat()`` raises ``AttemptCancelled`` at
    once; on the thread engine, after ``stop_grace`` seconds the exception is raised in its
    thread (at its next Python bytecode: a blocking C call delays it), and after another
    ``stop_grace`` a thread still running is abandoned, its slot given to a new thread; on the
    process engine its worker is terminated after ``stop_grace``, killed after another, and
    replaced; on Ray, ``ray.cancel`` after ``stop_grace`` and ``ray.cancel(force=True)`` after
    another (see ``current_attempt()`` for every engine).
    ``clock`` (default ``time.monotonic``) is injectable for tests.

    ``on_event`` (default None): a callable that receives each ``AttemptEvent`` (every start
    and end, exactly the records ``events()`` returns, in the same order, none dropped by
    ``max_events``). It runs in the scheduler thread ("straggler-scheduler"), never in a
    task's thread and never under the executor's lock, in batches: once per ``interval`` the
    scheduler hands over the events since the last batch, before it checks for stragglers (a
    slow callback delays the checks; queue the events elsewhere for heavy work). What it
    raises is logged (logger "straggler", with the traceback) and the next event is delivered
    as if nothing happened. After ``shutdown(wait=True)`` returns every event was delivered.
    It must not call ``shutdown(wait=True)`` itself.
    """

    def __init__(
        self,
        executor: Any = None,
        *,
        max_workers: Optional[int] = None,
        policy: Any = SparkPolicy(),  # noqa: B008 (frozen: one shared default is safe)
        interval: Optional[float] = None,
        max_failures: int = 4,
        max_events: Optional[int] = _MAX_EVENTS,
        timeout: Optional[float] = None,
        heartbeat_timeout: Optional[float] = None,
        stop_grace: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_event: Optional[Callable[[AttemptEvent], Any]] = None,
    ) -> None:
        if policy is not None and (isinstance(policy, type) or getattr(policy, "kind", None) not in _KINDS):
            raise TypeError(
                "policy must be a SparkPolicy, FlinkPolicy, SmallpondPolicy, LatePolicy, MantriPolicy or None, "
                f"got {policy!r}"
            )
        # Every wait of ours goes through threading, which refuses waits past TIMEOUT_MAX
        # (about 292 years): bound each duration well below it.
        if interval is None:
            interval = real("interval", policy.interval if policy is not None else 0.1, low=0.0, low_open=True,
                            high=_LONGEST)
        else:
            interval = real("interval", interval, low=0.0, low_open=True, high=_LONGEST)
        max_failures = integer("max_failures", max_failures, low=1)
        if max_events is not None:
            max_events = integer("max_events", max_events, low=0, high=sys.maxsize // 2)
        timeout = None if timeout is None else real("timeout", timeout, low=0.0, low_open=True, high=_LONGEST)
        if heartbeat_timeout is not None:
            heartbeat_timeout = real("heartbeat_timeout", heartbeat_timeout, low=0.0, low_open=True, high=_LONGEST)
        stop_grace = real("stop_grace", stop_grace, low=0.0, high=_LONGEST)
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable or None, got {on_event!r}")
        engine: EngineBase = resolve(executor, max_workers)  # validates executor and max_workers

        self._policy = policy
        self._interval = float(interval)
        self._engine = engine
        self._ledger = ledger = Ledger(max_failures=max_failures, clock=clock, slots=engine.slots,
                                       max_events=max_events, token=uuid.uuid4().hex[:8])
        ledger.timeouts = timeout is not None or heartbeat_timeout is not None
        ledger.timeout, ledger.heartbeat_timeout = timeout, heartbeat_timeout
        blocklist = NodeBlocklist()
        engine.stop_grace = stop_grace
        engine.bind(ledger, blocklist, self._interval)
        self._scheduler = Scheduler(ledger, engine, policy, self._interval, blocklist, on_event)
        self._scheduler.start()
        # Dropped without shutdown(): let the work finish, then the threads end (as
        # ThreadPoolExecutor does); nothing of ours keeps a reference to the front.
        self._finalizer = weakref.finalize(self, _close_ledger, ledger)
        _live_schedulers.add(self._scheduler)

    # --- the concurrent.futures.Executor API -----------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        task_options: Optional[TaskOptions] = None
        if isinstance(fn, _WithOptions):
            task_options, fn = fn.options, fn.fn
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        ledger = self._ledger
        if task_options is None and ledger.intake_open:
            # The per-task path: no lock (see the ledger's docstring on ``intake``).
            task = Task(fn, args, kwargs, DEFAULT_STAGE, None, None)
            future = task.future
            ledger.intake.append(task)
            if ledger.closed:
                ledger.refuse_late(task)  # raises unless it was admitted before the close
            self._engine.wake()
            return future
        stage = DEFAULT_STAGE
        output = None
        num_tasks = None
        if task_options is not None:
            if task_options.stage is not None:
                stage = task_options.stage
            num_tasks = task_options.num_tasks
            if task_options.output is not None:
                # Resolved once, here, through symlinks: a later chdir must not move where the
                # output lands, and two names of one directory must be seen as one.
                output = os.path.realpath(os.path.abspath(os.fspath(task_options.output)))
            if task_options.timeout is not None or task_options.heartbeat_timeout is not None:
                self._ledger.timeouts = True
        task = Task(fn, args, kwargs, stage, task_options, output)  # outside the lock: a Future is not free
        future = task.future  # the task drops it once resolved, which may be before we return
        with ledger.lock:
            ledger.add_task_locked(task, num_tasks)
        self._engine.wake()
        return future

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: Optional[float] = None,
            chunksize: int = 1, progress: bool = False) -> Iterator[Any]:
        """Like ``Executor.map``; ``progress=True`` shows a tqdm bar of the finished tasks."""
        end_time = None if timeout is None else timeout + time.monotonic()
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(futures))
            bar_lock = threading.Lock()

            def advance(_: Future) -> None:
                with bar_lock:
                    bar.update(1)

            for future in futures:
                future.add_done_callback(advance)

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:
                    future = futures.pop()
                    try:
                        if end_time is None:
                            yield future.result()
                        else:
                            yield future.result(end_time - time.monotonic())
                    finally:
                        future.cancel()  # a no-op once done; stops the rest on error or close
            finally:
                for future in futures:
                    future.cancel()
                if bar is not None:
                    bar.close()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        ledger = self._ledger
        withdrawn: list[Task] = []
        with ledger.changed:
            ledger.close_locked()
            if cancel_futures:
                withdrawn = ledger.withdraw_locked()
        # Out of the queue, no engine can start them; cancel outside the lock because
        # Future.cancel() runs the callbacks.
        for task in withdrawn:
            cancel_for_good(task.future)
            task.fn = task.args = task.kwargs = None  # type: ignore[assignment]
        if cancel_futures:
            self._engine.cancel_unstarted()
        if wait:
            if current_ledger() is ledger:
                # In a task or a done-callback of this executor: waiting for the work to end
                # would wait for itself (ThreadPoolExecutor refuses this too).
                raise RuntimeError("shutdown(wait=True) from inside one of this executor's tasks or callbacks "
                                   "would wait for itself; the executor is shut down, use wait=False")
            ledger.wait_idle()
            self._scheduler.thread.join()
            self._engine.close(wait=True)
        # With wait=False the scheduler thread closes the engine once the work is done: a copy
        # or retry may still need a runner until then.

    # --- introspection ---------------------------------------------------------------------

    def stats(self, stage: Optional[str] = None) -> ExecutorStats:
        """The counts over the executor's life so far (see ``ExecutorStats``); with ``stage``,
        those of that stage's tasks only (a stage no task was submitted to is a ``KeyError``).
        The stages' counts add up to the executor's."""
        with self._ledger.lock:
            if stage is None:
                return self._ledger.stats_locked()
            if self._ledger.intake:
                self._ledger.admit_locked()
            counts = self._ledger.stage_counts.get(stage) if isinstance(stage, str) else None
            if counts is None:
                if not isinstance(stage, str):
                    raise TypeError(f"stage must be a str or None, got {stage!r}")
                raise KeyError(f"stage: no task was submitted to stage {stage!r}")
            return counts.stats()

    def stage_stats(self) -> dict[str, ExecutorStats]:
        """``stats(stage)`` of every stage, in the order the stages were first used (the
        stage of tasks submitted without ``sg.options(stage=...)`` is "default")."""
        with self._ledger.lock:
            return self._ledger.stage_stats_locked()

    def events(self) -> list[AttemptEvent]:
        """The attempts' starts and ends, in the order they happened (the newest
        ``max_events`` of them)."""
        return self._ledger.events()

    def write_events(self, path: "str | os.PathLike[str]", format: str = "jsonl") -> None:
        """Write ``events()`` to ``path``: ``format="jsonl"``, straggler's versioned JSON-lines
        log (``straggler.read_events`` reads it back), or ``"chrome"``, a trace Perfetto and
        ``chrome://tracing`` open. See ``straggler.write_events``."""
        write_events(self.events(), path, format)

    @property
    def policy(self) -> Any:
        return self._policy

    @property
    def interval(self) -> float:
        return self._interval


# At interpreter exit, the work already submitted is finished first, as ThreadPoolExecutor does
# (our runner threads are daemons, so that an abandoned one never blocks the exit).
_live_schedulers: "weakref.WeakSet[Scheduler]" = weakref.WeakSet()


def _finish_at_exit() -> None:
    # Before multiprocessing's own exit hook: our engines' threads that end and join worker
    # processes must be done by then, or two threads would reap one process.
    for scheduler in list(_live_schedulers):
        ledger = scheduler.ledger
        _close_ledger(ledger)
        ledger.wait_idle()
        scheduler.thread.join()
        try:
            scheduler.engine.close(wait=True)
        except Exception:  # pragma: no cover - at exit, nothing to report to
            pass


threading._register_atexit(_finish_at_exit)  # type: ignore[attr-defined]
# A forked child (a worker of the process engine, or any fork) owns none of these executors:
# at its exit it must not wait for their work, which runs in the parent.
os.register_at_fork(after_in_child=_live_schedulers.clear)


def _close_ledger(ledger: Ledger) -> None:
    with ledger.changed:
        ledger.close_locked()
