"""``SpeculativeExecutor``: a ``concurrent.futures.Executor`` that copies its stragglers.

How it runs:

- ``submit`` queues the task's first attempt in a ready queue; up to ``max_workers`` *runners*
  pull attempts from it. On a ``ThreadPoolExecutor`` engine a runner is a loop inside one of
  the engine's threads that runs attempts back to back (no hop through the scheduler per task);
  on any other engine (a ``ProcessPoolExecutor``…) a runner is one of our own driver threads
  that hands each attempt to the engine and waits for it.
- An attempt that ends settles its task at once, in the runner: the first success resolves
  the Future (and commits its output), the other attempts of the task are told to stop, a
  failure is retried or, at ``max_failures``, fails the Future.
- One scheduler thread owns the Detector. Runners only append to its inbox (task added,
  attempt started, attempt ended) and write heartbeats into their attempt's slot; every
  ``interval`` the scheduler feeds the inbox and the heartbeats to the Detector, calls
  ``check`` and queues the copies ``plan_copies`` (``_scheduling.py``) chooses.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Optional

from straggler._context import AttemptCancelled, AttemptContext, TaskOptions, _enter, _leave, _WithOptions
from straggler._records import AttemptEvent, ExecutorStats
from straggler._scheduling import Situation, plan_copies
from straggler.policies import SparkPolicy

__all__ = ["AttemptEvent", "ExecutorStats", "SpeculativeExecutor"]

logger = logging.getLogger("straggler")
logger.addHandler(logging.NullHandler())

_KINDS = ("spark", "flink", "smallpond", "late")
_UNKNOWN: Any = object()
_DEFAULT_STAGE = "default"


class _Task:
    __slots__ = (
        "id", "fn", "args", "kwargs", "future", "stage", "options", "done", "failures",
        "running", "queued", "next_attempt", "det_id",
    )

    def __init__(self, task_id: int, fn: Callable[..., Any], args: tuple, kwargs: dict,
                 stage: str, task_options: Optional[TaskOptions]) -> None:
        self.id = task_id
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: Future = Future()
        self.stage = stage
        self.options = task_options
        self.done = False           # settled: won, failed for good, or cancelled
        self.failures = 0
        self.running: list[_Attempt] = []
        self.queued = 0             # attempts of it in the ready queue
        self.next_attempt = 1       # attempt numbers handed to retries and copies
        self.det_id = -1            # the Detector's id, set by the scheduler thread


class _Attempt:
    """One attempt, and the live link its task sees (``cancelled``, ``beat``, ``clock``): one
    object per attempt, because the executor's cost per task is what a no-op job measures."""

    __slots__ = ("task", "number", "speculative", "start", "end", "outcome", "engine_future",
                 "detector_id", "beat_sent", "cancelled", "beat", "clock", "staging", "_context")

    node = 0  # thread and process pools have no nodes to choose from

    def __init__(self, task: _Task, number: int, speculative: bool, clock: Callable[[], float]) -> None:
        self.task = task
        self.number = number
        self.speculative = speculative
        self.clock = clock
        self.start = clock()
        self.end = math.nan
        self.outcome = ""           # "finish" | "fail" | "kill" once ended
        self.engine_future: Optional[Future] = None
        self.detector_id = -1
        self.beat_sent: Optional[tuple] = None
        self.cancelled = False
        self.beat: Optional[tuple] = None
        self.staging: Optional[str] = None
        self._context: Optional[AttemptContext] = None

    @property
    def _live(self) -> "_Attempt":
        return self

    def context(self) -> AttemptContext:
        if self._context is None:
            task = self.task
            self._context = AttemptContext(task.id, self.number, self.speculative, self.node, self.staging, self)
        return self._context


