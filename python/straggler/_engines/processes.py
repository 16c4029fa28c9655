"""The process engine (``"processes"``): attempts run in worker processes of our own, one
attempt at a time per worker, and a worker can be killed on its own and replaced.

    ledger ─take─▶ runner (a driver thread) ──pipe: pickled (fn, args, kwargs, context)──▶ worker
                     │  waits on the pipe and the process's sentinel, never on anything else │
                     ◀───────────── pipe: pickled ("ok", value) / ("raised", error, tb) ─────┘
    scheduler ─reads attempt.beat─▶ the worker's shared slot ◀─writes─ heartbeat() in the worker
    ledger's stop hook ─▶ the slot's cancel flag; the stopper thread: SIGTERM, then SIGKILL

Each worker has a slot of shared memory (a few doubles): the newest heartbeat (time, progress,
records) under a sequence counter, the tag of the attempt it belongs to, and the cancel flag.
``heartbeat()`` in a worker writes the slot and reads the flag (no system call, no pickling);
the executor reads the slot when the scheduler reads ``attempt.beat``, so heartbeats reach the
Detector with no delay and cost nothing while no one looks. Times are ``time.monotonic()``,
which on Linux (and macOS, Windows) is one clock for the whole system, so a worker's times
compare with the executor's; an injected executor clock is followed through an offset.

Stopping an attempt (a loser, a timed-out attempt, a task cancelled) is a ladder:
1. at once, the cancel flag: its next ``heartbeat()`` raises ``AttemptCancelled``;
2. after ``stop_grace`` seconds, its worker process is terminated (SIGTERM);
3. after another ``stop_grace``, killed (SIGKILL).
The runner sees the worker gone, settles the attempt through the ledger (a kill, or a timeout
failure) and the next attempt gets a fresh worker. A blocking C call does not delay steps 2-3.

A worker that dies on its own (the OOM killer, ``kill -9``, ``os._exit``) fails its attempt
with ``WorkerDied`` naming the signal or exit code; the attempt is retried like any failure.
Workers are not daemonic (a task may start processes of its own); they end when the engine
closes, and at interpreter exit (after the submitted work) at the latest. Every worker that
ends is joined: no zombies.

A task's ``sg.options(cpus=, gpus=, memory=)`` are ignored here: every attempt takes one
worker process, whatever it declares.
"""

from __future__ import annotations

import itertools
import logging
import math
import multiprocessing
import multiprocessing.util
import pickle
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import wait
from typing import Any, Callable, Optional

from straggler._context import AttemptCancelled, AttemptContext, WorkerDied, _enter, _how_it_ended, _leave
from straggler._engines.runners import RunnerEngine
from straggler._ledger import Attempt

__all__ = ["ProcessEngine", "RemoteTraceback"]

logger = logging.getLogger("straggler")

# The shared slot of a worker: doubles, written by the worker (SEQ, TIME, PROGRESS, RECORDS;
# RECEIVED, the TAG of the attempt it last received) or by the executor while the worker is
# idle (TAG) or at a stop (CANCEL).
_SEQ, _TAG, _TIME, _PROGRESS, _RECORDS, _CANCEL, _RECEIVED = range(7)
_SLOT_SIZE = 7
_LOST, _TIMED_OUT = 1.0, 2.0          # CANCEL's values (0: run on)
_NAN = math.nan

_OK, _RAISED, _UNLOADABLE, _UNSENDABLE = "ok", "raised", "unloadable", "unsendable"


# The longest a new worker process may take to report that it is ready: generous, because a
# spawned interpreter that imports numpy and the task's modules on a loaded machine can take
# several seconds (5 s was too short on 2 cores under load); it only bounds a worker that will
# never be ready (stopped, or stuck in an import).
_START_TIMEOUT = 30.0

