"""The Dask engine: ``SpeculativeExecutor(client)`` runs attempts on a ``distributed`` cluster.

Importing this module does not import ``distributed``; only an executor built on a Dask
client (and the worker side, which runs inside Dask already) touches it.

How an attempt travels (measured on dask 2026.8):

- Every attempt is its own Dask task with its own key (``<function>-<task>-<attempt>-<token>``):
  identical submissions would otherwise collapse into one key. The key keeps the function's
  name first, so Dask's task groups and duration estimates stay per function.
- Originals go to Dask as soon as they are submitted, without restrictions: Dask queues and
  places them as it would a plain ``client.submit``. Copies and retries are pinned to the node
  ``plan_copies`` chose (``workers=[address]``, with ``allow_other_workers=True`` so that a
  copy whose worker died still runs somewhere) and get a higher priority: Dask can avoid a
  worker only if it is told which ones to use.
- Dask futures never report ``running()``, so the attempt reports its own start: the wrapper
  that runs on the worker registers the attempt in its process's *channel*, whose flusher
  thread sends starts and the newest heartbeat of each running attempt in one
  ``Worker.log_event`` per flush (at most one per ``flush_interval``). The scheduler forwards
  them to the client's ``subscribe_topic`` handler; the engine's event thread applies them.
  Worker times become executor times by the worker's own clock differences (``sent - at``),
  so no clock needs to agree across machines; only the transport latency is not subtracted.
- A node is a worker address, numbered in the order the executor first saw it (never reused:
  a restarted worker has a new address). The planner gets each node's free threads, the
  nodes each task ran on, Flink's blocked nodes and LATE's slow nodes.
- Losers stop cooperatively. ``Future.cancel()`` cannot stop an attempt already running on a
  worker (its thread keeps the slot), so a loser that started is marked cancelled in its
  worker process by ``client.run`` (routed through the scheduler), and its next ``heartbeat``
  raises ``AttemptCancelled``; the check is a set lookup in the worker, no round trip per
  heartbeat. A loser not yet started is cancelled in Dask and never runs.
- Worker loss: Dask reruns a task whose worker died under the same key; the second start
  report of one key ends the first run as "lost" (not a failure) and starts the next in the
  Detector. Once Dask gives up (``KilledWorker`` after ``distributed.scheduler.allowed-failures``),
  the attempt is lost and a new attempt is queued, again without counting a failure; a task
  that loses ``max_failures`` attempts this way fails with the ``KilledWorker`` (a task that
  kills every worker it touches must not loop for ever).
"""

from __future__ import annotations

import collections
import logging
import shutil
import threading
import time
from typing import Any, Callable, Optional

from straggler._context import AttemptCancelled, _enter, _leave
from straggler._engines import EngineBase
from straggler._engines._interrupt import Guard
from straggler._engines._remote import CallQueue, ClusterNodes, ReportChannel, cancel_waiting_originals, sweep_staging
from straggler._engines.runners import make_staging, serving
from straggler._ledger import Attempt, FollowUp, Ledger, Task
from straggler._scheduling import NodeBlocklist, choose_node

# The longest the event thread waits for a result it saw finished: one whose worker died
# meanwhile waits for a recomputation, which must not stall every other completion.
_FETCH_TIMEOUT = 1.0

logger = logging.getLogger("straggler")

__all__: list[str] = []


# --- the worker side ---------------------------------------------------------------------------

