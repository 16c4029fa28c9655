"""The Ray engine: ``SpeculativeExecutor("ray")`` (or the ``ray`` module) runs attempts as Ray
tasks.

Importing this module does not import ``ray``; only an executor built on Ray (and the worker
side, which runs inside Ray already) touches it. It uses the Ray runtime the user started
(``ray.init(...)``, a cluster address) and, when none runs, starts a local one with
``ray.init()``, as Ray itself does on the first ``.remote()``; it never shuts Ray down.

How an attempt travels:

- Every attempt is one Ray task with ``max_retries=0`` and ``retry_exceptions=False``: the
  executor retries, Ray does not. It asks for the task's ``sg.options(cpus=, gpus=, memory=)``
  as ``num_cpus``/``num_gpus``/``memory``; a copy asks for the same.
- Attempts go to Ray in submission order, a few per slot ahead (``IN_FLIGHT``), originals
  with Ray's default placement. Copies and
  retries are pinned to the node ``plan_copies`` chose (``NodeAffinitySchedulingStrategy``,
  ``soft=False``): a node the task has not run on, not blocked (Flink) nor slow (LATE). A
  node is a Ray node id, numbered in the order the executor first saw it; the slots of a node
  are its CPUs, read from ``ray.nodes()`` at most once a second.
- The wrapper that runs in the worker reports the attempt's start (with its node) and its
  heartbeats through the process's report channel: a flusher thread sends them in batches to
  a small asynchronous actor (``_Reports``, no CPU, on the head node; one per Ray job, each
  executor a channel in it), and the engine's poll thread drains its channel in batches (a long poll, so a report
  waits for no timer). A ``heartbeat()`` in a Ray task stores a tuple and returns; the
  actor's reply to a flush carries the cancel flags of the worker's attempts. Worker times
  become executor times by the worker's own clock differences (``sent - at``).
- Completions: a results thread waits for every attempt's result in batches (``ray.wait``,
  then one ``ray.get``); the task's own exception travels as a value, so it reaches the
  Future as itself.
- Stopping (a loser, a timed-out attempt, a cancelled task) is a ladder: the cancel flag at
  once (the next ``heartbeat()`` raises ``AttemptCancelled``); after ``stop_grace``,
  ``ray.cancel(ref)``, a ``KeyboardInterrupt`` in the task that lands at its next Python
  bytecode (on Ray 2.60 a blocking C call such as ``time.sleep`` delays it: measured); after
  another ``stop_grace``, ``ray.cancel(ref, force=True)``, which ends the worker process even
  inside a C call. An attempt that has not started is cancelled in Ray's queue at once.
- Faults: a worker or node that dies, a result object lost, a pinned node gone: the attempt is
  "lost" (re-queued, never a failure; a task that loses ``max_failures`` attempts this way
  fails with the last error). Every call to Ray that may wait on another process runs in a
  thread of the engine (the poll thread, the call queue), never under the ledger's lock, and
  every error there is logged and survived.
- Resources no node has: a task whose ``sg.options(cpus=, gpus=, memory=)`` exceed what the
  largest live node has (read again first) fails with ``ValueError`` at submission to Ray,
  rather than wait in Ray's queue for a node that may never come (an autoscaling cluster must
  have such a node up first).
- Ray shut down under a running executor (``ray.shutdown()`` mid-job): every attempt waiting
  for a result, and every later one, fails with ``RuntimeError``; no thread of ours calls Ray
  again (Ray's auto-init would start a new runtime). Calling ``ray.shutdown()`` while an
  executor still has work is racy in Ray itself: a call already on its way may end the process
  (Ray's "core worker has already been shutdown"); shut the executor down first.
- A report actor killed for good (``ray.kill``) is replaced by the poll thread; workers look
  it up again and re-send the starts that did not get through.

Not done: originals are never moved off a busy node (Ray queues them itself) and do not avoid
Flink's blocked nodes (Ray offers no "not on these nodes" strategy for a single task); only
copies and retries are placed.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import logging
import os
import shutil
import threading
import time
import types
from typing import Any, Callable, Optional

from straggler._context import AttemptCancelled, _enter, _leave
from straggler._engines import EngineBase
from straggler._engines._remote import CallQueue, ClusterNodes, ReportChannel, cancel_waiting_originals, sweep_staging
from straggler._engines.runners import make_staging, serving
from straggler._ledger import Attempt, FollowUp, Ledger, Task
from straggler._scheduling import NodeBlocklist

logger = logging.getLogger("straggler")

__all__: list[str] = []

# Ray's namespace for the executors' report actors (a named actor is found by its namespace).
NAMESPACE = "straggler"
# The resource only the head node has.
HEAD = "node:__internal_head__"
# The poll thread's long poll: the actor answers at once when reports wait, else after this.
POLL_WAIT = 0.2
# Attempts handed to Ray at once: this many per slot, and at least MIN_IN_FLIGHT.
IN_FLIGHT = 4
MIN_IN_FLIGHT = 64
# The results thread's batching window: ``ray.wait`` returns what is ready after this long.
RESULT_WAIT = 0.02
# The longest any of our threads waits for one answer from Ray before it logs and goes on.
CALL_TIMEOUT = 10.0

RAY_GONE = "the Ray runtime was shut down under the executor"

# What the wrapper returns first: how the attempt ended.
_FINISHED, _RAISED, _STOPPED = 0, 1, 2


# --- the worker side ---------------------------------------------------------------------------

class _RayChannel(ReportChannel):
    """One executor's reports from one Ray worker process, pushed to its report actor; the
    actor's answer marks the attempts that must stop and updates the node numbers."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reports: Any = None
        self.nodes_version = -1

    def connect(self) -> None:
        import ray

        context = ray.get_runtime_context()
        self.address = context.get_node_id()
        # Never fails the attempt: an actor being restarted is looked up again at the next send.
        try:
            self.reports = ray.get_actor(reports_name(context.get_job_id()), namespace=NAMESPACE)
            self._learn(ray.get(self.reports.nodes.remote(self.name), timeout=CALL_TIMEOUT))
        except Exception:
            logger.debug("straggler: could not reach the report actor yet", exc_info=True)

    def _learn(self, numbered: Optional[tuple[int, dict[str, int]]]) -> None:
        if numbered is not None:
            self.nodes_version, nodes = numbered
            self.nodes = dict(nodes)

    def send(self, message: dict) -> None:
        import ray

        if self.reports is None:
            self.reports = ray.get_actor(reports_name(ray.get_runtime_context().get_job_id()), namespace=NAMESPACE)
        message["nodes_version"] = self.nodes_version
        try:
            cancelled, numbered = ray.get(self.reports.push.remote(self.name, message), timeout=CALL_TIMEOUT)
        except Exception:
            self.reports = None  # killed for good, or a handle of a stale actor: looked up again next time
            raise
        self._learn(numbered)
        for key in cancelled:
            attempt = self.running.get(key)
            if attempt is not None:
                attempt.cancelled = True