class _Undelivered(Exception):
    """The worker died before the attempt reached it."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process (set as its ``__cause__``)."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""' if self.args else ""


# --- in the worker process --------------------------------------------------------------------


class _InWorker:
    """The running attempt as a worker sees it: ``current_attempt()``'s context and the live
    link ``heartbeat()`` uses (the shared slot)."""

    __slots__ = ("_context", "slot", "clock")

    def __init__(self, context: AttemptContext, slot: Any) -> None:
        self._context = context
        self.slot = slot
        self.clock = time.monotonic

    @property
    def _live(self) -> Any:  # a _Live whose fields live in the shared slot
        return self

    def context(self) -> AttemptContext:
        return self._context

    @property
    def cancelled(self) -> bool:
        return self.slot[_CANCEL] != 0.0

    @property
    def timed_out(self) -> Optional[str]:
        if self.slot[_CANCEL] != _TIMED_OUT:
            return None
        context = self._context
        return f"task {context.task}, attempt {context.attempt}: stopped for its timeout"

    @property
    def beat(self) -> None:
        return None  # read by the executor from the slot, never here

    @beat.setter
    def beat(self, value: tuple) -> None:
        # A sequence lock: odd while writing, so a reader never takes a half-written beat.
        # (Stores to shared memory become visible in order on x86; on weakly ordered CPUs a
        # reader may at worst mix two consecutive beats of the same attempt.)
        at, progress, records = value
        slot = self.slot
        seq = slot[_SEQ]
        slot[_SEQ] = seq + 1.0
        slot[_TIME] = at
        slot[_PROGRESS] = _NAN if progress is None else progress
        slot[_RECORDS] = -1.0 if records is None else records
        slot[_SEQ] = seq + 2.0


def _worker_main(conn: Any, slot: Any, inherited: list) -> None:
    """A worker process: run attempts as they come, until an empty message or the pipe
    closes."""
    for end in inherited:
        # Forked: the executor's ends of our pipe and of the other workers' pipes; a copy here
        # would keep a worker from reading EOF when the executor is gone.
        end.close()
    # Ctrl-C reaches the whole process group; the executor decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send_bytes(b"")  # ready: imports done, the first attempt's clock may start
    except OSError:
        return
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the executor closed the pipe, or is gone
        if not message:
            return  # asked to leave
        slot[_RECEIVED] = slot[_TAG]  # from here on, a death is the attempt's
        reply = _run_one(message, slot)
        try:
            conn.send_bytes(reply)
        except OSError:
            return


def _run_one(message: bytes, slot: Any) -> bytes:
    try:
        fn, args, kwargs, context = pickle.loads(message)
    except BaseException:
        return _dumps((_UNLOADABLE, None, traceback.format_exc()))
    previous = _enter(_InWorker(context, slot))
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:  # like ProcessPoolExecutor: the task's error goes to its Future
        text = traceback.format_exc()
        try:
            return _dumps((_RAISED, exc, text))
        except BaseException:
            return _dumps((_UNSENDABLE, "its exception", text))
    finally:
        _leave(previous)
    try:
        return _dumps((_OK, value, None))
    except BaseException:
        return _dumps((_UNSENDABLE, "its result", traceback.format_exc()))


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


# --- in the executor --------------------------------------------------------------------------


class _Worker:
    """One worker process, its end of the pipe and its shared slot."""

    __slots__ = ("process", "conn", "slot", "attempt", "doomed", "tag")

    def __init__(self, process: Any, conn: Any, slot: Any) -> None:
        self.process = process
        self.conn = conn
        self.slot = slot
        self.attempt: Optional[ProcessAttempt] = None   # bound while it runs one (engine's lock)
        self.doomed = False                             # the ladder signalled it: never reuse
        self.tag = 0.0

    def usable(self) -> bool:
        return not self.doomed and self.process.exitcode is None and self.process.is_alive()


# The base class's storage for ``beat``; ProcessAttempt's property reads and writes through it.
_stored_beat: Any = Attempt.__dict__["beat"]


class ProcessAttempt(Attempt):
    """An attempt whose ``beat`` is read from its worker's shared slot while it runs."""

    __slots__ = ("worker", "tag", "seq", "offset")

    def __init__(self, *args: Any) -> None:
        self.worker: Optional[_Worker] = None
        self.tag = 0.0
        self.seq = 0.0
        self.offset = 0.0
        super().__init__(*args)

    @property
    def beat(self) -> Optional[tuple]:
        worker = self.worker
        if worker is not None:
            self._read(worker.slot)
        return _stored_beat.__get__(self)

    @beat.setter
    def beat(self, value: Optional[tuple]) -> None:
        _stored_beat.__set__(self, value)

    def _read(self, slot: Any) -> None:
        # The same tuple comes back until the worker writes again (the scheduler sends a beat
        # once, by identity). Give up after a few tries rather than spin on a writer that died.
        for _ in range(8):
            seq = slot[_SEQ]
            if seq == self.seq:
                return
            if seq % 2.0:
                continue
            tag, at, progress, records = slot[_TAG], slot[_TIME], slot[_PROGRESS], slot[_RECORDS]
            if slot[_SEQ] != seq:
                continue
            if tag != self.tag:
                return  # the worker runs another attempt now (this one just ended)
            self.seq = seq
            _stored_beat.__set__(self, (
                at + self.offset,
                None if progress != progress else progress,
                None if records < 0.0 else int(records),
            ))
            return


