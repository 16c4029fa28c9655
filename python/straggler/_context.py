"""What a task sees of the executor: ``heartbeat``, ``current_attempt``, ``options``.

An attempt runs with an ``AttemptContext`` installed in its thread. The context's public part
(task, attempt, speculative, node, staging_dir) pickles, so it reaches a worker process of a
``ProcessPoolExecutor``; its live link to the executor (the cancel flag and the heartbeat slot)
does not, so in another process ``heartbeat`` only validates its arguments and returns. The
process engine's workers install a live link of their own (``_engines/processes.py``).
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from straggler._checks import flag, integer, real

__all__ = [
    "AttemptCancelled", "AttemptContext", "AttemptTimeout", "TaskOptions", "WorkerDied", "current_attempt", "heartbeat",
    "options",
]


class AttemptCancelled(BaseException):
    """Raised by ``heartbeat()`` in an attempt whose task another attempt has already finished.

    A ``BaseException``, like ``KeyboardInterrupt`` and (since Python 3.8) ``asyncio.CancelledError``,
    for the same reason asyncio changed: a stop request must not be swallowed by the generic
    ``except Exception`` of user code (retry loops, logging wrappers), or the losing attempt keeps
    its worker busy. Clean-up still runs: ``finally`` blocks and context managers see it.
    """


class AttemptTimeout(TimeoutError):
    """An attempt ran past its ``timeout`` (seconds of wall time) or sent no heartbeat for
    ``heartbeat_timeout`` seconds: it was stopped and counts as a failure. A task whose last
    allowed attempt timed out gets this exception; ``task``, ``attempt``, ``limit`` (the name
    of the option) and ``seconds`` (its value) say which."""

    def __init__(self, task: int, attempt: int, limit: str, seconds: float) -> None:
        what = "ran longer than" if limit == "timeout" else "sent no heartbeat for"
        super().__init__(f"task {task}, attempt {attempt}: {what} {limit}={seconds:g} s")
        self.task = task
        self.attempt = attempt
        self.limit = limit
        self.seconds = seconds

    def __reduce__(self) -> tuple:
        return (type(self), (self.task, self.attempt, self.limit, self.seconds))


class WorkerDied(RuntimeError):
    """The worker process running an attempt died (killed from outside: the OOM killer,
    ``kill -9``; or it exited): the attempt failed and is retried up to ``max_failures``.
    ``task``, ``attempt``, ``pid`` and ``exitcode`` (negative: the signal's number) say which."""

    def __init__(self, task: int, attempt: int, pid: Optional[int], exitcode: Optional[int]) -> None:
        super().__init__(f"task {task}, attempt {attempt}: its worker process (pid {pid}) {_how_it_ended(exitcode)}")
        self.task = task
        self.attempt = attempt
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> tuple:
        return (type(self), (self.task, self.attempt, self.pid, self.exitcode))


def _how_it_ended(exitcode: Optional[int]) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


class _Live(Protocol):
    """The executor's side of a running attempt (its attempt record), shared with the task.

    ``cancelled`` is set once by the executor; ``beat`` is replaced whole by the attempt (one
    attribute store of a tuple, so the scheduler never reads a torn heartbeat).
    """

    cancelled: bool
    beat: Optional[tuple[float, Optional[float], Optional[int]]]
    clock: Callable[[], float]


class _Current(Protocol):
    """What the thread-local holds while an attempt runs: an ``AttemptContext`` (in a worker
    process) or the executor's attempt record, which builds its context only when asked."""

    @property
    def _live(self) -> Optional[_Live]: ...

    def context(self) -> AttemptContext: ...


@dataclass(frozen=True)
class AttemptContext:
    """The running attempt, as ``current_attempt()`` returns it.

    ``attempt`` counts from 0 (the first attempt); ``speculative`` is True for a copy started
    while another attempt of the task was running; ``node`` is the engine's node (0 on a thread
    or process pool, which has no nodes to choose from); ``staging_dir`` is the directory this
    attempt writes its output into (None unless the task was submitted with ``output=``).
    """

    task: int
    attempt: int
    speculative: bool
    node: int
    staging_dir: Optional[str]
    # The live link; dropped when pickled (another process cannot reach the executor).
    _live: Optional[_Live] = field(default=None, repr=False, compare=False)

    def context(self) -> AttemptContext:
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_live"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)


_local = threading.local()


def current_attempt() -> Optional[AttemptContext]:
    """The attempt running in this thread, or None outside a task.

    How an attempt that must stop (a loser, a timed-out attempt, a cancelled task) is stopped
    depends on the engine; on every engine its next ``heartbeat()`` raises ``AttemptCancelled``:

    - ``"threads"``: the flag; after ``stop_grace``, ``AttemptCancelled`` raised in its thread
      (at the next Python bytecode: a blocking C call delays it); after another grace, the
      thread is abandoned (its slot given to a new thread, its result dropped);
    - ``"processes"``: the flag; after ``stop_grace``, its worker process is terminated
      (SIGTERM); after another grace, killed (SIGKILL), even inside a C call;
    - a ``concurrent.futures.Executor`` passed in (a ``ProcessPoolExecutor``…): only an attempt
      that has not started is stopped (its heartbeat cannot reach the executor); one that has
      runs to its end and its result is dropped;
    - Dask: the flag (the loser's key is cancelled, and ``heartbeat()`` raises in its worker);
      after ``stop_grace``, ``AttemptCancelled`` raised in its worker thread;
    - Ray: the flag (sent to its worker with the report actor's next reply; one not started is
      cancelled in Ray's queue); after ``stop_grace``, ``ray.cancel`` (``KeyboardInterrupt`` at
      its next Python bytecode); after another, ``ray.cancel(force=True)`` ends its worker.
    """
    current = getattr(_local, "attempt", None)
    return None if current is None else current.context()


def _enter(current: _Current) -> Optional[_Current]:
    previous = getattr(_local, "attempt", None)
    _local.attempt = current
    return previous


def _leave(previous: Optional[_Current]) -> None:
    _local.attempt = previous


def heartbeat(progress: Optional[float] = None, records: Optional[int] = None) -> None:
    """Report that the running attempt is alive, optionally with its progress and record count.

    ``progress`` is the fraction done, in [0, 1]; ``records`` the records processed so far.
    Raises ``AttemptCancelled`` when another attempt of this task has already finished, so a
    losing attempt stops at its next heartbeat. Outside a task (or in another process than the
    executor's) it only checks its arguments.
    """
    if progress is not None:
        progress = real("progress", progress, low=0.0, high=1.0)  # numpy scalars too
    if records is not None:
        records = integer("records", records, low=0)
    current = getattr(_local, "attempt", None)
    if current is None:
        return
    live = current._live
    if live is None:
        return
    if live.cancelled:
        timed_out = getattr(live, "timed_out", None)
        if timed_out is not None:
            raise AttemptCancelled(str(timed_out))
        raise AttemptCancelled(f"task {current.context().task}: another attempt finished first")
    live.beat = (live.clock(), progress, records)


@dataclass(frozen=True)
class TaskOptions:
    """Per-task options, as ``options()`` records them."""

    stage: Optional[str] = None
    num_tasks: Optional[int] = None
    input_bytes: Optional[int] = None
    speculatable: bool = True
    output: Optional[str] = None
    timeout: Optional[float] = None
    heartbeat_timeout: Optional[float] = None
    cpus: float = 1
    gpus: float = 0
    memory: Optional[int] = None

    def __post_init__(self) -> None:
        if self.stage is not None and not isinstance(self.stage, str):
            raise TypeError(f"stage must be a str or None, got {self.stage!r}")
        # Normalised once (numpy integers become ints), then frozen.
        if self.num_tasks is not None:
            object.__setattr__(self, "num_tasks", integer("num_tasks", self.num_tasks, low=1))
        if self.input_bytes is not None:
            object.__setattr__(self, "input_bytes", integer("input_bytes", self.input_bytes, low=0))
        object.__setattr__(self, "speculatable", flag("speculatable", self.speculatable))
        # Bounded like the executor's own (a year): every wait of ours has a finite limit.
        for name in ("timeout", "heartbeat_timeout"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, real(name, value, low=0.0, low_open=True, high=365 * 86400.0))
        # smallpond's Task limits (cpu_limit, gpu_limit, memory_limit), with Ray's rule for
        # resource amounts: a fraction of one unit, or whole units.
        for name in ("cpus", "gpus"):
            amount = real(name, getattr(self, name), low=0.0, high=1e9)
            if amount > 1 and not amount.is_integer():
                raise ValueError(f"{name} must be a fraction below 1 or a whole number, got {getattr(self, name)!r}")
            object.__setattr__(self, name, int(amount) if amount.is_integer() else amount)
        if self.memory is not None:
            object.__setattr__(self, "memory", integer("memory", self.memory, low=1))
        if self.output is not None:
            import os

            if not isinstance(self.output, (str, os.PathLike)):
                raise TypeError(f"output must be a path or None, got {self.output!r}")
            path = os.fspath(self.output)
            if not isinstance(path, str) or not path or os.path.basename(os.path.normpath(path)) in ("", ".", ".."):
                raise ValueError(f"output must name a directory to create, got {self.output!r}")
            if "\0" in path:
                raise ValueError(f"output must not contain a NUL character, got {self.output!r}")


class _WithOptions:
    """A function and its per-task options; calling it calls the function unchanged."""

    __slots__ = ("fn", "options")

    def __init__(self, fn: Callable[..., Any], task_options: TaskOptions) -> None:
        self.fn = fn
        self.options = task_options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"options({self.fn!r}, {self.options!r})"


def options(
    fn: Callable[..., Any],
    *,
    stage: Optional[str] = None,
    num_tasks: Optional[int] = None,
    input_bytes: Optional[int] = None,
    speculatable: bool = True,
    output: Optional[str] = None,
    timeout: Optional[float] = None,
    heartbeat_timeout: Optional[float] = None,
    cpus: float = 1,
    gpus: float = 0,
    memory: Optional[int] = None,
) -> Callable[..., Any]:
    """Wrap ``fn`` with per-task options for ``SpeculativeExecutor.submit``.

    The wrapper never touches ``fn``'s own arguments. ``stage`` groups comparable tasks (the
    default: one stage per executor); ``num_tasks`` is the stage's size when known;
    ``input_bytes`` lets Flink's policy normalise durations and Mantri's scale a new attempt's
    expected time by the task's size; ``speculatable=False`` never copies
    the task; with ``output=path`` each attempt writes into ``current_attempt().staging_dir``
    and the first successful attempt's directory is renamed to ``path``. ``timeout`` (seconds
    of wall time per attempt) and ``heartbeat_timeout`` (no ``heartbeat()`` for that long means
    hung) stop an attempt and count it as a failure (``AttemptTimeout``); they override the
    executor's own.

    ``cpus``, ``gpus`` and ``memory`` (bytes, None: no limit) are what one attempt needs, as
    smallpond's ``Task`` declares them (an amount above 1 must be whole, as Ray requires); every
    attempt of the task, copies too, asks for the same. The Ray engine makes them the Ray task's
    ``num_cpus``, ``num_gpus`` and ``memory``. The Dask engine asks for ``resources=`` of the
    names ``CPU``, ``GPU`` and ``MEMORY``, each only where the cluster's workers declare that
    resource (Dask schedules by declared resources alone), and ignores the others. The thread
    and process engines, and an executor passed in, run one attempt per slot and ignore them.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if isinstance(fn, _WithOptions):
        raise TypeError(f"fn already has options: {fn!r}")
    return _WithOptions(fn, TaskOptions(stage, num_tasks, input_bytes, speculatable, output, timeout,
                                        heartbeat_timeout, cpus, gpus, memory))
