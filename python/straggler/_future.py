"""The Future a task's caller holds: a ``concurrent.futures.Future`` whose making and whose
three transitions an executor drives (claimed, then a result or an error) cost less.

Every method a caller uses (``result``, ``exception``, ``cancel``, ``add_done_callback``,
``concurrent.futures.wait`` and ``as_completed``) is the standard library's, unchanged: they
read and change the same fields under the same lock. What differs is written here:

- the Future's ``Condition`` is a subclass that sets its lock and its waiters' queue and
  reaches the lock's other methods through the lock when called, rather than binding five of
  them for every Future (``threading.Condition.__init__``);
- ``set_running_or_notify_cancel``, ``set_result`` and ``set_exception`` take the condition's
  lock itself (not through ``Condition.__enter__``), notify the condition only if a thread
  waits on it (a waiter enters ``Condition._waiters`` before it releases the lock, so the
  check under the lock cannot miss one) and run the callbacks only if there are some (none
  can be added once the state is final, which is set under the lock); any other state than
  the expected one goes to the standard library's method, which raises as it always did.

The standard library's ``Future`` has kept these fields and this ``Condition`` layout from
3.8 to 3.13; ``_layout_matches`` checks the layout once at import and falls back to a plain
``threading.Condition`` if it ever differs.
"""

from __future__ import annotations

import _thread
import threading
from collections import deque
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED, FINISHED, PENDING, RUNNING
from typing import Any, Callable, Optional

__all__ = ["TaskFuture", "cancel_for_good", "new_future"]

_RLock = _thread.RLock


class _Condition(threading.Condition):
    """A ``threading.Condition`` over its own ``RLock`` whose making sets two fields, not seven:
    the lock's methods that ``Condition.__init__`` binds one by one are reached through the
    lock when (rarely: a caller waits) they are called."""

    def __init__(self) -> None:
        self._lock = _RLock()
        self._waiters: deque[Any] = deque()

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return self._lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return self._lock._is_owned()  # type: ignore[attr-defined]


def _layout_matches() -> bool:
    """Whether this Python's ``Condition`` and ``Future`` have the fields the module relies on."""
    try:
        names = sorted(vars(threading.Condition(_RLock())))
        future = sorted(vars(Future()))
    except Exception:  # pragma: no cover
        return False
    return names == ["_acquire_restore", "_is_owned", "_lock", "_release_save", "_waiters", "acquire", "release"] \
        and future == ["_condition", "_done_callbacks", "_exception", "_result", "_state", "_waiters"]


_make_condition: Callable[[], threading.Condition] = _Condition if _layout_matches() else threading.Condition


class TaskFuture(Future):
    """See the module's docstring: a ``Future`` in every respect a caller can observe."""

    def __init__(self) -> None:
        self._condition = _make_condition()
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []

    def set_running_or_notify_cancel(self) -> bool:
        with self._condition._lock:  # type: ignore[attr-defined]
            if self._state == PENDING:
                self._state = RUNNING
                return True
        return super().set_running_or_notify_cancel()  # cancelled, or a misuse it reports

    def set_result(self, result: Any) -> None:
        condition = self._condition
        with condition._lock:  # type: ignore[attr-defined]
            state = self._state
            if state == RUNNING or state == PENDING:
                self._result = result
                self._state = FINISHED
                for waiter in self._waiters:  # wait() and as_completed() add theirs under the lock
                    waiter.add_result(self)
                if condition._waiters:  # type: ignore[attr-defined]
                    condition.notify_all()
                done = True
            else:
                done = False
        if not done:
            super().set_result(result)  # raises InvalidStateError, as it always did
        elif self._done_callbacks:  # none is added once the state is final
            self._invoke_callbacks()  # type: ignore[attr-defined]

    def set_exception(self, exception: Optional[BaseException]) -> None:
        condition = self._condition
        with condition._lock:  # type: ignore[attr-defined]
            state = self._state
            if state == RUNNING or state == PENDING:
                self._exception = exception
                self._state = FINISHED
                for waiter in self._waiters:
                    waiter.add_exception(self)
                if condition._waiters:  # type: ignore[attr-defined]
                    condition.notify_all()
                done = True
            else:
                done = False
        if not done:
            super().set_exception(exception)
        elif self._done_callbacks:
            self._invoke_callbacks()  # type: ignore[attr-defined]


new_future = TaskFuture


def cancel_for_good(future: Future) -> bool:
    """Cancel a Future whose task will never run, and tell ``wait()`` and ``as_completed()`` at
    once: a cancelled Future counts as done for them only once its executor has seen the
    cancel (``set_running_or_notify_cancel``), which a task that never reaches a worker never
    does (the standard library's executors leave such Futures uncounted). False if it could
    not be cancelled (it runs or has finished)."""
    if not future.cancel():
        return False
    with future._condition:
        if future._state == CANCELLED:  # not seen by anyone yet
            future.set_running_or_notify_cancel()
    return True
