"""The pool engine: attempts run on any ``concurrent.futures.Executor`` the user passes (a
``ProcessPoolExecutor``, an ``InterpreterPoolExecutor``…).

Each runner is one of our own driver threads that hands one attempt at a time to the pool and
waits for it. The attempt's ``AttemptContext`` travels with it (``current_attempt()`` works in
the worker); its live link to the executor does not cross a process, so there ``heartbeat()``
only checks its arguments, and a loser that already started runs to its end (its result is
discarded). A loser still waiting in the pool is cancelled there.

A task's ``sg.options(cpus=, gpus=, memory=)`` are ignored here: a pool has no per-task
resources, and every attempt takes one slot.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from straggler._engines.runners import RunnerEngine, call_in_attempt
from straggler._ledger import Attempt

__all__ = ["PoolEngine"]


class PoolAttempt(Attempt):
    __slots__ = ("engine_future",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.engine_future: Optional[Future] = None


class _StopRequested(Exception):
    pass


class PoolEngine(RunnerEngine):
    attempt_type = PoolAttempt

    def __init__(self, pool: concurrent.futures.Executor, max_workers: Optional[int]) -> None:
        if max_workers is None:
            workers = getattr(pool, "_max_workers", None)
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ValueError(
                    f"max_workers: cannot tell how many workers {type(pool).__name__} has; pass max_workers"
                )
            max_workers = workers
        super().__init__(max_workers)
        self.pool = pool
        self.runner_pool = ThreadPoolExecutor(max_workers, thread_name_prefix="straggler-driver")

    def execute(self, attempt: Attempt, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        assert isinstance(attempt, PoolAttempt)
        engine_future = self.pool.submit(call_in_attempt, fn, attempt.context(), args, kwargs)
        attempt.engine_future = engine_future
        if attempt.cancelled:
            engine_future.cancel()
        try:
            return engine_future.result()
        except concurrent.futures.CancelledError:
            if engine_future.cancelled() and attempt.cancelled:
                # Our own stop request, before it started in the pool: the task is settled.
                raise _StopRequested(f"task {attempt.task.id}: another attempt finished first") from None
            raise  # the task's own CancelledError reaches its Future as itself

    def stop_attempt(self, attempt: Attempt) -> None:
        future = getattr(attempt, "engine_future", None)
        if future is not None:
            future.cancel()  # only helps before it started; a running one runs on

    def close(self, wait: bool) -> None:
        self.runner_pool.shutdown(wait=wait)