_channels: dict[str, _RayChannel] = {}
_channels_lock = threading.Lock()


def _channel(name: str) -> _RayChannel:
    channel = _channels.get(name)
    if channel is None:
        with _channels_lock:
            channel = _channels.get(name)
            if channel is None:
                channel = _channels[name] = _RayChannel(name)
    return channel


def _run_attempt(job: tuple[str, str, tuple, Optional[str], str, Callable[..., Any], tuple, dict]
                 ) -> tuple[int, Any, str, float, Optional[str]]:
    """What Ray runs for every attempt: ``job`` is (channel name, key, (task, attempt,
    speculative), output, staging prefix, fn, args, kwargs), one argument because Ray's cost
    per task grows with the number of arguments (measured). Returns (how it ended, its value or the exception it
    raised, the node id, seconds, staging directory). The task's exception is returned, not
    raised, so that Ray does not wrap it.

    With an ``output``, the execution makes its own staging directory here, reports it with
    the start (so the executor removes it if the run is lost or killed) and returns it.
    ``KeyboardInterrupt`` (``ray.cancel``) is let through: Ray reports the task cancelled.
    """
    channel_name, key, fields, output, prefix, fn, args, kwargs = job
    staging = make_staging(output, prefix) if output is not None else None
    channel = _channel(channel_name)
    attempt = channel.enter(key, fields, staging)
    previous = _enter(attempt)
    how = _FINISHED
    try:
        value = fn(*args, **kwargs)
    except AttemptCancelled:
        value, how = None, _STOPPED
    except KeyboardInterrupt:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    except BaseException as exc:  # the task's own error, SystemExit included, goes to its Future
        value, how = exc, _RAISED
    finally:
        _leave(previous)
        channel.leave(attempt)
    if how != _FINISHED and staging is not None:
        shutil.rmtree(staging, ignore_errors=True)  # a failed or stopped execution's output never counts
        staging = None
    return how, value, channel.address, time.monotonic() - attempt.start, staging


