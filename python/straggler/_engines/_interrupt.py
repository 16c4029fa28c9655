"""Stopping a running attempt in its thread: an asynchronous exception, delivered safely.

CPython's ``PyThreadState_SetAsyncExc`` raises an exception in another thread at that thread's
next bytecode. A blocking C call (``time.sleep``, a read from a socket, a long numpy kernel)
delays it until the call returns: the ladder's last step (abandon the thread) covers that.

The danger is to hit the wrong code: the thread may have finished the attempt and be running
our own code, or the next attempt, by the time the exception lands. ``Guard`` prevents that:
the exception is set only while the thread is inside the attempt's function (looked up and set
in one step the interpreter cannot interleave with the thread's leaving), and when the
function returns the thread clears any exception still pending for itself before it goes on,
so an exception meant for one attempt never reaches anything else.
"""

from __future__ import annotations

import ctypes
from threading import get_ident
from typing import Any, Callable

from straggler._context import _local as _attempt_local
from straggler._core import interrupt_inside

__all__ = ["Guard"]

# Two prototypes of one function (indexing pythonapi makes a new function object each time):
# one passes an exception class, the other NULL, which clears an exception set for the thread
# and not yet raised.
_set_async_exc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int
_clear_async_exc = ctypes.pythonapi["PyThreadState_SetAsyncExc"]
_clear_async_exc.argtypes = (ctypes.c_ulong, ctypes.c_void_p)
_clear_async_exc.restype = ctypes.c_int


def _clear_pending(thread_id: int) -> None:
    _clear_async_exc(thread_id, None)


class Guard:
    """Which threads run which attempt's function right now, and the one way to interrupt one.

    No lock: a thread enters by adding its entry to ``inside`` and leaves by removing it, each
    one dict operation, and ``interrupt`` looks the entry up and sets the exception in one call
    that holds the interpreter throughout (``_core.interrupt_inside``), so that a thread that
    has left is never hit. What was set but not yet raised when the function returned is
    cleared by the leaving thread: ``interrupt`` marks the attempt in ``interrupted`` before
    it sets anything, and the leaving thread checks the mark after it removed its entry.
    """

    def __init__(self) -> None:
        self.inside: dict[int, int] = {}   # id(attempt) -> thread id, while in its function
        self.interrupted: set[int] = set()  # id(attempt) of those an exception may be set for

    def call(self, attempt: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as ``attempt``'s work, interruptible by ``interrupt``."""
        thread_id = get_ident()
        key = id(attempt)
        inside = self.inside
        inside[key] = thread_id
        try:
            return fn(*args, **kwargs)
        finally:
            del inside[key]
            if key in self.interrupted:
                # Set but maybe not raised yet: clear it before the thread runs our code (the
                # clearing call first: no check for a pending exception comes before it).
                _clear_pending(thread_id)
                self.interrupted.discard(key)

    def call_in_attempt(self, attempt: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """``call(attempt, ...)`` with ``attempt`` as the running attempt (what
        ``current_attempt()`` and ``heartbeat()`` see), in one frame: the per-task path."""
        thread_id = get_ident()
        key = id(attempt)
        local = _attempt_local
        previous = getattr(local, "attempt", None)
        local.attempt = attempt
        inside = self.inside
        inside[key] = thread_id
        try:
            return fn(*args, **kwargs)
        finally:
            local.attempt = previous
            del inside[key]
            if key in self.interrupted:
                _clear_pending(thread_id)
                self.interrupted.discard(key)

    def interrupt(self, attempt: Any, exception: type[BaseException]) -> bool:
        """Raise ``exception`` in the thread running ``attempt``'s function; False if none is."""
        key = id(attempt)
        self.interrupted.add(key)  # first: a thread leaving from now on clears what is set
        if interrupt_inside(self.inside, key, exception):
            return True
        self.interrupted.discard(key)
        return False

    def running(self, attempt: Any) -> bool:
        return id(attempt) in self.inside
