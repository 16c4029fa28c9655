"""Engines: what runs the attempts. One module per engine, one small protocol, one registry.

An engine takes queued attempts from the ledger (``Ledger.take_locked``), runs them somewhere
(threads of this process, a process pool, a Dask cluster, a Ray cluster…), reports their starts if they do
not start at once (``started_locked``) and their ends (``settle_locked`` / ``lose_locked``),
and stops the attempts the ledger asks it to stop. It never touches the ledger's fields but
through those methods (and reads its counters under its lock).

The protocol (``Engine``), called by the executor's front and the scheduler thread:

- ``bind(ledger, blocklist, interval)``: once, before any work; the engine installs its stop
  hook (``blocklist`` holds Flink's blocked nodes; ``interval`` is the check period).
- ``wake()``: attempts were queued; take and run what the engine has room for. Never blocks
  on a remote worker.
- ``stop_attempt(attempt)``: under the ledger's lock, for an attempt that lost its race (or
  whose task was cancelled); must not block (queue the work for a thread of the engine).
- ``refresh()``: without the lock, once per check: re-read the cluster (may do I/O; errors
  are contained by the scheduler).
- ``pending_locked()``: originals handed to the engine that have not started (they wait for a
  slot like the ledger's pending ones).
- ``rebalance_locked(now)``: move waiting originals to idle nodes; True if it queued any.
- ``nodes_locked(tasks, det_tasks, now)``: the planner's view of the nodes (``free_nodes``,
  ``task_nodes``, ``free_slots``, ``pending``), or None for an engine without nodes to choose.
- ``describe_node(node)``: a node's name, for the log.
- ``cancel_unstarted()``: ``shutdown(cancel_futures=True)``: cancel first attempts the engine
  holds that have not started.
- ``close(wait)``: release the engine's threads; with ``wait``, until they have ended.

Adding an engine is one module with a subclass of ``EngineBase`` and one line in ``resolve``.
The distributed engines (Dask, Ray) share their worker-side report channel, their call queue
and their table of nodes (``_remote.py``).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing.context
import os
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from straggler._ledger import Attempt, Ledger, Task
    from straggler._scheduling import NodeBlocklist

__all__ = ["Engine", "EngineBase", "resolve"]


class Engine(Protocol):
    slots: int

    def bind(self, ledger: "Ledger", blocklist: "NodeBlocklist", interval: float) -> None: ...
    def wake(self) -> None: ...
    def stop_attempt(self, attempt: "Attempt") -> None: ...
    def refresh(self) -> None: ...
    def pending_locked(self) -> int: ...
    def rebalance_locked(self, now: float) -> bool: ...
    def nodes_locked(self, tasks: list[Optional["Task"]], det_tasks: list[int], now: float) -> Optional[dict]: ...
    def describe_node(self, node: int) -> str: ...
    def cancel_unstarted(self) -> None: ...
    def close(self, wait: bool) -> None: ...


class EngineBase:
    """Defaults for an engine without nodes to choose."""

    slots: int = 1
    ledger: "Ledger"
    blocklist: "NodeBlocklist"
    interval: float
    stop_grace: float = 1.0   # set by the executor before bind: the ladder's step

    def bind(self, ledger: "Ledger", blocklist: "NodeBlocklist", interval: float) -> None:
        self.ledger = ledger
        self.blocklist = blocklist
        self.interval = interval
        ledger.stop_attempt = self.stop_attempt

    def wake(self) -> None:  # pragma: no cover - every engine runs attempts its own way
        raise NotImplementedError

    def stop_attempt(self, attempt: "Attempt") -> None:
        pass  # the cancel flag set by the ledger is all: heartbeat() raises in the attempt

    def refresh(self) -> None:
        pass

    def pending_locked(self) -> int:
        return 0

    def rebalance_locked(self, now: float) -> bool:
        return False

    def nodes_locked(self, tasks: list[Optional["Task"]], det_tasks: list[int], now: float) -> Optional[dict]:
        return None

    def describe_node(self, node: int) -> str:
        return f"node {node}"

    def cancel_unstarted(self) -> None:
        pass

    def close(self, wait: bool) -> None:
        pass


def resolve(engine: Any, max_workers: Optional[int]) -> EngineBase:
    """The engine for ``SpeculativeExecutor(engine, max_workers=…)``: None or "threads" (a
    private thread pool), "processes" or a ``multiprocessing`` context (worker processes of our
    own, started the context's way), "ray" or the ``ray`` module (Ray tasks on the running Ray
    runtime, or a local one), a ``distributed.Client`` (or its ``get_executor()``), or any
    ``concurrent.futures.Executor``. Raises TypeError / ValueError naming the argument."""
    from straggler._checks import integer

    if max_workers is not None:
        max_workers = integer("max_workers", max_workers, low=1)
    if engine is None or (isinstance(engine, str) and engine == "threads"):
        from straggler._engines.threads import ThreadEngine

        slots = max_workers if max_workers is not None else min(32, (os.cpu_count() or 1) + 4)
        return ThreadEngine(slots)
    if (isinstance(engine, str) and engine == "processes") or isinstance(engine, multiprocessing.context.BaseContext):
        # A multiprocessing context chooses the workers' start method ("spawn" by default).
        from straggler._engines.processes import ProcessEngine

        slots = max_workers if max_workers is not None else os.cpu_count() or 1
        return ProcessEngine(slots, None if isinstance(engine, str) else engine)
    from straggler._engines.ray import is_ray

    if is_ray(engine):
        if max_workers is not None:
            raise ValueError(
                f"max_workers: a Ray cluster's slots are its nodes' CPUs; got max_workers={max_workers!r}"
            )
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError('executor: the Ray engine needs Ray: pip install "straggler[ray]"') from None
        from straggler._engines.ray import RayEngine

        return RayEngine()
    if isinstance(engine, str):
        raise ValueError(f"executor: unknown engine name {engine!r}; known: 'threads', 'processes', 'ray'")
    from straggler._engines.dask import client_of

    dask_client = client_of(engine)
    if dask_client is not None:
        if max_workers is not None:
            raise ValueError(
                f"max_workers: a Dask cluster's slots are its workers' threads; got max_workers={max_workers!r}"
            )
        from straggler._engines.dask import DaskEngine

        return DaskEngine(*dask_client)
    if isinstance(engine, concurrent.futures.ThreadPoolExecutor):
        # Runner loops run inside the pool's own threads; the pool is left running.
        from straggler._engines.threads import ThreadEngine

        return ThreadEngine(max_workers if max_workers is not None else engine._max_workers, pool=engine)
    if isinstance(engine, concurrent.futures.Executor):
        from straggler._engines.pool import PoolEngine

        return PoolEngine(engine, max_workers)
    raise TypeError(
        "executor must be 'threads', 'processes', 'ray', a multiprocessing context, a concurrent.futures.Executor, "
        f"a distributed.Client or None, got {engine!r}"
    )