class _WorkerChannel(ReportChannel):
    """One executor's reports from one Dask worker process, sent by ``Worker.log_event``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.worker: Any = None
        self.guard = Guard()   # interrupts an attempt that ignores its cancel flag

    def connect(self) -> None:
        from distributed import get_worker

        self.worker = get_worker()
        self.address = self.worker.address

    def send(self, message: dict) -> None:
        del message["running"]  # Dask marks cancelled attempts itself (``_mark_cancelled``)
        self.worker.log_event(self.name, message)

    def interrupt(self, keys: list[str]) -> None:
        """The ladder's second step in the worker: raise ``AttemptCancelled`` in the threads of
        these attempts if they still run (landing at their next Python bytecode)."""
        for key in keys:
            attempt = self.running.get(key)
            if attempt is not None:
                self.guard.interrupt(attempt, AttemptCancelled)


_channels: dict[str, _WorkerChannel] = {}
_channels_lock = threading.Lock()


def _channel(name: str) -> _WorkerChannel:
    channel = _channels.get(name)
    if channel is None:
        with _channels_lock:
            channel = _channels.get(name)
            if channel is None:
                channel = _channels[name] = _WorkerChannel(name)
    return channel


def _run_attempt(channel_name: str, key: str, fields: tuple, output: Optional[str], prefix: str,
                 fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[bool, Any, str, float, Optional[str]]:
    """What Dask runs for every attempt. Returns (finished?, value, worker address, seconds,
    staging directory): finished is False when the attempt stopped because another attempt won.

    With an ``output``, every execution makes its own staging directory here, when it starts:
    Dask may run one key twice (its first worker died), and the second run must not write
    into what the first left half done. The directory is reported with the start, so the
    executor can remove it if the run is lost, and returned with the result it holds.
    """
    staging = make_staging(output, prefix) if output is not None else None
    channel = _channel(channel_name)
    attempt = channel.enter(key, fields, staging)
    previous = _enter(attempt)
    try:
        value = channel.guard.call(attempt, fn, *args, **kwargs)
        finished = True
    except AttemptCancelled:
        value, finished = None, False
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)  # a failed execution's output never counts
        raise
    finally:
        _leave(previous)
        channel.leave(attempt)
    if not finished and staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
        staging = None
    return finished, value, channel.address, time.monotonic() - attempt.start, staging


async def _mark_cancelled(channel_name: str, keys: list[str], grace: float = 1.0) -> None:
    """Run by ``client.run`` in a worker process (a coroutine: ``run(wait=False)`` takes only
    those): the next heartbeat of these attempts raises; ``grace`` seconds later, an attempt
    still running gets ``AttemptCancelled`` raised in its thread."""
    channel = _channels.get(channel_name)
    if channel is None:
        return
    marked = []
    for key in keys:
        attempt = channel.running.get(key)
        if attempt is not None:
            attempt.cancelled = True
            marked.append(key)
    if marked:
        timer = threading.Timer(grace, channel.interrupt, (marked,))
        timer.daemon = True
        timer.start()


async def _learn_nodes(channel_name: str, nodes: dict[str, int]) -> None:
    """Run by ``client.run``: the executor's node ids, for ``current_attempt().node``."""
    _channel(channel_name).nodes.update(nodes)


# --- the client side ---------------------------------------------------------------------------

def client_of(executor: Any) -> Optional[tuple[Any, dict]]:
    """(client, submit options) when ``executor`` is a ``distributed.Client`` or its
    ``get_executor()``; None otherwise. Never imports ``distributed`` itself."""
    module = type(executor).__module__ or ""
    if not module.startswith("distributed"):
        return None
    import distributed
    from distributed.cfexecutor import ClientExecutor

    if isinstance(executor, distributed.Client):
        return executor, {}
    if isinstance(executor, ClientExecutor):
        return executor._client, dict(executor._kwargs)
    return None


class DaskAttempt(Attempt):
    """An attempt handed to Dask: it has a key, a Dask future, and a node once it reports its
    start (``started``); ``pinned`` is the node a copy or retry was sent to (-1: Dask chose)."""

    __slots__ = ("node", "key", "dask_future", "pinned", "started", "address")

    def __init__(self, task: Task, number: int, speculative: bool, clock: Callable[[], float]) -> None:
        super().__init__(task, number, speculative, clock)
        self.node = -1
        self.key = ""
        self.dask_future: Any = None
        self.pinned = -1
        self.started = False
        self.address = ""