class _DaskAttempt(_Attempt):
    """An attempt handed to Dask: it has a key, a Dask future, and a node once it reports its
    start (``started``); ``pinned`` is the node a copy or retry was sent to (-1: Dask chose)."""

    __slots__ = ("node", "key", "dask_future", "pinned", "started", "address")

    def __init__(self, task: _Task, number: int, speculative: bool, clock: Callable[[], float]) -> None:
        super().__init__(task, number, speculative, clock)
        self.node = -1
        self.key = ""
        self.dask_future: Any = None
        self.pinned = -1
        self.started = False
        self.address = ""


# The scheduler's inbox entries (each followed by its object; see SpeculativeExecutor._inbox).
_TASK, _START, _END = "task", "start", "end"

# One queued attempt: (task, attempt number, speculative).
_Entry = tuple


def _call_in_attempt(fn: Callable[..., Any], current: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``fn`` with ``current`` as the running attempt; what an engine (maybe in another
    process, then with an ``AttemptContext``) executes for every attempt handed to it."""
    previous = _enter(current)
    try:
        return fn(*args, **kwargs)
    finally:
        _leave(previous)


class SpeculativeExecutor(concurrent.futures.Executor):
    """Run tasks on ``executor`` (a private ``ThreadPoolExecutor(max_workers)`` by default) and
    start speculative copies of the slow ones, as ``policy`` decides.

    ``executor`` may also be a ``distributed.Client`` (or its ``get_executor()``): attempts then
    run on the Dask cluster, a node is a worker, and the slots are the workers' threads (see
    ``straggler._dask``). ``max_workers`` does not apply there.

    ``policy=None`` runs the same machinery without speculation (the baseline). ``interval`` is
    the scheduler's check period (default: the policy's own interval; 0.1 s without a policy).
    A task whose attempts fail ``max_failures`` times gets the last exception.
    ``clock`` (default ``time.monotonic``) is injectable for tests.
    """

    def __init__(
        self,
        executor: Optional[concurrent.futures.Executor] = None,
        *,
        max_workers: Optional[int] = None,
        policy: Any = SparkPolicy(),  # noqa: B008 (frozen: one shared default is safe)
        interval: Optional[float] = None,
        max_failures: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from straggler import _dask

        dask_client = None if executor is None else _dask.client_of(executor)
        if dask_client is not None and max_workers is not None:
            raise ValueError(
                f"max_workers: a Dask cluster's slots are its workers' threads; got max_workers={max_workers!r}"
            )
        if executor is not None and dask_client is None and not isinstance(executor, concurrent.futures.Executor):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor, a distributed.Client or None, got {executor!r}"
            )
        if max_workers is not None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise TypeError(f"max_workers must be an int or None, got {max_workers!r}")
            if max_workers < 1:
                raise ValueError(f"max_workers must be >= 1, got {max_workers!r}")
        if policy is not None and getattr(policy, "kind", None) not in _KINDS:
            raise TypeError(
                f"policy must be a SparkPolicy, FlinkPolicy, SmallpondPolicy, LatePolicy or None, got {policy!r}"
            )
        if interval is None:
            interval = float(policy.interval) if policy is not None else 0.1
        else:
            if isinstance(interval, bool) or not isinstance(interval, (int, float)):
                raise TypeError(f"interval must be a number of seconds or None, got {interval!r}")
            if not (math.isfinite(interval) and interval > 0):
                raise ValueError(f"interval must be a finite number of seconds > 0, got {interval!r}")
        if isinstance(max_failures, bool) or not isinstance(max_failures, int):
            raise TypeError(f"max_failures must be an int, got {max_failures!r}")
        if max_failures < 1:
            raise ValueError(f"max_failures must be >= 1, got {max_failures!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")

        if dask_client is not None:
            slots = 1  # the Dask engine counts the workers' threads below
            engine: Any = dask_client[0]
        elif executor is None:
            slots = max_workers if max_workers is not None else min(32, (os.cpu_count() or 1) + 4)
            engine = ThreadPoolExecutor(slots, thread_name_prefix="straggler-worker")
        else:
            engine = executor
            engine_workers = getattr(executor, "_max_workers", None)
            if max_workers is not None:
                slots = max_workers
            elif isinstance(engine_workers, int) and engine_workers > 0:
                slots = engine_workers
            else:
                raise ValueError(
                    f"max_workers: cannot tell how many workers {type(executor).__name__} has; pass max_workers"
                )
        self._engine = engine
        self._own_engine = executor is None
        # A ThreadPoolExecutor runs our runner loops in its own threads; any other engine gets
        # one attempt at a time from a driver thread of ours (it may run it in another process).
        self._in_process = isinstance(engine, ThreadPoolExecutor)
        self._drivers = (
            None if self._in_process or dask_client is not None
            else ThreadPoolExecutor(slots, thread_name_prefix="straggler-driver")
        )
        self._slots = slots
        self._policy = policy
        self._interval = float(interval)
        self._max_failures = max_failures
        self._clock = clock

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)   # runners ended / work arrived
        self._shutdown = False
        self._n_tasks = 0          # tasks submitted (their ids are 0, 1, ...)
        self._stages: dict[str, Optional[int]] = {}       # name -> num_tasks
        self._outputs: set[str] = set()
        self._ready: collections.deque[_Entry] = collections.deque()
        self._pending = 0          # first attempts and retries in the ready queue
        self._active = 0           # attempts running or queued
        self._spec_active = 0      # copies running or queued
        self._runners = 0
        # The attempts in the order they started and ended: an attempt's first entry is its
        # start, its second its end (no tuple per entry: the log lives as long as the executor,
        # and every object in it is one more for the garbage collector to scan).
        # AttemptEvents are built when asked for.
        self._log: list[_Attempt] = []
        self._n_attempts = self._n_speculative = self._n_wins = self._n_failures = self._n_killed = 0
        self._n_lost = 0
        self._wasted = 0.0
        # The scheduler's inbox, in the order they happened (appended under the lock): pairs of
        # entries, _TASK then a _Task, or _START / _END then an _Attempt. Flat, not a tuple per
        # event: fewer objects for the garbage collector to count and scan.
        self._inbox: list[Any] = []
        self._scheduler_idle = False
        # Built last: it reads the cluster's workers into _slots and starts its event thread.
        self._dask = None if dask_client is None else _dask.DaskEngine(self, *dask_client)
        self._scheduler = threading.Thread(target=self._schedule_loop, name="straggler-scheduler", daemon=True)
        self._scheduler.start()

    # --- the concurrent.futures.Executor API -----------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        task_options: Optional[TaskOptions] = None
        if isinstance(fn, _WithOptions):
            task_options, fn = fn.options, fn.fn
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        stage = _DEFAULT_STAGE
        output = None
        num_tasks = None
        if task_options is not None:
            stage = task_options.stage if task_options.stage is not None else _DEFAULT_STAGE
            num_tasks = task_options.num_tasks
            if task_options.output is not None:
                output = os.path.abspath(os.fspath(task_options.output))
        task = _Task(-1, fn, args, kwargs, stage, task_options)  # outside the lock: a Future is not free
        future = task.future  # the task drops it once resolved, which may be before we return
        start_runner = False
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            known = self._stages.get(stage, _UNKNOWN)
            if known is _UNKNOWN:
                self._stages[stage] = num_tasks
            elif num_tasks is not None and known != num_tasks:
                raise ValueError(f"num_tasks: stage {stage!r} was declared with num_tasks={known!r}, got {num_tasks!r}")
            if output is not None:
                if output in self._outputs:
                    raise ValueError(f"output: another task of this executor already writes {output!r}")
                if os.path.lexists(output):
                    raise FileExistsError(f"output: {output!r} already exists")
                self._outputs.add(output)
            task.id = self._n_tasks
            self._n_tasks += 1
            self._inbox.extend((_TASK, task))
            # _queue_locked(task, 0, speculative=False), inlined: this is the per-task path.
            self._ready.append((task, 0, False))
            task.queued = 1
            self._active += 1
            self._pending += 1
            if self._scheduler_idle:
                self._changed.notify_all()
            if self._runners < self._slots and self._dask is None:
                self._runners += 1
                start_runner = True
        if start_runner:
            self._start_runners(1)
        elif self._dask is not None:
            self._dask.dispatch()
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
        unstarted: list[Future] = []
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                kept: collections.deque[_Entry] = collections.deque()
                for entry in self._ready:
                    task, number, speculative = entry
                    # A first attempt still queued means the task never started; retries and
                    # copies belong to running tasks and stay.
                    if number == 0 and not speculative:
                        self._unqueue_locked(task, speculative)
                        task.done = True
                        unstarted.append(task.future)
                    else:
                        kept.append(entry)
                self._ready = kept
            self._changed.notify_all()
        # Out of the queue, no runner can start them; cancel outside the lock because
        # Future.cancel() runs the callbacks.
        for future in unstarted:
            future.cancel()
        if cancel_futures and self._dask is not None:
            self._dask.cancel_unstarted()
        if wait:
            with self._changed:
                while self._runners or self._ready:
                    self._changed.wait()
            self._scheduler.join()
            if self._drivers is not None:
                self._drivers.shutdown(wait=True)
            if self._own_engine:
                self._engine.shutdown(wait=True)
        # With wait=False the scheduler thread shuts our engine down once the work is done: a
        # copy or retry may still need a new runner until then.

    # --- introspection ---------------------------------------------------------------------

    def stats(self) -> ExecutorStats:
        with self._lock:
            return ExecutorStats(
                tasks=self._n_tasks,
                attempts=self._n_attempts,
                speculative=self._n_speculative,
                speculative_wins=self._n_wins,
                failures=self._n_failures,
                killed=self._n_killed,
                wasted_seconds=self._wasted,
                lost=self._n_lost,
            )

    def events(self) -> list[AttemptEvent]:
        """The attempts' starts and ends so far, in the order they happened."""
        with self._lock:
            log = list(self._log)
        events = []
        started: set[_Attempt] = set()
        for attempt in log:
            if attempt in started:
                events.append(AttemptEvent(attempt.outcome, attempt.end, attempt.task.id, attempt.number,
                                           attempt.task.stage, attempt.node, attempt.speculative))
            else:
                started.add(attempt)
                events.append(AttemptEvent("start", attempt.start, attempt.task.id, attempt.number,
                                           attempt.task.stage, attempt.node, attempt.speculative))
        return events

    @property
    def policy(self) -> Any:
        return self._policy

    @property
    def interval(self) -> float:
        return self._interval

    # --- the ready queue and the runners ------------------------------------------------------

    def _queue_locked(self, task: _Task, number: int, *, speculative: bool, front: bool = False) -> None:
        entry = (task, number, speculative)
        if front:
            self._ready.appendleft(entry)
        else:
            self._ready.append(entry)
        task.queued += 1
        self._active += 1
        if speculative:
            self._spec_active += 1
        else:
            self._pending += 1
        if self._scheduler_idle:
            self._changed.notify_all()

    def _claim_runners_locked(self) -> int:
        """How many new runners the ready queue needs; counted as started at once."""
        wanted = min(self._slots - self._runners, len(self._ready))
        if wanted <= 0:
            return 0
        self._runners += wanted
        return wanted

    def _start_runners(self, count: int) -> None:
        pool = self._engine if self._drivers is None else self._drivers
        for _ in range(count):
            try:
                pool.submit(self._run)
            except RuntimeError:
                # The engine was shut down under us; the runners already going drain the queue.
                with self._changed:
                    self._runners -= 1
                    orphaned = self._runners == 0
                    self._changed.notify_all()
                if orphaned:
                    self._fail_queue(RuntimeError(f"the engine {self._engine!r} was shut down"))

    def _fail_queue(self, error: BaseException) -> None:
        failed = []
        with self._changed:
            while self._ready:
                task, number, speculative = self._ready.popleft()
                self._unqueue_locked(task, speculative)
                if not task.done:
                    task.done = True
                    failed.append(task.future)
            self._changed.notify_all()
        for future in failed:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)

    def _unqueue_locked(self, task: _Task, speculative: bool) -> None:
        task.queued -= 1
        self._active -= 1
        if speculative:
            self._spec_active -= 1
        else:
            self._pending -= 1

    def _run(self) -> None:
        """A runner: run queued attempts until the queue is empty.

        Settling an attempt and taking the next one share one hold of the lock; the Future is
        resolved (its callbacks may submit) outside it, and the runner leaves only after that,
        so ``shutdown(wait=True)`` never returns before every Future is resolved.
        """
        lock = self._lock
        ended: Optional[tuple[_Attempt, Any, Optional[BaseException]]] = None
        while True:
            follow_up = None
            with lock:
                if ended is not None:
                    follow_up = self._settle_locked(*ended)
                    ended = None
                attempt = self._next_locked()
                if attempt is None and follow_up is None:
                    self._runners -= 1
                    self._changed.notify_all()
                    return
                if attempt is not None:
                    # Taken now: the winner clears them from the task once it settles.
                    task = attempt.task
                    fn, args, kwargs = task.fn, task.args, task.kwargs
            if follow_up is not None:
                self._follow_up(follow_up)
            if attempt is not None:
                ended = (attempt, *self._execute(attempt, fn, args, kwargs))

    def _next_locked(self) -> Optional[_Attempt]:
        ready = self._ready
        while ready:
            task, number, speculative = ready.popleft()
            task.queued -= 1
            self._active -= 1
            if speculative:
                self._spec_active -= 1
            else:
                self._pending -= 1
            if task.done:
                continue  # a copy or retry whose task was settled meanwhile
            if number == 0 and not task.future.set_running_or_notify_cancel():
                task.done = True  # cancelled by its caller before it started
                continue
            # A copy started after its original ended (it failed meanwhile) is a plain retry.
            speculative = speculative and bool(task.running)
            attempt = _Attempt(task, number, speculative, self._clock)
            task.running.append(attempt)
            self._active += 1
            if speculative:
                self._spec_active += 1
                self._n_speculative += 1
            self._n_attempts += 1
            self._inbox.extend((_START, attempt))
            self._log.append(attempt)
            return attempt
        return None

    # --- one attempt ----------------------------------------------------------------------------

    def _execute(self, attempt: _Attempt, fn: Callable[..., Any], args: tuple, kwargs: dict
                 ) -> tuple[Any, Optional[BaseException]]:
        """Run one attempt; returns its result and its error (None if it returned)."""
        task = attempt.task
        result: Any = None
        error: Optional[BaseException] = None
        try:
            if task.options is not None and task.options.output is not None:
                attempt.staging = self._make_staging(task.options.output, task.id, attempt.number)
            if self._drivers is None:
                result = _call_in_attempt(fn, attempt, args, kwargs)
            else:
                engine_future = self._engine.submit(_call_in_attempt, fn, attempt.context(), args, kwargs)
                attempt.engine_future = engine_future
                if attempt.cancelled:
                    engine_future.cancel()
                result = engine_future.result()
        except concurrent.futures.CancelledError:
            error = AttemptCancelled(f"task {task.id}: another attempt finished first")
        except BaseException as exc:  # like ThreadPoolExecutor: the task's error goes to its Future
            error = exc
        attempt.end = self._clock()
        if error is not None and attempt.staging is not None:
            shutil.rmtree(attempt.staging, ignore_errors=True)  # a failed attempt's output never counts
            attempt.staging = None
        return result, error

    @staticmethod
    def _make_staging(output: str, task_id: int, number: int) -> str:
        output = os.path.abspath(os.fspath(output))
        parent, name = os.path.split(output)
        os.makedirs(parent, exist_ok=True)
        # Beside the output, so the final rename stays on one filesystem and is atomic.
        return tempfile.mkdtemp(prefix=f".{name}.straggler-t{task_id}a{number}-", dir=parent)

    def _settle_locked(self, attempt: _Attempt, result: Any, error: Optional[BaseException]) -> Optional[tuple]:
        """Decide what the ended attempt means for its task. Returns what is left to do outside
        the lock (remove a losing staging directory, resolve the Future), or None."""
        task = attempt.task
        staging = attempt.staging
        committed = False
        resolve = None
        task.running.remove(attempt)
        self._active -= 1
        if attempt.speculative:
            self._spec_active -= 1
        if task.done:
            attempt.outcome = "kill"  # lost the race: its result or error is dropped
        elif error is None:
            if staging is not None:
                try:
                    os.rename(staging, os.path.abspath(os.fspath(task.options.output)))
                    committed = True
                except OSError as exc:
                    error = exc
            if error is None:
                attempt.outcome = "finish"
                task.done = True
                self._n_wins += attempt.speculative
                if task.running:
                    self._stop_others_locked(task)
                resolve = (task, result, None)
        if not attempt.outcome:
            attempt.outcome = "fail"
            task.failures += 1
            self._n_failures += 1
            if task.failures >= self._max_failures:
                task.done = True
                self._stop_others_locked(task)
                resolve = (task, None, error)
            elif not task.running and not task.queued:
                number = task.next_attempt
                task.next_attempt += 1
                self._queue_locked(task, number, speculative=False, front=True)
        if attempt.outcome == "kill":
            self._n_killed += 1
        if attempt.outcome != "finish":
            self._wasted += attempt.end - attempt.start
        self._inbox.extend((_END, attempt))
        self._log.append(attempt)
        if staging is not None and not committed:
            return (staging, resolve)
        if resolve is not None:
            return (None, resolve)
        return None

    @staticmethod
    def _follow_up(follow_up: tuple) -> None:
        staging, resolve = follow_up
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if resolve is not None:
            # Outside the lock: the Future runs its callbacks, which may submit again.
            task, value, error = resolve
            future = task.future
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
            # Drop what the task held, the Future too: the caller holds it (with the result),
            # and the events log keeps the task as long as the executor lives. Nothing reads
            # it once the task is done (every reader checks ``done`` first, under the lock).
            task.fn = task.args = task.kwargs = task.future = None  # type: ignore[assignment]

    def _stop_others_locked(self, task: _Task) -> None:
        for other in task.running:
            other.cancelled = True
            if other.engine_future is not None:
                other.engine_future.cancel()  # only helps before it started; running ones run on
            if self._dask is not None:
                self._dask.stop_locked(other)

    # --- the scheduler thread ---------------------------------------------------------------

    def _schedule_loop(self) -> None:
        from straggler._core import Detector

        # policy=None still feeds a Detector (one that never speculates): the baseline pays
        # for the same machinery as the speculative runs it is compared with.
        feed = _DetectorFeed(Detector(policy=self._policy))
        try:
            while True:
                with self._changed:
                    # Drain and check once per interval, however often runners notify (they
                    # end and submit at task rate); with nothing running or queued, sleep until
                    # work arrives, then give it one interval before the first check.
                    deadline = None
                    while True:
                        finished = self._shutdown and not self._runners and not self._ready
                        if finished:
                            break
                        if not self._active and not self._inbox:
                            self._scheduler_idle = True
                            self._changed.wait()
                            self._scheduler_idle = False
                            continue
                        now = time.monotonic()
                        if deadline is None:
                            deadline = now + self._interval
                        elif now >= deadline:
                            break
                        self._changed.wait(deadline - now)
                    inbox, self._inbox = self._inbox, []
                feed.drain(inbox)
                if finished:
                    break
                if feed.running:
                    self._check(feed)
        except BaseException:  # pragma: no cover - a bug here must not pass silently
            logger.exception("straggler scheduler stopped; no more speculative copies")
            raise
        if self._own_engine:
            self._engine.shutdown(wait=False)
        if self._drivers is not None:
            self._drivers.shutdown(wait=False)
        if self._dask is not None:
            self._dask.close()

    def _check(self, feed: "_DetectorFeed") -> None:
        dask = self._dask
        if dask is not None:
            dask.refresh_workers()
        feed.send_heartbeats()
        now = self._clock()
        with self._lock:
            # On Dask, originals handed to the cluster but not started yet still wait for a slot.
            pending = self._pending if dask is None else self._pending + dask.unstarted_originals
            slots = self._slots
            relocated = dask is not None and dask.relocate_locked(now)
        if relocated:
            dask.dispatch()  # the copies wait for the next check, which sees these placed
            return
        answer = feed.detector.check(now, pending=pending, slots=slots)
        if len(answer.task) == 0 or self._policy is None:
            return
        with self._lock:
            attempts = {}
            det_tasks = answer.task.tolist()
            for det_task in det_tasks:
                task = feed.tasks[det_task]
                attempts[det_task] = len(task.running) + task.queued
            if dask is None:
                # Thread and process pools have no nodes to choose, so Flink's node blocking
                # and LATE's slow nodes have nothing to act on here.
                situation = Situation(
                    pending=self._pending,
                    free_slots=self._slots - self._active,
                    slots=self._slots,
                    attempts=attempts,
                    speculative_running=self._spec_active,
                )
            else:
                situation = Situation(
                    slots=self._slots,
                    attempts=attempts,
                    speculative_running=self._spec_active,
                    **dask.situation_locked(det_tasks, feed, now),
                )
            plan = plan_copies(answer, policy=self._policy, situation=situation)
            if dask is not None and plan.block_nodes:
                for node in plan.block_nodes:
                    dask.blocklist.block(node, now, self._policy.block_slow_node_duration)
            started = []
            for order in plan.copies:
                task = feed.tasks[order.task]
                if task.done:
                    continue
                number = task.next_attempt
                task.next_attempt += 1
                self._queue_locked(task, number, speculative=True)
                if dask is not None and order.node is not None:
                    dask.placement[(task.id, number)] = order.node
                started.append((task, number, order))
            start = self._claim_runners_locked() if dask is None else 0
        for task, number, order in started:
            logger.info(
                "task %d of stage %s ran %.3g s > threshold %.3g s; starting copy (attempt %d)%s",
                task.id, task.stage, order.elapsed, order.threshold, number,
                "" if dask is None or order.node is None else f" on {dask.addresses[order.node]}",
            )
        if dask is not None:
            dask.dispatch()
        else:
            self._start_runners(start)