class ProcessEngine(RunnerEngine):
    """See the module's docstring. ``context``: the ``multiprocessing`` context whose start
    method makes the workers (default: "spawn")."""

    attempt_type = ProcessAttempt
    prepares = True  # a runner starts its worker process before it takes an attempt

    def __init__(self, slots: int, context: Any = None) -> None:
        super().__init__(slots)
        self.context = multiprocessing.get_context("spawn") if context is None else context
        self.fork = self.context.get_start_method() == "fork"
        self.lock = threading.Lock()        # workers, idle, drivers, attempts bound to workers
        self.start_lock = threading.Lock()  # one worker start at a time (see _start_worker)
        self.local = threading.local()      # the worker a driver thread holds
        self.workers: set[_Worker] = set()
        self.idle: list[_Worker] = []
        self.drivers: set[threading.Thread] = set()
        self.reapers: list[threading.Thread] = []
        self.names = itertools.count()
        self.order = itertools.count()
        self.closed = False
        # The ladder's pending steps: (when, sequence, attempt, worker, step).
        self.steps: list[tuple[float, int, ProcessAttempt, _Worker, int]] = []
        self.steps_changed = threading.Condition(threading.Lock())
        self.stopper: Optional[threading.Thread] = None
        # Before multiprocessing joins the remaining children at exit: kill ours (the submitted
        # work has finished by then: the executor waits for it earlier in the exit).
        multiprocessing.util.Finalize(self, _kill_all, args=(self.workers,), exitpriority=10)

    # --- runners ----------------------------------------------------------------------------

    def spawn(self) -> None:
        if self.closed:
            raise RuntimeError("the process engine was closed")
        # Daemon drivers: one waiting on a hung worker must not hold the interpreter's exit
        # before the worker is killed.
        thread = threading.Thread(target=self._drive, name=f"straggler-driver-{next(self.names)}", daemon=True)
        with self.lock:
            self.drivers.add(thread)
        thread.start()

    def _drive(self) -> None:
        try:
            self._run()
        except BaseException:  # pragma: no cover - _run contains the attempts' errors
            logger.exception("straggler: a process engine runner failed")
        finally:
            worker: Optional[_Worker] = getattr(self.local, "worker", None)
            self.local.worker = None
            if worker is not None:
                self._check_in(worker)
            with self.lock:
                self.drivers.discard(threading.current_thread())

    def execute(self, attempt: Attempt, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        assert isinstance(attempt, ProcessAttempt)
        task = attempt.task
        try:
            payload = _dumps((fn, args, kwargs, attempt.context()))
        except Exception as exc:
            raise pickle.PicklingError(
                f"task {task.id}, attempt {attempt.number}: cannot send fn, args or kwargs to a worker process: "
                f"{exc}"
            ) from exc
        self.local.tried = False
        # A worker that died before the attempt reached it (killed while idle) cost the attempt
        # nothing: send it once more, to a fresh worker.
        for delivery in range(2):
            worker = self._worker()
            with self.lock:
                if attempt.cancelled:
                    raise AttemptCancelled(f"task {task.id}: attempt {attempt.number} was stopped before it started")
                self._bind(worker, attempt)
            try:
                return self._exchange(worker, attempt, payload, resend=delivery == 0)
            except _Undelivered:
                continue
            finally:
                with self.lock:
                    attempt.beat  # noqa: B018 (the last read of the slot, before it is unbound)
                    attempt.worker = None
                    worker.attempt = None
                    doomed = worker.doomed
                if doomed:
                    self.local.worker = None
                    self._retire(worker)
        raise AssertionError("unreachable: the second delivery raises or returns")  # pragma: no cover

    def _worker(self) -> _Worker:
        """The driver's worker: the one it holds, an idle one, or a new one."""
        worker: Optional[_Worker] = getattr(self.local, "worker", None)
        if worker is not None and worker.usable():
            return worker
        self.local.worker = None
        if worker is not None:
            self._retire(worker)  # died between two attempts
        while True:
            with self.lock:
                worker = self.idle.pop() if self.idle else None
            if worker is None:
                worker = self._start_worker()
                break
            if worker.usable():
                break
            self._retire(worker)
        self.local.worker = worker
        return worker

    def _start_worker(self) -> _Worker:
        context = self.context
        slot = context.RawArray("d", _SLOT_SIZE)
        # One start at a time: a fork while another worker's pipe end is still open here
        # would give that end to the new child, and the first worker's death would then never
        # reach its pipe as EOF.
        with self.start_lock:
            if self.closed:
                raise RuntimeError("the process engine was closed")
            parent_end, child_end = context.Pipe()
            with self.lock:
                inherited = [parent_end, *(w.conn for w in self.workers)] if self.fork else []
            process = context.Process(
                target=_worker_main, args=(child_end, slot, inherited),
                name=f"straggler-worker-{next(self.names)}",
            )
            try:
                process.start()
            except BaseException:
                parent_end.close()
                raise
            finally:
                child_end.close()  # the worker holds it now: EOF on our end means it is gone
        worker = _Worker(process, parent_end, slot)
        with self.lock:
            self.workers.add(worker)
        ready = False
        # Bounded: a worker stopped (SIGSTOP) or stuck importing while it starts must not
        # hold its runner, the task's timeout or shutdown() for ever.
        if parent_end in wait([parent_end, process.sentinel], timeout=_START_TIMEOUT):
            try:
                ready = parent_end.recv_bytes() == b""
            except (EOFError, OSError):
                pass
        if not ready:
            exitcode = process.exitcode
            self._retire(worker)
            if exitcode is None:
                raise RuntimeError(f"a worker process could not start within {_START_TIMEOUT:g} s")
            raise RuntimeError(f"a worker process could not start: it {_how_it_ended(exitcode)}")
        return worker

    def runner_ready(self) -> bool:
        worker: Optional[_Worker] = getattr(self.local, "worker", None)
        return (worker is not None and not worker.doomed) or getattr(self.local, "tried", False)

    def make_ready(self) -> None:
        ledger = self.ledger
        with ledger.lock:
            waiting = bool(ledger.ready or ledger.intake)
        if not waiting:
            return  # another runner took the work meanwhile: no worker to start
        if sys.is_finalizing():
            # The interpreter is exiting (it waited for the work first) and no process can
            # start now: let the runner go on without one (an attempt would fail, not loop).
            self.local.tried = True
            return
        try:
            self._worker()
        except Exception:
            # The next attempt tries again and fails with the reason (counted, so a worker that
            # cannot start ends in failed Futures, not in a loop).
            logger.warning("straggler: could not start a worker process", exc_info=True)
            self.local.tried = True

    def _bind(self, worker: _Worker, attempt: ProcessAttempt) -> None:
        """Under the engine's lock, while the worker is idle: the slot is the attempt's now."""
        slot = worker.slot
        worker.tag += 1.0
        slot[_TAG] = worker.tag
        slot[_CANCEL] = 0.0
        attempt.tag = worker.tag
        attempt.seq = slot[_SEQ]
        clock = attempt.clock
        attempt.offset = 0.0 if clock is time.monotonic else clock() - time.monotonic()
        attempt.worker = worker
        worker.attempt = attempt

    def _exchange(self, worker: _Worker, attempt: ProcessAttempt, payload: bytes, resend: bool) -> Any:
        conn, process = worker.conn, worker.process
        reply: Optional[bytes] = None
        try:
            conn.send_bytes(payload)
        except OSError:
            pass  # the worker is gone: its sentinel says how
        else:
            # The pipe or the process's end, whichever first: a dead worker never hangs us.
            if conn in wait([conn, process.sentinel]):
                try:
                    reply = conn.recv_bytes()
                except (EOFError, OSError):
                    reply = None
        if reply is None:
            error = self._death(worker, attempt)
            if resend and worker.slot[_RECEIVED] != attempt.tag and not attempt.cancelled:
                raise _Undelivered()
            raise error
        return _decode(reply, attempt)

    def _death(self, worker: _Worker, attempt: ProcessAttempt) -> BaseException:
        """The worker ended (or its pipe broke) while it ran ``attempt``: the error to settle
        the attempt with. The worker is doomed (replaced before the next attempt)."""
        process = worker.process
        with self.lock:
            worker.doomed = True
        process.join(1.0)
        if process.exitcode is None:
            process.kill()  # a live worker with a broken pipe is of no use
            process.join(5.0)
        task = attempt.task
        if attempt.cancelled:
            # Our own stop: the ledger makes it a kill, or the timeout failure.
            return AttemptCancelled(
                f"task {task.id}: attempt {attempt.number} was stopped (its worker process "
                f"{_how_it_ended(process.exitcode)})"
            )
        return WorkerDied(task.id, attempt.number, process.pid, process.exitcode)

    def _check_in(self, worker: _Worker) -> None:
        with self.lock:
            keep = not self.closed and worker.usable()
            if keep:
                self.idle.append(worker)
        if not keep:
            self._retire(worker)

    def _retire_all(self, workers: list[_Worker]) -> None:
        for worker in workers:
            self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        """End a worker that runs no attempt, and join it. Never raises."""
        with self.lock:
            self.workers.discard(worker)
        try:
            _end_process(worker, max(self.stop_grace, 0.1))
        except Exception:  # pragma: no cover - a driver or the reaper must go on
            logger.exception("straggler: could not end worker process %s", worker.process.pid)

    # --- the stop ladder --------------------------------------------------------------------

    def stop_attempt(self, attempt: Attempt) -> None:
        """Under the ledger's lock: step 1, the flag its heartbeat reads; schedule step 2."""
        with self.lock:
            worker = getattr(attempt, "worker", None)
            if worker is None:
                return  # not in a worker yet (its driver checks the flag) or already back
            worker.slot[_CANCEL] = _TIMED_OUT if attempt.timed_out is not None else _LOST
        self._schedule(attempt, worker, 2)  # type: ignore[arg-type]

    def _schedule(self, attempt: ProcessAttempt, worker: _Worker, step: int) -> None:
        import heapq

        with self.steps_changed:
            heapq.heappush(self.steps, (time.monotonic() + self.stop_grace, next(self.order), attempt, worker, step))
            if self.stopper is None:
                self.stopper = threading.Thread(target=self._stop_loop, name="straggler-stopper", daemon=True)
                self.stopper.start()
            self.steps_changed.notify()

    def _stop_loop(self) -> None:
        import heapq

        while True:
            with self.steps_changed:
                while True:
                    if self.closed and not self.steps:
                        self.stopper = None
                        return
                    now = time.monotonic()
                    if self.steps and self.steps[0][0] <= now:
                        _, _, attempt, worker, step = heapq.heappop(self.steps)
                        break
                    self.steps_changed.wait(None if not self.steps else self.steps[0][0] - now)
            try:
                with self.lock:
                    if worker.attempt is not attempt:
                        continue  # it ended on its own (the worker may run another one now)
                    worker.doomed = True
                    if step == 2:
                        worker.process.terminate()
                    else:
                        worker.process.kill()
                if step == 2:
                    self._schedule(attempt, worker, 3)
            except Exception:  # pragma: no cover - this thread must not die
                logger.exception("straggler: stopping attempt %d of task %d failed", attempt.number,
                                 attempt.task.id)

    # --- closing ----------------------------------------------------------------------------

    def close(self, wait: bool) -> None:
        """End the idle workers (a busy one ends when its driver checks it in); with ``wait``,
        until every driver and worker has ended."""
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
            drivers = list(self.drivers)
        with self.steps_changed:
            self.steps_changed.notify()
        if idle:
            if wait:
                for worker in idle:
                    self._retire(worker)
            else:
                reaper = threading.Thread(target=self._retire_all, args=(idle,), name="straggler-reaper",
                                          daemon=True)
                try:
                    reaper.start()
                except RuntimeError:
                    # At interpreter exit (3.12+) no new thread may start: end them here.
                    self._retire_all(idle)
                else:
                    self.reapers.append(reaper)
        if wait:
            for thread in drivers:
                if thread is not threading.current_thread():
                    thread.join()
            for reaper in self.reapers:
                reaper.join()


def _decode(reply: bytes, attempt: Attempt) -> Any:
    where = f"task {attempt.task.id}, attempt {attempt.number}"
    try:
        status, value, text = pickle.loads(reply)
    except Exception as exc:
        raise pickle.UnpicklingError(f"{where}: cannot read the worker process's reply: {exc}") from exc
    if status == _OK:
        return value
    if status == _RAISED:
        raise value from RemoteTraceback(text)
    last = text.strip().splitlines()[-1] if text else ""
    if status == _UNLOADABLE:
        raise pickle.UnpicklingError(f"{where}: the worker process cannot load fn or its arguments: {last}"
                                     ) from RemoteTraceback(text)
    raise pickle.PicklingError(f"{where}: the worker process cannot send {value} back: {last}"
                               ) from RemoteTraceback(text)


def _end_process(worker: _Worker, grace: float) -> None:
    """Ask an idle worker to leave, then terminate and kill what is still there after
    ``grace``; join it."""
    process = worker.process
    try:
        worker.conn.send_bytes(b"")
    except OSError:
        pass  # gone already
    try:
        worker.conn.close()
    except OSError:
        pass
    process.join(grace)
    if process.exitcode is None:
        process.terminate()
        process.join(grace)
    if process.exitcode is None:
        process.kill()
        process.join()
    process.close()


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        process = worker.process
        try:
            if process.exitcode is None:
                process.kill()
            process.join(5.0)
        except Exception:  # pragma: no cover - at exit, nothing to report to
            pass
