"""Stopping a running attempt in its thread: an asynchronous exception, delivered safely.

CPython's ``PyThreadState_SetAsyncExc`` raises an exception in another thread at that thread's
next bytecode. A blocking C call (``time.sleep``, a read from a socket, a long numpy kernel)
delays it until the call returns: the ladder's last step (abandon the thread) covers that.

The danger is to hit the wrong code: the thread may have finished the attempt and be running
our own code, or the next attempt, by the time the exception lands. ``Guard`` prevents that:
the exception is set only while the thread is inside the attempt's function (under a lock),
and when the function returns the thread clears any exception still pending for itself before
it goes on, so an exception meant for one attempt never reaches anything else.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable

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
    """Which threads run which attempt's function right now, and the one way to interrupt one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside: dict[int, int] = {}   # id(attempt) -> thread id, while in its function
        self.interrupted: set[int] = set()  # id(attempt) of those an exception was set for

    def call(self, attempt: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as ``attempt``'s work, interruptible by ``interrupt``."""
        thread_id = threading.get_ident()
        key = id(attempt)
        lock = self.lock
        with lock:
            self.inside[key] = thread_id
        try:
            return fn(*args, **kwargs)
        finally:
            with lock:
                del self.inside[key]
                if key in self.interrupted:
                    # Set but maybe not raised yet: clear it before the thread runs our code.
                    self.interrupted.discard(key)
                    _clear_pending(thread_id)

    def interrupt(self, attempt: Any, exception: type[BaseException]) -> bool:
        """Raise ``exception`` in the thread running ``attempt``'s function; False if none is."""
        key = id(attempt)
        with self.lock:
            thread_id = self.inside.get(key)
            if thread_id is None:
                return False
            self.interrupted.add(key)
            return _set_async_exc(thread_id, exception) == 1

    def running(self, attempt: Any) -> bool:
        with self.lock:
            return id(attempt) in self.inside