class DaskEngine(ClusterNodes, EngineBase):
    """The executor's side of a Dask cluster. Runs one event thread that applies the workers'
    reports and settles ended attempts, through the ledger's methods; see the module's
    docstring."""

    def __init__(self, client: Any, submit_options: dict) -> None:
        submit_options = dict(submit_options)
        retries = submit_options.pop("retries", 0)
        if retries:
            raise ValueError(
                f"retries: the executor retries failed attempts itself (max_failures); got retries="
                f"{retries!r} from the Dask executor"
            )
        submit_options.pop("pure", None)          # every attempt has its own key anyway
        submit_options.pop("allow_other_workers", None)
        universe = submit_options.pop("workers", None)
        if isinstance(universe, str):
            universe = [universe]
        self.universe = None if universe is None else set(universe)
        self.resources = submit_options.pop("resources", None)
        if submit_options:
            raise TypeError(f"unsupported Dask submit options: {sorted(submit_options)!r}")

        self.client = client
        self.token = ""
        self.channel = ""
        self.init_nodes()   # a node is a worker address; its slots are its threads
        self.by_key: dict[str, DaskAttempt] = {}          # key -> its live attempt
        self.stopped_unstarted: set[str] = set()          # cancelled before we saw them start
        self.to_stop: list[DaskAttempt] = []              # losers to stop once the lock is free
        self.to_sweep: list[Task] = []                    # settled tasks whose stray staging dirs to remove
        self.workers_refreshed = -1.0
        self.declared: frozenset[str] = frozenset()   # resource names the workers declare
        self.free_since: Optional[float] = None
        self.grace = 0.2
        self.patience = 1.0
        self.slots = 1
        self.reports: collections.deque = collections.deque()
        self.finished: collections.deque = collections.deque()
        self.wake_events = threading.Condition(threading.Lock())
        self.closing = False
        self.closed = False
        self.calls: Optional[CallQueue] = None
        self.thread: Optional[threading.Thread] = None
        self.refresh_workers(force=True)

    def bind(self, ledger: Ledger, blocklist: NodeBlocklist, interval: float) -> None:
        super().bind(ledger, blocklist, interval)
        self.token = ledger.token
        self.channel = f"straggler-{self.token}"
        # How long a thread may stay free while originals wait before we conclude they cannot
        # take it: well above the start reports' latency (a flush window plus a check).
        self.grace = max(0.2, 2 * interval)
        self.patience = max(1.0, 5 * self.grace)
        self.calls = CallQueue(f"straggler-dask-calls-{self.token}")
        with ledger.lock:
            ledger.slots = self.slots
        if self.nodes:
            self.calls.put(self.client.run, _learn_nodes, self.channel, dict(self.nodes), wait=False,
                           on_error="ignore")
        # Subscribed before any attempt is submitted: both go through the client's one batched
        # stream to the scheduler, in order, so no report can precede the subscription.
        self.client.subscribe_topic(self.channel, self._on_report)
        self.thread = threading.Thread(target=self._event_loop, name="straggler-dask", daemon=True)
        self.thread.start()

    # --- workers and nodes ------------------------------------------------------------------

    def refresh(self) -> None:
        self.refresh_workers()

    def refresh_workers(self, force: bool = False) -> None:
        """Re-read the cluster's workers (an RPC to the scheduler; at most once a second unless
        forced)."""
        now = time.monotonic()
        if not force and now - self.workers_refreshed < 1.0:
            return
        self.workers_refreshed = now
        info = self.client.scheduler_info(n_workers=-1)
        workers = {address: int(w.get("nthreads", 1)) for address, w in info.get("workers", {}).items()}
        if self.universe is not None:
            workers = {a: n for a, n in workers.items() if a in self.universe}
        # The resources some worker declares: only those may be asked for (Dask never runs a
        # task that asks for a resource no worker has).
        self.declared = frozenset(
            name for address, w in info.get("workers", {}).items() if address in workers
            for name in (w.get("resources") or {})
        )
        learned = False
        nthreads = {}
        ledger: Optional[Ledger] = getattr(self, "ledger", None)  # None until bound
        lock = ledger.lock if ledger is not None else threading.Lock()
        with lock:
            for address, threads in workers.items():
                node = self.nodes.get(address)
                if node is None:
                    node = self.nodes[address] = len(self.addresses)
                    self.addresses.append(address)
                    learned = True
                nthreads[node] = threads
            self.nthreads = nthreads
            self.slots = max(1, sum(nthreads.values()))
            if ledger is not None:
                ledger.slots = self.slots
            nodes = dict(self.nodes)
        if learned and self.calls is not None:
            self.calls.put(self.client.run, _learn_nodes, self.channel, nodes, wait=False, on_error="ignore")

    def _waiting_alone(self, handed_before: float = float("inf")) -> list[DaskAttempt]:
        """Originals handed to Dask (before ``handed_before``), not started, and their task's
        only attempt, oldest first."""
        return sorted(
            (a for a in self.by_key.values()
             if not a.started and a.pinned < 0 and not a.speculative and len(a.task.running) == 1
             and not a.task.queued and not a.task.done and a.start < handed_before),
            key=lambda a: a.start,
        )

    def rebalance_locked(self, now: float) -> bool:
        """Start again, on an idle worker, the originals that wait behind a busy one.

        Dask keeps a task it queued on a worker there (with worker-saturation 1.1 a 1-thread
        worker holds one task beside the running one, and work stealing did not move it in
        our runs), so behind a straggler it waits as long as the straggler runs. When a thread
        has stayed free for ``grace`` while originals wait, they cannot use it: each gets a
        second attempt pinned to a free node (not a copy: it never ran); whichever starts and
        finishes first wins, and the other is cancelled in Dask before it runs.
        """
        ledger = self.ledger
        free_nodes = self.free_nodes_locked()
        if sum(max(0, f) for f in free_nodes.values()) <= 0 or self.unstarted_originals <= 0 or ledger.pending:
            self.free_since = None
            return False
        if self.free_since is None:
            self.free_since = now
        if now - self.free_since < self.grace:
            return False
        self.free_since = None
        blocked = self.blocklist.blocked(now)
        moved = False
        # Only originals that have waited well past a start report's latency: one just handed to
        # Dask (or whose report is slow under load) is not stuck.
        for attempt in self._waiting_alone(handed_before=now - self.patience):
            node = choose_node(free_nodes, blocked=blocked)
            if node is None or node == -1:
                break
            task = attempt.task
            ledger.queue_locked(task, ledger.next_number_locked(task), speculative=False, node=node)
            free_nodes[node] -= 1
            moved = True
        return moved

    def waiting_locked(self, free_slots: int) -> int:
        # Like Spark's dequeueTask, a waiting original blocks copies only if it could take the
        # free slot: one already started again elsewhere (relocated) no longer does.
        if free_slots > 0 and self.unstarted_originals:
            return len(self._waiting_alone())
        return self.unstarted_originals

    # --- dispatch ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Hand every queued attempt to Dask (called with the ledger's lock free)."""
        ledger = self.ledger
        batch = []
        with ledger.lock:
            while True:
                taken = ledger.take_locked(DaskAttempt, start=False)
                if taken is None:
                    break
                attempt, node = taken
                assert isinstance(attempt, DaskAttempt)
                task = attempt.task
                attempt.key = f"{_funcname(task.fn)}-{task.id}-{attempt.number}-{self.token}"
                attempt.pinned = node
                ledger.busy += 1
                if node >= 0:
                    self.copies_on[node] += 1
                elif not attempt.speculative:
                    self.unstarted_originals += 1
                self.by_key[attempt.key] = attempt
                batch.append((attempt, task.fn, task.args, task.kwargs))
        if not batch:
            return
        blocked = self.blocklist.blocked(ledger.clock())
        for attempt, fn, args, kwargs in batch:
            self._submit(attempt, fn, args, kwargs, blocked)

    def _resources(self, task: Task) -> Optional[dict]:
        """The ``resources=`` of an attempt: the executor's own (``get_executor(resources=…)``),
        else the task's ``cpus``/``gpus``/``memory`` as ``CPU``/``GPU``/``MEMORY``, each only
        where a worker declares it."""
        if self.resources is not None:
            return self.resources
        task_options = task.options
        if task_options is None or not self.declared:
            return None
        wanted = {"CPU": task_options.cpus, "GPU": task_options.gpus, "MEMORY": task_options.memory}
        return {name: amount for name, amount in wanted.items() if name in self.declared and amount} or None

    def _submit(self, attempt: DaskAttempt, fn: Callable[..., Any], args: tuple, kwargs: dict,
                blocked: frozenset) -> None:
        task = attempt.task
        options: dict[str, Any] = {"key": attempt.key, "pure": False}
        resources = self._resources(task)
        if resources:
            options["resources"] = resources
        try:
            if attempt.pinned >= 0 or blocked or self.universe is not None:
                # Dask leaves a task whose named workers have all gone in "no-worker" for good,
                # even with allow_other_workers: name only workers alive now (a fresh look, as
                # these attempts are few), and drop a pin to a worker that has left.
                self.refresh_workers(force=True)
            if attempt.pinned >= 0 and attempt.pinned in self.nthreads:
                options.update(workers=[self.addresses[attempt.pinned]], allow_other_workers=True, priority=1)
            elif blocked or self.universe is not None:
                # While Flink blocks nodes, new attempts avoid them by naming the others; loose,
                # so that they still run if only blocked ones are left.
                allowed = [a for a, n in self.nodes.items() if n in self.nthreads and n not in blocked]
                if allowed:
                    options.update(workers=allowed, allow_other_workers=self.universe is None)
                elif self.universe is not None:
                    # None of the user's workers is alive: wait for them, as plain Dask does,
                    # rather than run elsewhere.
                    options.update(workers=sorted(self.universe), allow_other_workers=False)
            if self.client.status in ("closing", "closed"):
                # A closed client still hands out futures, which never finish.
                raise RuntimeError(f"the Dask client is {self.client.status}")
            if attempt.number > 0:
                options["priority"] = 1
            prefix = self.ledger.staging_prefix(task, attempt.number) if task.output is not None else ""
            fields = (task.id, attempt.number, attempt.speculative)
            future = self.client.submit(_run_attempt, self.channel, attempt.key, fields, task.output, prefix,
                                        fn, args, kwargs, **options)
        except Exception as exc:  # e.g. a closed client: the attempt fails like any other
            with self.wake_events:
                self.finished.append((attempt, exc))
                self.wake_events.notify()
            return
        attempt.dask_future = future
        future.add_done_callback(self._on_done)

    # --- reports and completions (Dask's threads: only queue them) -----------------------------

    def _on_report(self, event: tuple) -> None:
        received = self.ledger.clock()
        with self.wake_events:
            self.reports.append((received, event[1]))
            self.wake_events.notify()

    def _on_done(self, future: Any) -> None:
        with self.wake_events:
            self.finished.append((None, future))
            self.wake_events.notify()

    def close(self, wait: bool) -> None:
        with self.wake_events:
            if self.closed:
                return
            self.closing = True
            self.wake_events.notify()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self.wake_events:
            self.closed = True
        if self.calls is not None:
            self.calls.close()
        try:
            self.client.unsubscribe_topic(self.channel)
        except Exception:  # pragma: no cover - the client closed first
            pass

    # --- the event thread -------------------------------------------------------------------

    def _event_loop(self) -> None:
        serving(self.ledger)  # Futures' callbacks run here: shutdown(wait=True) in one must refuse
        while True:
            with self.wake_events:
                while not (self.reports or self.finished or self.closing or self.to_stop):
                    self.wake_events.wait()
                if self.closing and not (self.reports or self.finished):
                    return
                reports, self.reports = self.reports, collections.deque()
                finished, self.finished = self.finished, collections.deque()
            # Nothing may end this thread: it alone settles attempts on Dask.
            marks: dict[str, list[str]] = {}
            for step, args in ((self._apply_reports, (reports, marks)), (self._settle, (finished, marks)),
                               (self._stop_losers, (marks,)), (self._sweep, ()), (self.wake, ())):
                try:
                    step(*args)
                except Exception:
                    logger.exception("straggler: a step of the Dask event thread failed; continuing")

    def _apply_reports(self, reports: collections.deque, marks: dict[str, list[str]]) -> None:
        if not reports:
            return
        ledger = self.ledger
        removals = []
        with ledger.lock:
            for received, message in reports:
                address = message["worker"]
                shift = received - message["sent"]  # worker clock -> executor clock
                for key, at, staging in message["starts"]:
                    attempt = self.by_key.get(key)
                    if attempt is None:
                        if key in self.stopped_unstarted:
                            marks.setdefault(address, []).append(key)
                        continue
                    removed = self._start_locked(attempt, address, at + shift, staging)
                    if removed is not None:
                        removals.append(removed)
                    attempt = self.by_key[key]
                    if attempt.cancelled:
                        marks.setdefault(address, []).append(key)
                for key, at, progress, records in message["beats"]:
                    attempt = self.by_key.get(key)
                    if attempt is None or not attempt.started or attempt.address != address:
                        continue
                    beat = attempt.beat
                    # Clamp: two messages' shifts differ by their latencies; the Detector needs
                    # every attempt's times in order.
                    floor = attempt.start if beat is None else beat[0]
                    attempt.beat = (max(at + shift, floor), progress, records)
        for staging in removals:
            shutil.rmtree(staging, ignore_errors=True)

    def _start_locked(self, attempt: DaskAttempt, address: str, at: float, staging: Optional[str]) -> Optional[str]:
        """A start report (or, without one, a result) shows where and when the attempt runs.
        Returns the staging directory of a run this start replaced, to remove."""
        ledger = self.ledger
        task = attempt.task
        node = self.node_of_locked(address)
        removed = None
        if attempt.started:
            if attempt.address == address:
                return None  # a duplicate report
            # Dask reran the key after its worker died: that run is lost, not failed; the rerun
            # is a new attempt for the Detector (same number for the task, which cannot tell).
            rerun = ledger.rerun_locked(attempt, DaskAttempt, at)
            assert isinstance(rerun, DaskAttempt)
            rerun.key, rerun.dask_future, rerun.pinned = attempt.key, attempt.dask_future, -1
            removed, attempt.staging = attempt.staging, None  # what the lost run left half written
            attempt.dask_future = None
            self.running_on[attempt.node] -= 1
            self.by_key[attempt.key] = rerun
            attempt = rerun
        else:
            self._unstarted_locked(attempt)
            ledger.claim_locked(task)  # its caller may have cancelled it while it waited in Dask
        attempt.started = True
        attempt.start = at
        attempt.address = address
        attempt.node = node
        attempt.staging = staging
        self.running_on[node] += 1
        if not task.done:
            self.task_nodes.setdefault(task, set()).add(node)
        ledger.started_locked(attempt)
        return removed

    def _unstarted_locked(self, attempt: DaskAttempt) -> None:
        """The attempt no longer waits in Dask: it started, or ended without starting."""
        if attempt.pinned >= 0:
            self.copies_on[attempt.pinned] -= 1
        elif not attempt.speculative:
            self.unstarted_originals -= 1

    def _settle(self, finished: collections.deque, marks: dict[str, list[str]]) -> None:
        if not finished:
            return
        from distributed.scheduler import KilledWorker

        ledger = self.ledger
        outcomes = []   # (attempt, result, error, address, seconds, staging, lost?)
        gathered = []
        seen: set[DaskAttempt] = set()
        for attempt, item in finished:
            if attempt is not None:  # submission failed: item is the error
                outcomes.append((attempt, None, item, None, None, None, False))
                continue
            attempt = self.by_key.get(item.key)
            if attempt is None or attempt.dask_future is not item:
                continue  # already settled (a cancelled loser), or a stale future
            if attempt in seen:
                continue  # notified twice
            seen.add(attempt)
            status = item.status
            if status == "finished":
                gathered.append((attempt, item))
            elif status == "error":
                error = item.exception()
                outcomes.append((attempt, None, error, None, None, None, isinstance(error, KilledWorker)))
            else:
                # "cancelled" by us (a loser) is a kill; cancelled by anyone else, or "lost"
                # (its result died with a worker), the attempt is lost and the task requeued.
                error = AttemptCancelled(f"task {attempt.task.id}: the Dask task was {status}")
                outcomes.append((attempt, None, error, None, None, None, not attempt.cancelled))
        if gathered:
            values = self._fetch(gathered)
            for (attempt, _), value in zip(gathered, values):
                if value is None:
                    continue  # settled when its done callback fires again
                finished_ok, result, address, seconds, staging = value
                error = None
                if not finished_ok:
                    error = AttemptCancelled(f"task {attempt.task.id}: another attempt finished first")
                outcomes.append((attempt, result, error, address, seconds, staging, False))
        follow_ups: list[FollowUp] = []
        removals: list[str] = []
        ended = 0
        with ledger.lock:
            now = ledger.clock()
            for attempt, result, error, address, seconds, staging, lost in outcomes:
                task = attempt.task
                self.stopped_unstarted.discard(attempt.key)
                if not task.done:
                    # Not seen running yet, so its Future may still be PENDING: claim it as
                    # ThreadPoolExecutor does before a task runs (its caller may have cancelled it).
                    ledger.claim_locked(task)
                if not attempt.started:
                    if address is not None:
                        # The result came before the start report (two channels): start it now.
                        removed = self._start_locked(attempt, address, now - seconds, None)
                        if removed is not None:
                            removals.append(removed)
                        attempt = self.by_key[attempt.key]
                    else:
                        # Ended before it was seen running: it has no Detector row and wasted
                        # nothing. Cancelled in Dask's queue (its task was settled) it leaves no
                        # trace; lost or failed (its worker died first), it ends now.
                        self._unstarted_locked(attempt)
                        attempt.start = now
                        if task.done:
                            del self.by_key[attempt.key]
                            attempt.dask_future = None
                            ledger.drop_locked(attempt)
                            ended += 1
                            continue
                        ledger.started_locked(attempt)
                if staging is not None:
                    if attempt.staging is not None and attempt.staging != staging:
                        removals.append(attempt.staging)
                    attempt.staging = staging  # the execution that produced this result
                end = now if seconds is None else attempt.start + seconds
                del self.by_key[attempt.key]
                attempt.dask_future = None
                if attempt.node >= 0:
                    self.running_on[attempt.node] -= 1
                ended += 1
                if lost:
                    follow_up = ledger.lose_locked(attempt, error, end)
                else:
                    follow_up = ledger.settle_locked(attempt, result, error, end)
                if follow_up is not None:
                    follow_ups.append(follow_up)
                if task.done and not task.running:
                    self.task_nodes.pop(task, None)
                    if task.output is not None:
                        self.to_sweep.append(task)
        for staging in removals:
            shutil.rmtree(staging, ignore_errors=True)
        for follow_up in follow_ups:
            ledger.finish_up(follow_up)
        if ended:
            with ledger.changed:
                ledger.busy -= ended
                ledger.changed.notify_all()

    def _fetch(self, gathered: list) -> list:
        """The results of finished Dask futures; None for one that could not be fetched (its
        worker died after it finished: Dask recomputes it and the done callback fires again)."""
        import distributed

        futures = [f for _, f in gathered]
        try:
            distributed.wait(futures, timeout=_FETCH_TIMEOUT)  # a lost one times out
            return self.client.gather(futures)
        except Exception:
            # Fetch one by one; a lost result may wait for a recomputation, so never wait long
            # for one here.
            values = []
            for _, future in gathered:
                try:
                    values.append(future.result(timeout=_FETCH_TIMEOUT))
                except Exception:
                    values.append(None)
                    future.add_done_callback(self._on_done)
            return values

    def _sweep(self) -> None:
        """Remove what executions whose start was never reported (their worker died first)
        left beside the outputs of settled tasks: every staging directory of a task is named
        after it and this executor, and none is needed once the task has nothing running."""
        with self.ledger.lock:
            tasks, self.to_sweep = self.to_sweep, []
        for task in tasks:
            prefix = self.ledger.staging_prefix(task, 0)[: -len("0-")]  # ".<name>.straggler-<token>-t<id>a"
            sweep_staging(prefix, task.output or "")

    def cancel_unstarted(self) -> None:
        """``shutdown(cancel_futures=True)``: cancel the tasks whose first attempt waits in Dask."""
        cancel_waiting_originals(self.ledger, self.by_key)
        with self.wake_events:
            self.wake_events.notify()  # the event thread cancels them in Dask

    # --- stopping losers --------------------------------------------------------------------

    def stop_attempt(self, attempt: Attempt) -> None:
        """The ledger's stop hook (under its lock): the event thread stops it."""
        assert isinstance(attempt, DaskAttempt)
        self.to_stop.append(attempt)
        with self.wake_events:
            self.wake_events.notify()

    def _stop_losers(self, marks: dict[str, list[str]]) -> None:
        ledger = self.ledger
        cancel = []
        with ledger.lock:
            losers, self.to_stop = self.to_stop, []
            for attempt in losers:
                if attempt.started:
                    marks.setdefault(attempt.address, []).append(attempt.key)
                elif attempt.dask_future is not None:
                    # Not seen running: cancel it in Dask; should it have started meanwhile, its
                    # start report finds the key here and marks it.
                    self.stopped_unstarted.add(attempt.key)
                    cancel.append(attempt.dask_future)
            alive = {self.addresses[n] for n in self.nthreads}
        calls = self.calls
        assert calls is not None
        for address, keys in marks.items():
            # A worker that has left has nothing to stop (its attempts are lost or rerun).
            if address and address in alive:
                calls.put(self.client.run, _mark_cancelled, self.channel, keys, self.stop_grace, workers=[address],
                          wait=False, on_error="ignore")
        if cancel:
            calls.put(self.client.cancel, cancel)


def _funcname(fn: Any) -> str:
    from dask.utils import funcname

    # Dask groups tasks by the key's first words: keep only characters that cannot end it early.
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in funcname(fn)) or "task"
    return name
