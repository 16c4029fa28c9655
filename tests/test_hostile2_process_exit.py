"""Hostile tests (round 2): the process engine at interpreter exit.

A script that maps a few tasks on ``SpeculativeExecutor("processes")`` and exits without
``shutdown()`` (or after ``shutdown(wait=False)``) — the normal ``concurrent.futures`` usage —
sometimes logs ``straggler: could not end worker process N`` with a traceback ending in
``ValueError: Cannot close a process while it is still running``. At exit the reaper thread
(``close(wait=False)`` → ``_retire`` → ``_end_process``) and multiprocessing's exit hook
(``_kill_all``, then ``active_children()``'s joins) wait on the same ``Process`` from two
threads: one ``waitpid`` reaps the worker, the other gets ECHILD, sees ``exitcode is None`` and
goes on to ``terminate()`` / ``kill()`` a pid that was already reaped (a pid the system may
have reused), then ``close()`` raises.
"""

from __future__ import annotations

import os

import pytest
from _hostile_util import run_script

TESTS = os.path.dirname(os.path.abspath(__file__))

pytestmark = [pytest.mark.timeout(300)]


def test_hostile2_exit_without_shutdown_logs_no_error() -> None:
    # Observed: 1 to 3 runs in 12 log the traceback (spawn and fork, with and without
    # shutdown(wait=False)); this test runs 16 and fails on the first. Expected: a clean exit.
    failures = []
    for run in range(16):
        method = "spawn" if run % 2 else "fork"
        shut = "ex.shutdown(wait=False)" if run % 4 >= 2 else "pass"
        code = f"""
            import sys, multiprocessing as mp, warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            sys.path.insert(0, {TESTS!r})
            import straggler as sg, _hostile2_tasks as T
            if __name__ == "__main__":
                eng = "processes" if {method!r} == "spawn" else mp.get_context("fork")
                ex = sg.SpeculativeExecutor(eng, max_workers=2, policy=None, stop_grace=0.5)
                print("SUM", sum(ex.map(T.value, range(4))))
                {shut}
        """
        ok, out = run_script(code, timeout=30)
        if not ok or "SUM 6" not in out or "Traceback" in out or "could not end" in out:
            failures.append(f"run {run} ({method}, {shut}):\n{out}")
            break
    assert not failures, failures[0]