class _Channel:
    """One executor's state in the report actor."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.arrived = asyncio.Event()
        self.cancelled: set[str] = set()
        self.numbered: tuple[int, dict[str, int]] = (0, {})
        self.closed = False


class _Reports:
    """The report actor of one Ray job (one driver), shared by its executors, each with its
    own channel (asynchronous: one event loop, no CPU). Workers push batches of starts and
    heartbeats; an executor's poll thread drains its channel; the engine marks attempts to
    stop, and each push is answered with the pusher's attempts among them. Shared, because
    an actor is a process of its own: one per executor would cost each executor a process
    start (about half a second, measured)."""

    def __init__(self) -> None:
        self.generation = os.urandom(8).hex()   # new after Ray restarted the actor (its state is gone)
        self.channels: dict[str, _Channel] = {}

    def _channel(self, name: str) -> _Channel:
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = _Channel()
        return channel

    async def push(self, name: str, message: dict) -> tuple[list[str], Optional[tuple[int, dict[str, int]]]]:
        channel = self._channel(name)
        if channel.closed:
            return [], None
        channel.messages.append(message)
        channel.arrived.set()
        cancelled = [key for key in message["running"] if key in channel.cancelled]
        numbered = channel.numbered if message["nodes_version"] != channel.numbered[0] else None
        return cancelled, numbered

    async def drain(self, name: str, wait: float) -> tuple[str, list[dict]]:
        channel = self._channel(name)
        if not channel.messages and not channel.closed:
            try:
                await asyncio.wait_for(channel.arrived.wait(), wait)
            except asyncio.TimeoutError:
                pass
        channel.arrived.clear()
        messages, channel.messages = channel.messages, []
        return self.generation, messages

    async def cancel(self, name: str, keys: list[str]) -> None:
        self._channel(name).cancelled.update(keys)

    async def forget(self, name: str, keys: list[str]) -> None:
        self._channel(name).cancelled.difference_update(keys)

    async def learn_nodes(self, name: str, nodes: dict[str, int]) -> None:
        channel = self._channel(name)
        channel.numbered = (channel.numbered[0] + 1, nodes)

    async def nodes(self, name: str) -> tuple[int, dict[str, int]]:
        return self._channel(name).numbered

    async def close(self, name: str) -> None:
        """The executor is done: a drain waiting returns, and the channel is dropped (a late
        push recreates it closed-less, harmlessly: nobody drains it)."""
        channel = self.channels.pop(name, None)
        if channel is not None:
            channel.closed = True
            channel.arrived.set()


def reports_name(job_id: str) -> str:
    return f"straggler-reports-{job_id}"


# The report actors this process created, by name: an actor lives while its creator holds its
# handle (handles found by name do not keep it), so the creator's stays here for the job.
_created: dict[str, Any] = {}
_created_lock = threading.Lock()


def _job_reports(ray: Any) -> Any:
    """The running job's report actor: found by name, else created on the head node if it can
    (soft), so that losing a worker node loses no reports. Should its node die all the same,
    Ray restarts it elsewhere and each executor's poll thread tells it what the old one knew."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    name = reports_name(ray.get_runtime_context().get_job_id())
    with _created_lock:
        try:
            return ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            pass  # none yet (or the runtime was started again): create it
        head = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and HEAD in n.get("Resources", {})]
        options: dict[str, Any] = dict(name=name, namespace=NAMESPACE, max_concurrency=1000)
        if head:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(head[0], soft=True)
        actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_Reports)
        handle = _created[name] = actor.options(**options).remote()
        return handle


# --- the driver side ---------------------------------------------------------------------------

def is_ray(engine: Any) -> bool:
    """True for ``"ray"`` and for the ``ray`` module itself."""
    if isinstance(engine, str):
        return engine == "ray"
    return isinstance(engine, types.ModuleType) and engine.__name__ == "ray"


_remote_fn: Any = None


def _remote() -> Any:
    global _remote_fn
    if _remote_fn is None:
        import ray

        _remote_fn = ray.remote(max_retries=0, retry_exceptions=False)(_run_attempt)
    return _remote_fn


class RayAttempt(Attempt):
    """An attempt handed to Ray: its key and result ref, and a node once it reports its start
    (``started``); ``pinned`` is the node a copy or retry was sent to (-1: Ray chose)."""

    __slots__ = ("node", "key", "ref", "pinned", "started", "address", "steps")

    def __init__(self, task: Task, number: int, speculative: bool, clock: Callable[[], float]) -> None:
        super().__init__(task, number, speculative, clock)
        self.node = -1
        self.key = ""
        self.ref: Any = None
        self.pinned = -1
        self.started = False
        self.address = ""
        self.steps = 0  # stop-ladder steps taken: 1 flag, 2 ray.cancel, 3 force


