"""The thread engine (the default, ``"threads"``): attempts run in this process's threads.

A runner is a loop inside one thread of a ``ThreadPoolExecutor`` (our own, or one the user
passed, which is then left running); it calls each attempt's function directly, with no hop
through another thread per task. A loser stops at its next ``heartbeat()``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from straggler._engines.runners import RunnerEngine, call_in_attempt
from straggler._ledger import Attempt

__all__ = ["ThreadEngine"]


class ThreadEngine(RunnerEngine):
    def __init__(self, slots: int, pool: Optional[ThreadPoolExecutor] = None) -> None:
        super().__init__(slots)
        self.own_pool = pool is None
        if pool is None:
            pool = ThreadPoolExecutor(slots, thread_name_prefix="straggler-worker")
        self.runner_pool = pool

    def execute(self, attempt: Attempt, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        return call_in_attempt(fn, attempt, args, kwargs)

    def close(self, wait: bool) -> None:
        if self.own_pool:
            self.runner_pool.shutdown(wait=wait)
