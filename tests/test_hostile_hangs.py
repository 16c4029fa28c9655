"""Hostile: calling shutdown() from our own threads must not deadlock the executor (or the exit).

ThreadPoolExecutor refuses (RuntimeError "cannot join current thread") instead of hanging.
"""

from __future__ import annotations

import pytest
from _hostile_util import run_script

pytestmark = pytest.mark.timeout(120)


def test_hostile_shutdown_inside_task_does_not_hang() -> None:
    ok, out = run_script(
        """
        import straggler as sg
        ex = sg.SpeculativeExecutor(max_workers=2)
        f = ex.submit(lambda: ex.shutdown() or 5)
        try:
            f.result(timeout=5)
        except BaseException as e:
            # a RuntimeError (as ThreadPoolExecutor gives) would be fine; a hang is not
            assert type(e).__name__ != "TimeoutError", "task calling shutdown() is deadlocked"
        print("exiting")
        """,
        timeout=30,
    )
    assert ok, out


def test_hostile_shutdown_in_done_callback_does_not_hang() -> None:
    ok, out = run_script(
        """
        import threading, time
        import straggler as sg
        ex = sg.SpeculativeExecutor(max_workers=2)
        f = ex.submit(time.sleep, 0.3)
        f.add_done_callback(lambda _: ex.shutdown())   # runs in the runner thread
        f.result(timeout=5)
        t = threading.Thread(target=ex.shutdown, daemon=True)
        t.start(); t.join(10)
        assert not t.is_alive(), "shutdown() from the main thread hangs after a callback called shutdown()"
        """,
        timeout=30,
    )
    assert ok, out
