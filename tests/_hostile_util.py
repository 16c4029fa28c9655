"""Helpers for the hostile tests: run a script in a fresh interpreter with a hard timeout, so a
hang (a deadlock, or an exit blocked by the executor's atexit hook) fails the test instead of
hanging the test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_script(code: str, timeout: float) -> tuple[bool, str]:
    """(finished in time with exit code 0, combined output)."""
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        return False, f"TIMED OUT after {timeout} s\n" + (out.decode() if isinstance(out, bytes) else out)
    return proc.returncode == 0, proc.stdout + proc.stderr
