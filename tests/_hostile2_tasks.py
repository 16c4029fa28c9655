"""Task functions for the hostile process-engine tests (module level, so spawned workers can
import them: the scripts put this directory on sys.path)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import straggler as sg


def value(x):
    return x


def pid_then(x, seconds=0.0):
    time.sleep(seconds)
    return os.getpid()


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def os_exit(code):
    os._exit(code)


def sys_exit(code):
    sys.exit(code)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt("from the task")


def raise_system_exit():
    raise SystemExit(3)


class TwoArgError(Exception):
    """Pickles, but does not unpickle (its __init__ wants two arguments)."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_two_arg():
    raise TwoArgError("a", "b")


def raise_unpicklable():
    e = ValueError("unpicklable")
    e.lock = threading.Lock()
    raise e


def return_unpicklable():
    return threading.Lock()


def return_huge(nbytes):
    return b"x" * nbytes


def start_thread_for_ever():
    threading.Thread(target=time.sleep, args=(10**6,)).start()  # non-daemon
    return os.getpid()


def fork_child_sleeps():
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    return pid


def ignore_sigterm_and_hang(pidfile):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    while True:
        time.sleep(0.05)


def write_pid_and_hang(pidfile):
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(10**6)


def write_pid_and_sleep(pidfile, seconds):
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def catch_cancel_for_ever():
    while True:
        try:
            sg.heartbeat()
            time.sleep(0.01)
        except sg.AttemptCancelled:
            pass


def write_output(i, slow, seconds, slow_seconds):
    """Writes two files into the staging dir; task ``slow``'s first attempt is slow (heartbeats)."""
    ctx = sg.current_attempt()
    d = ctx.staging_dir
    with open(os.path.join(d, "part-a"), "w") as f:
        f.write(f"{i} {ctx.attempt}\n")
    total = slow_seconds if (i == slow and ctx.attempt == 0) else seconds
    end = time.monotonic() + total
    while time.monotonic() < end:
        sg.heartbeat()
        time.sleep(0.01)
    with open(os.path.join(d, "part-b"), "w") as f:
        f.write(f"{i} {ctx.attempt}\n")
    return (i, ctx.attempt)


def write_output_silent(i, slow, seconds, slow_seconds):
    """As write_output, without heartbeats (the ladder's force is needed to stop it)."""
    ctx = sg.current_attempt()
    d = ctx.staging_dir
    with open(os.path.join(d, "part-a"), "w") as f:
        f.write(f"{i} {ctx.attempt}\n")
    time.sleep(slow_seconds if (i == slow and ctx.attempt == 0) else seconds)
    with open(os.path.join(d, "part-b"), "w") as f:
        f.write(f"{i} {ctx.attempt}\n")
    return (i, ctx.attempt)


def stopping_context(method, pidfile, how_many=1):
    """A multiprocessing context whose first ``how_many`` processes are stopped (SIGSTOP) right
    after they start, before they can finish starting up, as a debugger, a cgroup freezer or a
    stray ``kill -STOP`` would; their pids go to ``pidfile`` (one a line) for the test to kill."""
    import multiprocessing

    base = multiprocessing.get_context(method)
    counter = {"n": 0}

    class StoppedProcess(base.Process):
        def start(self):
            super().start()
            if counter["n"] < how_many:
                counter["n"] += 1
                os.kill(self.pid, signal.SIGSTOP)
                with open(pidfile, "a") as f:
                    f.write(f"{self.pid}\n")

    StoppedProcess.__qualname__ = StoppedProcess.__name__ = "StoppedProcess"
    globals()["StoppedProcess"] = StoppedProcess  # picklable by name for spawn

    class Context(type(base)):
        Process = StoppedProcess

    return Context()


def kill_pids(pidfile):
    try:
        with open(pidfile) as f:
            pids = [int(line) for line in f if line.strip()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