class RayEngine(ClusterNodes, EngineBase):
    """The executor's side of a Ray runtime: a poll thread that drains the executor's channel
    of the report actor, a results thread that waits for the attempts' results, and an event
    thread that applies reports, settles ended attempts (through the ledger's methods) and
    climbs the stop ladder; see the module's docstring."""

    def __init__(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init()
        self.ray = ray
        self.init_nodes()
        self.token = ""
        self.channel = ""
        self.reports: Any = None                       # the report actor's handle
        self.generation = ""                           # the report actor's, as last drained
        self.by_key: dict[str, RayAttempt] = {}        # key -> its live attempt
        self.to_stop: list[RayAttempt] = []            # attempts to stop once the lock is free
        self.to_sweep: list[Task] = []                 # settled tasks whose stray staging dirs to remove
        self.ladder: list[tuple[float, int, RayAttempt]] = []   # (when, order, attempt): next step due
        self.order = itertools.count()
        self.nodes_refreshed = -1.0
        self.largest: dict[str, float] = {}             # resource -> the most a live node has
        self.slots = 1
        self.arrived: collections.deque = collections.deque()    # (received, message) from the actor
        self.finished: collections.deque = collections.deque()   # (attempt, result, error)
        self.submitted: collections.deque = collections.deque()  # (ref, attempt) for the results thread
        self.wake_results = threading.Condition(threading.Lock())
        self.wake_events = threading.Condition(threading.Lock())
        self.closing = False
        self.closed = False
        self.calls: Optional[CallQueue] = None
        self.threads: list[threading.Thread] = []
        self.refresh_nodes(force=True)

    def bind(self, ledger: Ledger, blocklist: NodeBlocklist, interval: float) -> None:
        super().bind(ledger, blocklist, interval)
        self.token = ledger.token
        self.channel = f"straggler-{self.token}"
        self.calls = CallQueue(f"straggler-ray-calls-{self.token}", guard=self.ray.is_initialized)
        with ledger.lock:
            ledger.slots = self.slots
        # Got (or created) before any attempt is submitted, so that a worker finds it by name.
        self.reports = _job_reports(self.ray)
        self.reports.learn_nodes.remote(self.channel, dict(self.nodes))
        for target, name in ((self._poll_loop, "poll"), (self._event_loop, "events"), (self._results_loop, "results")):
            thread = threading.Thread(target=target, name=f"straggler-ray-{name}-{self.token}", daemon=True)
            thread.start()
            self.threads.append(thread)

    # --- nodes ------------------------------------------------------------------------------

    def refresh(self) -> None:
        self.refresh_nodes()

    def refresh_nodes(self, force: bool = False) -> None:
        """Re-read the cluster's live nodes and their CPUs (a call to Ray's control store; at
        most once a second unless forced). Called without the ledger's lock."""
        now = time.monotonic()
        if not force and now - self.nodes_refreshed < 1.0:
            return
        self.nodes_refreshed = now
        if not self.ray.is_initialized():  # ray.nodes would start a new runtime
            return
        live = [n for n in self.ray.nodes() if n.get("Alive") or n.get("alive")]
        alive = {n["NodeID"]: int(n.get("Resources", {}).get("CPU", 0)) for n in live}
        self.largest = {
            key: max((n.get("Resources", {}).get(key, 0) for n in live), default=0)
            for key in ("CPU", "GPU", "memory")
        }
        ledger: Optional[Ledger] = getattr(self, "ledger", None)  # None until bound
        lock = ledger.lock if ledger is not None else threading.Lock()
        with lock:
            known = len(self.addresses)
            self.nthreads = {self.node_of_locked(address): cpus for address, cpus in alive.items()}
            self.slots = max(1, sum(self.nthreads.values()))
            if ledger is not None:
                ledger.slots = self.slots
            learned = dict(self.nodes) if len(self.addresses) != known else None
        if learned is not None and self.reports is not None:
            self.reports.learn_nodes.remote(self.channel, learned)

    def nodes_locked(self, tasks: list[Optional[Task]], det_tasks: list[int], now: float) -> Optional[dict]:
        """The planner's view of the nodes; None on a runtime of one node, which leaves no
        node to choose: copies then go where Ray puts them, as on a thread pool."""
        if len(self.nthreads) <= 1:
            return None
        return super().nodes_locked(tasks, det_tasks, now)

    # --- dispatch ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Hand queued attempts to Ray (called with the ledger's lock free), as long as fewer
        than ``IN_FLIGHT`` per slot (at least ``MIN_IN_FLIGHT``) wait or run there: enough to
        keep every CPU busy between two rounds of the results thread, few enough that a copy
        never queues in Ray behind a whole job's originals and that waiting for the results
        stays cheap (``ray.wait`` costs in the refs it watches)."""
        ledger = self.ledger
        batch = []
        with ledger.lock:
            room = max(MIN_IN_FLIGHT, IN_FLIGHT * self.slots) - len(self.by_key)
            while room > 0:
                room -= 1
                taken = ledger.take_locked(RayAttempt, start=False)
                if taken is None:
                    break
                attempt, node = taken
                assert isinstance(attempt, RayAttempt)
                task = attempt.task
                attempt.key = f"{self.token}-{task.id}-{attempt.number}"
                ledger.busy += 1
                if node >= 0 and node in self.nthreads:
                    attempt.pinned = node
                    self.copies_on[node] += 1
                elif not attempt.speculative:
                    self.unstarted_originals += 1
                self.by_key[attempt.key] = attempt
                batch.append((attempt, task.fn, task.args, task.kwargs))
        for attempt, fn, args, kwargs in batch:
            self._submit(attempt, fn, args, kwargs)

    def _submit(self, attempt: RayAttempt, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        task = attempt.task
        try:
            if not self.ray.is_initialized():
                # Never a call that would start a new runtime (Ray's auto-init) under the job.
                raise RuntimeError(RAY_GONE)
            remote = _remote()
            task_options = task.options
            options: dict[str, Any] = {}
            if task_options is not None:
                if task_options.cpus != 1:
                    options["num_cpus"] = task_options.cpus
                if task_options.gpus:
                    options["num_gpus"] = task_options.gpus
                if task_options.memory is not None:
                    options["memory"] = task_options.memory
                self._check_fits(task, task_options)
            if attempt.pinned >= 0:
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                    self.addresses[attempt.pinned], soft=False)
            if options:
                remote = remote.options(**options)
            prefix = self.ledger.staging_prefix(task, attempt.number) if task.output is not None else ""
            fields = (task.id, attempt.number, attempt.speculative)
            ref = remote.remote((self.channel, attempt.key, fields, task.output, prefix, fn, args, kwargs))
        except Exception as exc:  # e.g. Ray shut down, an argument that does not pickle: a failure
            with self.wake_events:
                self.finished.append((attempt, None, exc))
                self.wake_events.notify()
            return
        attempt.ref = ref
        with self.wake_results:
            self.submitted.append((ref, attempt))
            self.wake_results.notify()

    def _check_fits(self, task: Task, task_options: Any) -> None:
        """Raise ValueError if no live node has the CPUs, GPUs or memory the task asks for:
        Ray would keep it waiting for ever (for a node an autoscaler might add). The nodes are
        read again first, in case one just joined."""
        asked = (("cpus", "CPU", task_options.cpus), ("gpus", "GPU", task_options.gpus),
                 ("memory", "memory", task_options.memory or 0))
        for force in (False, True):
            if force:
                self.refresh_nodes(force=True)
            largest = self.largest
            misfit = [(name, key, amount) for name, key, amount in asked if amount > largest.get(key, 0)]
            if not misfit:
                return
        name, key, amount = misfit[0]
        raise ValueError(f"task {task.id}: {name}={amount!r}, but no node of the Ray cluster has that much "
                         f"(the largest has {key}={largest.get(key, 0)!r}); Ray would keep it waiting")

    # --- the results thread -----------------------------------------------------------------

    def _results_loop(self) -> None:
        """Wait for the results of every attempt handed to Ray, in batches (``ray.wait`` over
        them all, then one ``ray.get`` of those ready): far cheaper per task than a callback
        per result (``ObjectRef.future()``, measured)."""
        ray = self.ray
        waiting: dict[Any, RayAttempt] = {}
        while True:
            with self.wake_results:
                while not (self.submitted or waiting or self.closing):
                    self.wake_results.wait()
                if self.closing and not (self.submitted or waiting):
                    return
                submitted, self.submitted = self.submitted, collections.deque()
            waiting.update(submitted)
            try:
                if not ray.is_initialized():  # ray.wait would start a new runtime
                    raise RuntimeError(RAY_GONE)
                ready, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=RESULT_WAIT, fetch_local=True)
                ended = self._fetch(ready, waiting)
            except BaseException as exc:  # SystemExit: Ray is shutting down in this process
                if ray.is_initialized() and not isinstance(exc, SystemExit):
                    logger.exception("straggler: waiting for Ray results failed; retrying")
                    time.sleep(0.1)
                    continue
                # Ray was shut down under the executor: its results are gone, and every attempt
                # waiting for one fails (its retries fail at submission: no runtime is started).
                if waiting:
                    logger.error("straggler: %s; %d attempts fail", RAY_GONE, len(waiting))
                ended = [(attempt, None, RuntimeError(RAY_GONE)) for attempt in waiting.values()]
                waiting.clear()
            if ended:
                with self.wake_events:
                    self.finished.extend(ended)
                    self.wake_events.notify()

    def _fetch(self, ready: list, waiting: dict[Any, RayAttempt]) -> list[tuple[RayAttempt, Any, Any]]:
        """(attempt, result, error) of the refs ``ready``, each taken out of ``waiting``; one
        whose value cannot be had yet (being reconstructed) stays there."""
        if not ready:
            return []
        ray = self.ray
        try:
            values = ray.get(ready, timeout=CALL_TIMEOUT)
            return [(waiting.pop(ref), value, None) for ref, value in zip(ready, values)]
        except Exception:
            pass  # one of them failed: one by one
        ended: list[tuple[RayAttempt, Any, Optional[BaseException]]] = []
        for ref in ready:
            try:
                ended.append((waiting[ref], ray.get(ref, timeout=CALL_TIMEOUT), None))
            except ray.exceptions.GetTimeoutError:
                continue
            except Exception as exc:
                ended.append((waiting[ref], None, exc))
            del waiting[ref]
        return ended

    # --- the poll thread --------------------------------------------------------------------

    def _poll_loop(self) -> None:
        ray = self.ray
        failures = 0
        while not self.closing:
            if not ray.is_initialized():  # ray.get would start a new runtime
                logger.warning("straggler: Ray shut down under a running executor; no more reports")
                return
            try:
                generation, messages = ray.get(self.reports.drain.remote(self.channel, POLL_WAIT),
                                               timeout=CALL_TIMEOUT)
                failures = 0
                if generation != self.generation:
                    if self.generation:
                        self._restore()
                    self.generation = generation
            except BaseException as exc:  # SystemExit: Ray is shutting down in this process
                if self.closing or isinstance(exc, SystemExit) or not ray.is_initialized():
                    if not self.closing:
                        logger.warning("straggler: Ray shut down under a running executor; no more reports")
                    return
                failures += 1
                # Logged once per run of failures; the results still arrive through their refs.
                if failures == 1:
                    logger.warning("straggler: could not read the Ray workers' reports; retrying", exc_info=True)
                time.sleep(min(1.0, 0.05 * failures))
                if isinstance(exc, ray.exceptions.RayActorError) and not self.closing and ray.is_initialized():
                    # Killed for good (ray.kill), not Ray shutting down (checked again after the
                    # pause: a call to Ray after its shutdown would start a new runtime): a new
                    # actor, whose generation tells us to restore it.
                    try:
                        self.reports = _job_reports(ray)
                    except Exception:
                        logger.debug("straggler: could not start a new report actor", exc_info=True)
                continue
            if messages:
                received = self.ledger.clock()
                with self.wake_events:
                    self.arrived.extend((received, message) for message in messages)
                    self.wake_events.notify()

    def _restore(self) -> None:
        """Ray restarted the report actor (its node died): tell it the node numbers and the
        attempts still told to stop. Reports that were in it are lost; the results are not."""
        logger.warning("straggler: the Ray report actor was restarted; reports in it were lost")
        with self.ledger.lock:
            nodes = dict(self.nodes)
            stopping = [key for key, attempt in self.by_key.items() if attempt.steps]
        self.reports.learn_nodes.remote(self.channel, nodes)
        if stopping:
            self.reports.cancel.remote(self.channel, stopping)

    # --- the event thread -------------------------------------------------------------------

    def _event_loop(self) -> None:
        serving(self.ledger)  # Futures' callbacks run here: shutdown(wait=True) in one must refuse
        while True:
            with self.wake_events:
                while not (self.arrived or self.finished or self.closing or self.to_stop or self._due()):
                    wait = None if not self.ladder else max(0.0, self.ladder[0][0] - time.monotonic())
                    self.wake_events.wait(wait)
                if self.closing and not (self.arrived or self.finished):
                    return
                arrived, self.arrived = self.arrived, collections.deque()
                finished, self.finished = self.finished, collections.deque()
            # Nothing may end this thread: it alone settles attempts on Ray.
            for step, args in ((self._apply_reports, (arrived,)), (self._settle, (finished,)),
                               (self._stop, ()), (self._climb, ()), (self._sweep, ()), (self.wake, ())):
                try:
                    step(*args)
                except Exception:
                    logger.exception("straggler: a step of the Ray event thread failed; continuing")

    def _due(self) -> bool:
        return bool(self.ladder) and self.ladder[0][0] <= time.monotonic()

    def _apply_reports(self, arrived: collections.deque) -> None:
        if not arrived:
            return
        ledger = self.ledger
        with ledger.lock:
            for received, message in arrived:
                address = message["worker"]
                shift = received - message["sent"]  # worker clock -> executor clock
                for key, at, staging in message["starts"]:
                    attempt = self.by_key.get(key)
                    if attempt is not None and not attempt.started:
                        self._start_locked(attempt, address, at + shift, staging)
                for key, at, progress, records in message["beats"]:
                    attempt = self.by_key.get(key)
                    if attempt is None or not attempt.started:
                        continue
                    beat = attempt.beat
                    # Clamp: two messages' shifts differ by their latencies; the Detector needs
                    # every attempt's times in order.
                    floor = attempt.start if beat is None else beat[0]
                    attempt.beat = (max(at + shift, floor), progress, records)

    def _start_locked(self, attempt: RayAttempt, address: str, at: float, staging: Optional[str]) -> None:
        """A start report (or, without one, a result) shows where and when the attempt runs."""
        ledger = self.ledger
        task = attempt.task
        node = self.node_of_locked(address)
        self._unstarted_locked(attempt)
        ledger.claim_locked(task)  # its caller may have cancelled it while it waited in Ray
        attempt.started = True
        attempt.start = min(at, ledger.clock())
        attempt.address = address
        attempt.node = node
        attempt.staging = staging
        self.running_on[node] += 1
        if not task.done:
            self.task_nodes.setdefault(task, set()).add(node)
        ledger.started_locked(attempt)

    def _unstarted_locked(self, attempt: RayAttempt) -> None:
        """The attempt no longer waits in Ray: it started, or ended without starting."""
        if attempt.pinned >= 0:
            self.copies_on[attempt.pinned] -= 1
        elif not attempt.speculative:
            self.unstarted_originals -= 1

    def _outcome(self, attempt: RayAttempt, result: Any, failure: Optional[BaseException]
                 ) -> tuple[Any, Optional[BaseException], Optional[str], Optional[float], Optional[str], bool]:
        """(value, error, node id, seconds, staging, lost?) of an ended attempt, from what
        ``ray.get`` returned (``result``) or raised (``failure``, or its submission's error)."""
        exceptions = self.ray.exceptions
        if failure is not None:
            if isinstance(failure, exceptions.TaskCancelledError):
                error = AttemptCancelled(f"task {attempt.task.id}: the Ray task was cancelled ({failure})")
                return None, error, None, None, None, not attempt.cancelled
            if isinstance(failure, (exceptions.WorkerCrashedError, exceptions.NodeDiedError,
                                    exceptions.LocalRayletDiedError, exceptions.ObjectLostError,
                                    exceptions.TaskUnschedulableError, exceptions.OutOfMemoryError)):
                # Its worker or node died, or its result was lost: lost, unless we stopped it (a
                # forced cancel ends its worker too).
                return None, failure, None, None, None, not attempt.cancelled
            if isinstance(failure, exceptions.RayTaskError):  # the wrapper failed (a result that does not pickle…)
                cause = getattr(failure, "cause", None)
                failure = cause if isinstance(cause, BaseException) else failure
            return None, failure, None, None, None, False
        how, value, address, seconds, staging = result
        if how == _FINISHED:
            return value, None, address, seconds, staging, False
        if how == _STOPPED:
            error = AttemptCancelled(f"task {attempt.task.id}: another attempt finished first")
            return None, error, address, seconds, None, False
        return None, value, address, seconds, None, False

    def _settle(self, finished: collections.deque) -> None:
        if not finished:
            return
        ledger = self.ledger
        outcomes: list[tuple[RayAttempt, Any, Optional[BaseException], Optional[str], Optional[float],
                             Optional[str], bool]] = []
        seen: set[RayAttempt] = set()
        for attempt, result, failure in finished:
            live = self.by_key.get(attempt.key)
            if live is None or live is not attempt or live in seen:
                continue  # already settled, or notified twice
            seen.add(live)
            outcomes.append((live, *self._outcome(live, result, failure)))
        follow_ups: list[FollowUp] = []
        ended = 0
        forget = []
        with ledger.lock:
            now = ledger.clock()
            for attempt, value, error, address, seconds, staging, lost in outcomes:
                task = attempt.task
                if attempt.steps:
                    forget.append(attempt.key)
                if not task.done:
                    # Not seen running yet, so its Future may still be PENDING: claim it as
                    # ThreadPoolExecutor does before a task runs (its caller may have cancelled it).
                    ledger.claim_locked(task)
                if not attempt.started:
                    if address is not None:
                        # The result came before the start report: it started then.
                        self._start_locked(attempt, address, now - (seconds or 0.0), None)
                    else:
                        # Ended before it was seen running: it has no Detector row and wasted
                        # nothing. Cancelled in Ray's queue (its task was settled) it leaves no
                        # trace; lost or failed, it ends now.
                        self._unstarted_locked(attempt)
                        attempt.start = now
                        if task.done:
                            del self.by_key[attempt.key]
                            attempt.ref = None
                            ledger.drop_locked(attempt)
                            ended += 1
                            continue
                        ledger.started_locked(attempt)
                if staging is not None:
                    if attempt.staging is not None and attempt.staging != staging:
                        shutil.rmtree(attempt.staging, ignore_errors=True)
                    attempt.staging = staging  # the execution that produced this result
                end = now if seconds is None else min(now, attempt.start + seconds)
                del self.by_key[attempt.key]
                attempt.ref = None
                if attempt.node >= 0:
                    self.running_on[attempt.node] -= 1
                ended += 1
                if lost:
                    assert error is not None
                    follow_up = ledger.lose_locked(attempt, error, end)
                else:
                    follow_up = ledger.settle_locked(attempt, value, error, end)
                if follow_up is not None:
                    follow_ups.append(follow_up)
                if task.done and not task.running:
                    self.task_nodes.pop(task, None)
                    if task.output is not None:
                        self.to_sweep.append(task)
        if forget and self.calls is not None:
            self.calls.put(self.reports.forget.remote, self.channel, forget)
        for follow_up in follow_ups:
            ledger.finish_up(follow_up)
        if ended:
            with ledger.changed:
                ledger.busy -= ended
                ledger.changed.notify_all()

    def _sweep(self) -> None:
        """Remove what executions whose start was never reported (their worker died first)
        left beside the outputs of settled tasks."""
        with self.ledger.lock:
            tasks, self.to_sweep = self.to_sweep, []
        for task in tasks:
            prefix = self.ledger.staging_prefix(task, 0)[: -len("0-")]  # ".<name>.straggler-<token>-t<id>a"
            sweep_staging(prefix, task.output or "")

    def cancel_unstarted(self) -> None:
        """``shutdown(cancel_futures=True)``: cancel the tasks whose first attempt waits in Ray
        (stopping an attempt cancels it in Ray's queue)."""
        cancel_waiting_originals(self.ledger, self.by_key)

    # --- the stop ladder --------------------------------------------------------------------

    def stop_attempt(self, attempt: Attempt) -> None:
        """The ledger's stop hook (under its lock; the flag is set): the event thread climbs
        the ladder."""
        assert isinstance(attempt, RayAttempt)
        with self.wake_events:
            self.to_stop.append(attempt)
            self.wake_events.notify()

    def _stop(self) -> None:
        """Step 1 for the attempts just told to stop: the flag reaches the worker with the
        actor's next answer; one not seen running is cancelled in Ray's queue at once."""
        with self.wake_events:
            attempts, self.to_stop = self.to_stop, []
        if not attempts:
            return
        calls = self.calls
        assert calls is not None
        flags, queued = [], []
        grace = self.stop_grace
        now = time.monotonic()
        with self.ledger.lock:
            for attempt in attempts:
                if attempt.outcome or attempt.steps:
                    continue
                attempt.steps = 1
                flags.append(attempt.key)
                if attempt.started or attempt.ref is None:  # (None: still being submitted)
                    self._next_step_locked(attempt, now + grace)
                else:
                    # Not seen running: cancel it in Ray's queue. Should it have started
                    # meanwhile, the cancel interrupts it; force follows if it runs on.
                    attempt.steps = 2
                    queued.append(attempt.ref)
                    self._next_step_locked(attempt, now + grace)
        if flags:
            calls.put(self.reports.cancel.remote, self.channel, flags)
        for ref in queued:
            calls.put(self.ray.cancel, ref)

    def _next_step_locked(self, attempt: RayAttempt, when: float) -> None:
        with self.wake_events:
            heapq.heappush(self.ladder, (when, next(self.order), attempt))

    def _climb(self) -> None:
        """Steps 2 and 3 that are due: ``ray.cancel``, then with ``force``."""
        calls = self.calls
        assert calls is not None
        now = time.monotonic()
        due = []
        with self.wake_events:
            while self.ladder and self.ladder[0][0] <= now:
                due.append(heapq.heappop(self.ladder)[2])
        if not due:
            return
        with self.ledger.lock:
            for attempt in due:
                ref = attempt.ref
                if attempt.outcome:
                    continue  # ended meanwhile
                if ref is None:
                    if self.by_key.get(attempt.key) is attempt:
                        self._next_step_locked(attempt, now + 0.05)  # still being submitted
                    continue
                attempt.steps += 1
                if attempt.steps == 2:
                    calls.put(self.ray.cancel, ref)
                    self._next_step_locked(attempt, now + self.stop_grace)
                elif attempt.steps == 3:
                    logger.info("straggler: attempt %d of task %d ignored ray.cancel for %g s; forcing it",
                                attempt.number, attempt.task.id, self.stop_grace)
                    calls.put(self.ray.cancel, ref, force=True)

    # --- the end ----------------------------------------------------------------------------

    def close(self, wait: bool) -> None:
        """Stop the engine's threads and remove the report actor; with ``wait``, until they
        have ended (also when an earlier ``close(wait=False)`` began it)."""
        with self.wake_events:
            first = not self.closing
            self.closing = True
            self.wake_events.notify()
        with self.wake_results:
            self.wake_results.notify()
        calls = self.calls
        if first and calls is not None:
            if self.reports is not None:
                calls.put(self.reports.close.remote, self.channel)  # its drain returns at once
            calls.close()
        if wait:
            threads = self.threads + ([calls.thread] if calls is not None else [])
            for thread in threads:
                if thread is not threading.current_thread():
                    # With Ray shut down under us, a call of ours to it may never return (a
                    # ray.get begun before): that daemon thread is left, never waited for.
                    while thread.is_alive():
                        thread.join(0.5)
                        if not self.ray.is_initialized():
                            thread.join(1.0)
                            if thread.is_alive():
                                logger.warning("straggler: %s is stuck in a call to Ray, which was shut "
                                               "down; left behind", thread.name)
                            break
        with self.wake_events:
            self.closed = True
