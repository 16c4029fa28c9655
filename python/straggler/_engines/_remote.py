"""What the distributed engines (Dask, Ray) share: the worker side of an attempt and its
report channel, and the driver side's thread for calls that must not block the others.

In a worker process, an attempt runs with a ``RemoteAttempt`` installed as the current
attempt: ``heartbeat()`` stores a tuple in it (no I/O, microseconds) and reads its
``cancelled`` flag. The process's ``ReportChannel`` (one per executor) buffers the starts of
its attempts and sends them, with the newest heartbeat of each running attempt, in one message
per flush from a daemon thread of its own; how a message travels is the engine's
(``ReportChannel.send``).
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import queue
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from straggler._context import AttemptContext
from straggler._future import cancel_for_good

if TYPE_CHECKING:
    from straggler._ledger import Ledger, Task

__all__ = ["CallQueue", "ClusterNodes", "RemoteAttempt", "ReportChannel", "sweep_staging"]

logger = logging.getLogger("straggler")

# A flusher with nothing to send for this long, and no attempt running, ends (the next attempt
# of its executor starts another): an executor that is done leaves no thread in its workers.
IDLE = 30.0
# The flusher's batching window in a worker: starts and heartbeats of this long go in one
# message. It bounds the report latency from below; the check interval bounds it from above.
FLUSH_INTERVAL = 0.01
# After a failed send, the starts in it are sent again this much later.
RETRY = 0.2


class RemoteAttempt:
    """An attempt running in a worker: what ``heartbeat`` and ``current_attempt`` see."""

    __slots__ = ("channel", "key", "fields", "staging", "start", "cancelled", "_beat", "beat_sent", "_context")

    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, channel: "ReportChannel", key: str, fields: tuple, staging: Optional[str]) -> None:
        self.channel = channel
        self.key = key
        self.fields = fields          # (task, attempt, speculative)
        self.staging = staging        # this execution's own staging directory
        self.start = time.monotonic()
        self.cancelled = False
        self._beat: Optional[tuple] = None
        self.beat_sent: Optional[tuple] = None
        self._context: Optional[AttemptContext] = None

    @property
    def _live(self) -> "RemoteAttempt":
        return self

    @property
    def beat(self) -> Optional[tuple]:
        return self._beat

    @beat.setter
    def beat(self, value: Optional[tuple[float, Optional[float], Optional[int]]]) -> None:
        # heartbeat() stores a whole tuple; wake the flusher so the beat leaves within a window.
        self._beat = value
        self.channel.wake.set()

    def context(self) -> AttemptContext:
        if self._context is None:
            task, number, speculative = self.fields
            node = self.channel.nodes.get(self.channel.address, -1)
            self._context = AttemptContext(task, number, speculative, node, self.staging, self)
        return self._context


class ReportChannel:
    """One executor's reports from one worker process: its running attempts, the starts not
    yet sent, and a flusher thread that sends them in batches. Subclasses say where the
    worker is (``connect``) and how a message travels (``send``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.running: dict[str, RemoteAttempt] = {}
        # Starts not sent yet, by key: one that ends first is never sent (its result says
        # where and how long it ran), so a short task costs no report at all.
        self.starts: dict[str, tuple[str, float, Optional[str]]] = {}
        self.wake = threading.Event()
        self.nodes: dict[str, int] = {}   # the worker's address -> node id, as the executor numbered them
        self.address = ""
        self.thread: Optional[threading.Thread] = None

    def connect(self) -> None:
        """Once, under the lock, before the first attempt: learn ``address``."""

    def send(self, message: dict) -> None:  # pragma: no cover - every engine sends its own way
        raise NotImplementedError

    def enter(self, key: str, fields: tuple, staging: Optional[str]) -> RemoteAttempt:
        attempt = RemoteAttempt(self, key, fields, staging)
        with self.lock:
            if self.thread is None:
                self.connect()
                self.thread = threading.Thread(target=self._flush_loop, name=f"straggler-reports-{self.name}",
                                               daemon=True)
                self.thread.start()
            self.running[key] = attempt
            self.starts[key] = (key, attempt.start, staging)
        self.wake.set()
        return attempt

    def leave(self, attempt: RemoteAttempt) -> None:
        with self.lock:
            self.running.pop(attempt.key, None)
            self.starts.pop(attempt.key, None)

    def _flush_loop(self) -> None:
        window = threading.Event()  # never set: waiting on it is the batching window
        while True:
            if not self.wake.wait(IDLE):
                with self.lock:
                    if not self.running and not self.starts:
                        self.thread = None
                        return
                continue
            window.wait(FLUSH_INTERVAL)
            self.wake.clear()  # before collecting: a beat stored from now on wakes us again
            with self.lock:
                starts, self.starts = list(self.starts.values()), {}
                running = list(self.running.values())
            beats = []
            for attempt in running:
                beat = attempt._beat
                if beat is not None and beat is not attempt.beat_sent:
                    attempt.beat_sent = beat
                    beats.append((attempt.key, *beat))
            if starts or beats:
                message = {"sent": time.monotonic(), "worker": self.address, "starts": starts, "beats": beats,
                           "running": [attempt.key for attempt in running]}
                try:
                    self.send(message)
                except Exception:  # the receiver is gone or restarting: the starts go again
                    logger.debug("straggler: could not send reports from %s", self.address, exc_info=True)
                    with self.lock:
                        for start in starts:
                            if start[0] in self.running:
                                self.starts.setdefault(start[0], start)
                        again = bool(self.starts)
                    if again:  # a start that never reaches the executor: no timeout would apply
                        window.wait(RETRY)
                        self.wake.set()


class CallQueue:
    """One thread that makes an engine's calls to the cluster that need not be waited for
    (cancelling, telling workers something), one after the other.

    A call to a worker that just died may block until the connection gives up and then raise:
    here it delays only later calls of the same kind; no other thread of ours ever waits for
    it, and an error is logged.
    """

    def __init__(self, name: str, guard: Optional[Callable[[], bool]] = None) -> None:
        self.calls: queue.SimpleQueue = queue.SimpleQueue()
        self.guard = guard  # false: the cluster is gone, and the calls are dropped
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def put(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.calls.put((call, args, kwargs))

    def close(self) -> None:
        self.calls.put(None)

    def _loop(self) -> None:
        while True:
            item = self.calls.get()
            if item is None:
                return
            call, args, kwargs = item
            if self.guard is not None and not self.guard():
                continue
            try:
                call(*args, **kwargs)
            except BaseException:  # SystemExit too: Ray raises it once it shuts down
                logger.info("straggler: a call to the cluster failed (a worker left?)", exc_info=True)


def cancel_waiting_originals(ledger: Any, by_key: dict[str, Any]) -> None:
    """``shutdown(cancel_futures=True)`` on a remote engine: cancel the tasks whose first
    attempt (among ``by_key``'s, the engine's attempts sent away, read under the ledger's lock)
    waits on the cluster and has not started; their attempts are stopped through the ledger
    (``abandon_locked``)."""
    with ledger.lock:
        waiting = [
            (a.task, a.task.future) for a in by_key.values()
            if not a.started and a.number == 0 and not a.speculative and not a.task.done
            and not a.task.claimed
        ]
    # Outside the lock: Future.cancel() runs the callbacks. A task that reported its start
    # meanwhile is RUNNING, and cancel() leaves it alone (one settled meanwhile has dropped its
    # Future, hence the pairs taken under the lock).
    cancelled = [task for task, future in waiting if cancel_for_good(future)]
    with ledger.lock:
        for task in cancelled:
            if not task.done:
                ledger.abandon_locked(task)


def sweep_staging(prefix: str, output: str) -> None:
    """Remove every staging directory named ``prefix…`` beside ``output``: what executions
    whose start was never reported (their worker died first) left of a settled task."""
    parent = os.path.dirname(output)
    for path in glob.glob(os.path.join(parent, glob.escape(prefix) + "*")):
        shutil.rmtree(path, ignore_errors=True)


class ClusterNodes:
    """The driver's table of a cluster's nodes, under the ledger's lock: a node is numbered in
    the order the executor first saw it (never reused), with its slots, the attempts started on
    it, the copies pinned to it not started yet, and the nodes each unsettled task ran on. From
    it the planner gets free slots per node and the nodes a copy must avoid."""

    def init_nodes(self) -> None:
        self.nodes: dict[str, int] = {}           # address -> node id
        self.addresses: list[str] = []            # node id -> address
        self.nthreads: dict[int, int] = {}        # live node -> slots
        self.running_on: collections.Counter[int] = collections.Counter()   # started attempts per node
        self.copies_on: collections.Counter[int] = collections.Counter()    # pinned, not yet started
        self.unstarted_originals = 0
        self.task_nodes: dict[Task, set[int]] = {}   # task not settled -> nodes it runs or ran on

    def node_of_locked(self, address: str) -> int:
        node = self.nodes.get(address)
        if node is None:  # a node newer than our last look at the cluster
            node = self.nodes[address] = len(self.addresses)
            self.addresses.append(address)
        return node

    def describe_node(self, node: int) -> str:
        return self.addresses[node] if 0 <= node < len(self.addresses) else f"node {node}"

    def free_nodes_locked(self) -> dict[int, int]:
        return {
            node: slots - self.running_on[node] - self.copies_on[node]
            for node, slots in self.nthreads.items()
        }

    def pending_locked(self) -> int:
        # Originals handed to the cluster but not started yet still wait for a slot.
        return self.unstarted_originals

    def waiting_locked(self, free_slots: int) -> int:
        """Originals handed to the cluster that could take a free slot (they block copies)."""
        return self.unstarted_originals

    def nodes_locked(self, tasks: list[Optional[Task]], det_tasks: list[int], now: float) -> Optional[dict]:
        """The planner's view of the cluster (under the ledger's lock)."""
        free_nodes = self.free_nodes_locked()
        free_slots = sum(max(0, free) for free in free_nodes.values())
        task_nodes = {}
        for det_task, task in zip(det_tasks, tasks):
            nodes = self.task_nodes.get(task) if task is not None else None
            if nodes:
                task_nodes[det_task] = frozenset(nodes)
        ledger: Ledger = self.ledger  # type: ignore[attr-defined]
        return dict(
            pending=ledger.pending + self.waiting_locked(free_slots),
            free_slots=free_slots,
            free_nodes=free_nodes,
            task_nodes=task_nodes,
        )