class _DetectorFeed:
    """The scheduler thread's view of the Detector: registers stages and tasks, starts and ends
    attempts in the order the runners reported them (batching runs of registrations and of
    starts), and batches heartbeats."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.stages: dict[str, int] = {}
        self.tasks: list[_Task] = []            # by Detector task id
        self.running: dict[int, _Attempt] = {}  # Detector attempt id -> attempt

    def drain(self, inbox: list) -> None:
        """Apply the inbox to the Detector in three batched calls per run: ``add_tasks`` per
        run of like registrations, then ``start_many``, then ``finish_many``.

        Starts and ends of different tasks commute (no Detector state read by one is written by
        the other), so they are gathered over the whole inbox; only a start of a task with an
        end still unsent (a retry, or a copy of a task whose attempt just failed) must see that
        end first (else the Detector would count it as a copy), and forces a flush.
        """
        import numpy as np

        detector = self.detector
        registrations: list[_Task] = []   # a run of registrations with one key
        registration_key: Any = None
        starts: list[_Attempt] = []
        ends: list[_Attempt] = []
        ended_tasks: set[_Task] = set()

        def flush_registrations() -> None:
            if registrations:
                stage, input_bytes, speculatable = registration_key
                ids = detector.add_tasks(stage, len(registrations), input_bytes=input_bytes, speculatable=speculatable)
                for task, det_id in zip(registrations, ids.tolist()):
                    task.det_id = det_id
                self.tasks.extend(registrations)
                registrations.clear()

        def flush() -> None:
            flush_registrations()
            if starts:
                n = len(starts)
                ids = detector.start_many(
                    np.fromiter([a.task.det_id for a in starts], np.int64, n),
                    np.fromiter([a.start for a in starts], np.float64, n),
                    nodes=np.fromiter([a.node for a in starts], np.int64, n),
                )
                running = self.running
                for attempt, detector_id in zip(starts, ids.tolist()):
                    attempt.detector_id = detector_id
                    running[detector_id] = attempt
                starts.clear()
            if ends:
                self._finish(ends)
                ends.clear()
                ended_tasks.clear()

        entries = iter(inbox)
        for kind, item in zip(entries, entries):  # (kind, object) pairs
            if kind == _START:
                if item.task in ended_tasks:
                    flush()
                starts.append(item)
            elif kind == _END:
                ends.append(item)
                ended_tasks.add(item.task)
            else:
                key = self._task_key(item)
                if key != registration_key:
                    flush_registrations()
                    registration_key = key
                registrations.append(item)
        flush()

    def _finish(self, ends: list[_Attempt]) -> None:
        """``finish_many`` over ended attempts: one call for those whose last heartbeat carried
        records (the Detector's stage rate uses them) and one for the others."""
        import numpy as np

        running = self.running
        plain: list[_Attempt] = []
        counted: list[_Attempt] = []
        for attempt in ends:
            if attempt.detector_id < 0:
                continue  # never started in the engine (a Dask attempt withdrawn from its queue)
            del running[attempt.detector_id]
            beat = attempt.beat
            if beat is None or beat[2] is None:
                plain.append(attempt)
            else:
                counted.append(attempt)
        for rows in (plain, counted):
            if not rows:
                continue
            n = len(rows)
            ok = [a.outcome == "finish" for a in rows]
            self.detector.finish_many(
                np.fromiter([a.detector_id for a in rows], np.int64, n),
                np.fromiter([a.end for a in rows], np.float64, n),
                ok=None if all(ok) else ok,
                records=np.fromiter([a.beat[2] for a in rows], np.float64, n) if rows is counted else None,
            )

    def _task_key(self, task: _Task) -> tuple:
        stage = self.stages.get(task.stage)
        task_options = task.options
        if stage is None:
            num_tasks = task_options.num_tasks if task_options is not None else None
            stage = self.detector.add_stage(num_tasks=num_tasks, name=task.stage)
            self.stages[task.stage] = stage
        if task_options is None:
            return (stage, None, True)
        return (stage, task_options.input_bytes, task_options.speculatable)

    def send_heartbeats(self) -> None:
        """One ``heartbeat_many`` per kind of heartbeat (with or without progress / records)."""
        import numpy as np

        groups: dict[tuple[bool, bool], list[tuple[int, float, Optional[float], Optional[int]]]] = {}
        for detector_id, attempt in self.running.items():
            beat = attempt.beat
            if beat is None or beat is attempt.beat_sent:
                continue
            attempt.beat_sent = beat
            now, progress, records = beat
            groups.setdefault((progress is not None, records is not None), []).append(
                (detector_id, now, progress, records)
            )
        for (has_progress, has_records), rows in groups.items():
            ids, times, progress, records = zip(*rows)
            self.detector.heartbeat_many(
                np.asarray(ids, dtype=np.int64),
                np.asarray(times, dtype=np.float64),
                progress=np.asarray(progress, dtype=np.float64) if has_progress else None,
                records=np.asarray(records, dtype=np.float64) if has_records else None,
            )
