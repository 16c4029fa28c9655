"""The scheduler thread: feeds the Detector and plans the copies.

Every ``interval`` it takes the ledger's inbox (tasks added, attempts started and ended, in
the order they happened) and the attempts' newest heartbeats to the Detector, calls ``check``
and queues the copies ``plan_copies`` chooses, where the engine's view of its nodes lets it.

Nothing an engine, a callback or the Detector raises can end this thread: each step is
contained, the error logged with its traceback, and the next interval starts afresh. The
thread holds the ledger and the engine, never the executor's front, so an executor dropped
without ``shutdown()`` can be collected (its finaliser closes the ledger, and the thread ends
once the work left is done, as ``ThreadPoolExecutor``'s threads do).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from straggler._ledger import DROP, END, START, Attempt, Ledger, Task, event_records
from straggler._records import AttemptEvent
from straggler._scheduling import NodeBlocklist, Situation, plan_copies

if TYPE_CHECKING:
    from straggler._engines import Engine

__all__ = ["Scheduler"]

logger = logging.getLogger("straggler")


class Scheduler:
    """Owns the Detector; see the module's docstring."""

    def __init__(self, ledger: Ledger, engine: "Engine", policy: Any, interval: float,
                 blocklist: NodeBlocklist, on_event: Optional[Callable[[AttemptEvent], Any]] = None) -> None:
        self.ledger = ledger
        self.on_event = on_event
        self.engine = engine
        self.policy = policy
        self.interval = interval
        self.blocklist = blocklist
        self.feed: Optional[_DetectorFeed] = None
        self.thread = threading.Thread(target=self._loop, name="straggler-scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        from straggler._core import Detector

        # policy=None still feeds a Detector (one that never speculates): the baseline pays
        # for the same machinery as the speculative runs it is compared with.
        feed = self.feed = _DetectorFeed(Detector(policy=self.policy))
        ledger = self.ledger
        while True:
            with ledger.changed:
                # Drain and check once per interval, however often attempts end and tasks
                # arrive; with nothing running or queued, sleep until work arrives, then give
                # it one interval before the first check.
                deadline = None
                while True:
                    finished = ledger.closed and not ledger.busy and not ledger.ready and not ledger.intake
                    if finished:
                        break
                    if not ledger.active and not ledger.inbox:
                        ledger.scheduler_idle = True
                        ledger.changed.wait()
                        ledger.scheduler_idle = False
                        continue
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.interval
                    elif now >= deadline:
                        break
                    ledger.changed.wait(deadline - now)
                inbox, ledger.inbox = ledger.inbox, []
            try:
                feed.drain(inbox)
            except Exception:
                logger.exception("straggler: the Detector refused a batch of events; continuing")
            if self.on_event is not None:
                self._deliver(inbox)
            if finished:
                break
            if ledger.timeouts and feed.running:
                try:
                    self._time_out(feed)
                except Exception:
                    logger.exception("straggler: the timeout scan failed; the next interval tries again")
            if feed.running:
                try:
                    self._check(feed)
                except Exception:
                    logger.exception("straggler: a speculation check failed; the next interval tries again")
        try:
            self.engine.close(wait=False)
        except Exception:
            logger.exception("straggler: closing the engine failed")

    def _deliver(self, inbox: list) -> None:
        """Hand the drained starts and ends to ``on_event``, in the order they happened, on
        this thread and without the ledger's lock; whatever it raises is logged."""
        on_event = self.on_event
        assert on_event is not None
        try:
            for event in event_records(inbox):
                try:
                    on_event(event)
                except Exception:
                    logger.exception("straggler: on_event raised on %r; continuing", event)
        except Exception:  # pragma: no cover - reading the records must not stop the thread
            logger.exception("straggler: could not read a batch of events for on_event")

    def _time_out(self, feed: "_DetectorFeed") -> None:
        """Stop the attempts that ran past their ``timeout`` or went silent for their
        ``heartbeat_timeout`` (a task's own options, else the executor's)."""
        ledger = self.ledger
        now = ledger.clock()
        with ledger.lock:
            for attempt in feed.running.values():
                if attempt.cancelled or attempt.outcome:
                    continue
                timeout, silence = ledger.limits(attempt.task)
                if timeout is not None and now - attempt.start > timeout:
                    ledger.time_out_locked(attempt, "timeout", timeout)
                elif silence is not None:
                    beat = attempt.beat
                    if now - (attempt.start if beat is None else beat[0]) > silence:
                        ledger.time_out_locked(attempt, "heartbeat_timeout", silence)

    def _check(self, feed: "_DetectorFeed") -> None:
        engine = self.engine
        ledger = self.ledger
        try:
            engine.refresh()
        except Exception:
            # A worker that died mid-call: the engine's view is refreshed at the next interval.
            logger.warning("straggler: could not refresh the engine's view of its workers", exc_info=True)
        feed.send_heartbeats()
        now = ledger.clock()
        with ledger.lock:
            view = engine.pending_locked()
            pending = ledger.pending + view
            slots = ledger.slots
            moved = engine.rebalance_locked(now)
        if moved:
            engine.wake()  # the copies wait for the next check, which sees these placed
            return
        answer = feed.detector.check(now, pending=pending, slots=slots)
        if len(answer.task) == 0 or self.policy is None:
            return
        policy = self.policy
        with ledger.lock:
            det_tasks = answer.task.tolist()
            attempts = {}
            for det_task in det_tasks:
                task = feed.tasks.get(det_task)
                if task is not None:
                    attempts[det_task] = len(task.running) + task.queued
            nodes = engine.nodes_locked([feed.tasks.get(t) for t in det_tasks], det_tasks, now)
            if nodes is None:
                # No nodes to choose (a thread or process pool): Flink's node blocking and
                # LATE's slow nodes have nothing to act on.
                situation = Situation(
                    pending=ledger.pending,
                    free_slots=ledger.slots - ledger.active,
                    slots=ledger.slots,
                    attempts=attempts,
                    speculative_running=ledger.spec_active,
                )
            else:
                slow: frozenset[int] = frozenset()
                if policy.kind == "late":
                    slow = frozenset(int(n) for n in feed.detector.slow_nodes(now))
                situation = Situation(
                    slots=ledger.slots,
                    attempts=attempts,
                    speculative_running=ledger.spec_active,
                    blocked_nodes=self.blocklist.blocked(now),
                    slow_nodes=slow,
                    **nodes,
                )
            plan = plan_copies(answer, policy=policy, situation=situation)
            if nodes is not None:
                for node in plan.block_nodes:
                    self.blocklist.block(node, now, policy.block_slow_node_duration)
            started = []
            for order in plan.copies:
                task = feed.tasks.get(order.task)
                if task is None or task.done:
                    continue
                node = -1 if order.node is None else order.node
                if order.restart:
                    victim = feed.running.get(order.copied_attempt)
                    if victim is None or victim.task is not task:
                        continue
                    number = ledger.restart_locked(victim, node, (float(order.elapsed), float(order.threshold)))
                    if number < 0:
                        continue
                else:
                    number = ledger.next_number_locked(task)
                    # A copy the plan ranks ahead of pending originals goes first in line.
                    ledger.queue_locked(task, number, speculative=True, node=node, front=order.priority,
                                        why=(float(order.elapsed), float(order.threshold)))
                started.append((task, number, order))
        for task, number, order in started:
            logger.info(
                "task %d of stage %s ran %.3g s > threshold %.3g s; %s (attempt %d)%s",
                task.id, task.stage, order.elapsed, order.threshold,
                "killing it and restarting" if order.restart else "starting copy", number,
                "" if order.node is None else f" on {engine.describe_node(order.node)}",
            )
        if started:
            engine.wake()


class _DetectorFeed:
    """The scheduler thread's view of the Detector: registers stages and tasks, starts and ends
    attempts in the order the ledger recorded them (batching runs of registrations and of
    starts), and batches heartbeats."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.stages: dict[str, int] = {}
        self.stage_left: dict[str, int] = {}    # declared stage -> its tasks not yet settled
        self.tasks: dict[int, Task] = {}        # Detector task id -> a task not yet done
        self.running: dict[int, Attempt] = {}   # Detector attempt id -> attempt
        # Tasks that ended without a result, to take out of their stage's size once the
        # Detector has seen their last attempt end (Detector.drop_task refuses it before).
        self.dropping: list[Task] = []

    def drain(self, inbox: list) -> None:
        """Apply the inbox to the Detector in three batched calls per run: ``add_tasks`` per
        run of like registrations, then ``start_many``, then ``finish_many``.

        Starts and ends of different tasks commute (no Detector state read by one is written by
        the other), so they are gathered over the whole inbox; only a start of a task with an
        end still unsent (a retry, or a copy of a task whose attempt just failed) must see that
        end first (else the Detector would count it as a copy), and forces a flush. A start
        of a task whose win was already sent (an engine reran a loser) is dropped: the Detector
        has nothing to decide about it.
        """
        detector = self.detector
        tasks = self.tasks
        registrations: list[Task] = []   # a run of registrations with one key
        registration_key: Any = None
        registration_stage: Any = None    # the stage name of a run of plain registrations
        starts: list[Attempt] = []
        ends: list[Attempt] = []
        ended_tasks: set[Task] = set()

        def flush_registrations() -> None:
            if registrations:
                stage, input_bytes, speculatable = registration_key
                ids = detector.add_tasks(stage, len(registrations), input_bytes=input_bytes, speculatable=speculatable)
                for task, det_id in zip(registrations, ids.tolist()):
                    task.det_id = det_id
                    tasks[det_id] = task
                registrations.clear()

        def flush() -> None:
            flush_registrations()
            if starts:
                rows = [a for a in starts if not a.task.det_won]
                if rows:
                    ids = detector.start_many(
                        np.array([a.task.det_id for a in rows], np.int64),
                        np.array([a.start for a in rows], np.float64),
                        nodes=np.array([a.node if a.node > 0 else 0 for a in rows], np.int64),
                    )
                    running = self.running
                    for attempt, detector_id in zip(rows, ids.tolist()):
                        attempt.detector_id = detector_id
                        running[detector_id] = attempt
                starts.clear()
            if ends:
                self._finish(ends)
                ends.clear()
                ended_tasks.clear()

        entries = iter(inbox)
        for kind, item in zip(entries, entries):  # (kind, object) pairs
            if kind == START:
                if ended_tasks and item.task in ended_tasks:
                    flush()
                starts.append(item)
            elif kind == END:
                ends.append(item)
                ended_tasks.add(item.task)
            elif kind == DROP:
                self.dropping.append(item)
            elif item.options is None and item.stage == registration_stage:
                registrations.append(item)  # the run's key again (the per-task path)
            else:
                key = self._task_key(item)
                if key != registration_key:
                    flush_registrations()
                    registration_key = key
                registration_stage = item.stage if item.options is None else None
                registrations.append(item)
        flush()
        if self.dropping:
            self._drop()
        if len(tasks) > 2 * len(self.running) + 4096:
            # Tasks that ended without an attempt ending (cancelled before they started) are
            # forgotten in sweeps, at a cost spread over the tasks that came since the last.
            for det_id in [d for d, t in tasks.items() if t.done and not t.running]:
                self._forget(tasks.pop(det_id))

    def _drop(self) -> None:
        """Take the tasks that ended without a result out of their stages' sizes (else Spark's
        and Flink's "75 % of the stage" gates could never open again)."""
        waiting = []
        for task in self.dropping:
            if task.det_id < 0 or task.det_won:
                continue
            if any(a.detector_id >= 0 and a.outcome == "" for a in task.running):
                waiting.append(task)  # an attempt of it still runs in the Detector
                continue
            try:
                self.detector.drop_task(task.det_id)
            except ValueError:
                # Still running in the Detector (its end comes with a later drain): try again.
                if any(a.task is task for a in self.running.values()):
                    waiting.append(task)
            except KeyError:
                pass  # its stage was removed
        self.dropping = waiting

    def _finish(self, ends: list[Attempt]) -> None:
        """``finish_many`` over ended attempts: one call for those whose last heartbeat carried
        records (the Detector's stage rate uses them) and one for the others."""
        running = self.running
        plain: list[Attempt] = []
        counted: list[Attempt] = []
        for attempt in ends:
            if running.pop(attempt.detector_id, None) is None:
                continue  # never started in the engine (id -1), or its start was dropped
            beat = attempt.beat
            if beat is None or beat[2] is None:
                plain.append(attempt)
            else:
                counted.append(attempt)
        for rows in (plain, counted):
            if not rows:
                continue
            ok = [a.outcome == "finish" for a in rows]
            try:
                self.detector.finish_many(
                    np.array([a.detector_id for a in rows], np.int64),
                    np.array([a.end for a in rows], np.float64),
                    ok=None if all(ok) else ok,
                    records=np.array([_records(a) for a in rows], np.float64) if rows is counted else None,
                )
            except Exception:
                # One bad row must not keep the others running in the Detector for ever.
                logger.exception("straggler: the Detector refused a batch of ends; sending them one by one")
                for attempt, won in zip(rows, ok):
                    try:
                        self.detector.finish(attempt.detector_id, attempt.end, ok=won,
                                             records=_records(attempt) if rows is counted else None)
                    except Exception:
                        logger.exception("straggler: the Detector refused the end of attempt %d of task %d",
                                         attempt.number, attempt.task.id)
            for attempt, won in zip(rows, ok):
                if won:
                    attempt.task.det_won = True
        # Forget the tasks that are done and have nothing running: the feed keeps no settled
        # task alive.
        tasks = self.tasks
        counting = bool(self.stage_left)
        for attempt in ends:
            task = attempt.task
            if task.done and not task.running and tasks.pop(task.det_id, None) is not None and counting:
                self._forget(task)

    def _forget(self, task: Task) -> None:
        """A task is settled for good. Once every task of a stage declared with ``num_tasks``
        is, the Detector forgets the stage (``remove_stage``: its statistics' memory is
        released and ``check`` never looks at it again)."""
        left = self.stage_left.get(task.stage)
        if left is None:
            return
        if left > 1:
            self.stage_left[task.stage] = left - 1
            return
        del self.stage_left[task.stage]
        stage = self.stages.pop(task.stage)
        try:
            self.detector.remove_stage(stage)
        except (KeyError, ValueError):
            logger.debug("straggler: stage %r could not be removed", task.stage, exc_info=True)

    def _task_key(self, task: Task) -> tuple:
        stage = self.stages.get(task.stage)
        task_options = task.options
        if stage is None:
            num_tasks = task_options.num_tasks if task_options is not None else None
            stage = self.detector.add_stage(num_tasks=num_tasks, name=task.stage)
            self.stages[task.stage] = stage
            if num_tasks is not None:
                self.stage_left[task.stage] = num_tasks
        if task_options is None:
            return (stage, None, True)
        return (stage, task_options.input_bytes, task_options.speculatable)

    def send_heartbeats(self) -> None:
        """One ``heartbeat_many`` per kind of heartbeat (with or without progress / records)."""
        groups: dict[tuple[bool, bool], list[tuple[int, float, Optional[float], Optional[int]]]] = {}
        for detector_id, attempt in self.running.items():
            beat = attempt.beat
            if beat is None or beat is attempt.beat_sent:
                continue
            attempt.beat_sent = beat
            now, progress, records = beat
            groups.setdefault((progress is not None, records is not None), []).append(
                (detector_id, now, progress, records)
            )
        for (has_progress, has_records), rows in groups.items():
            ids, times, progress, records = zip(*rows)
            self.detector.heartbeat_many(
                np.asarray(ids, dtype=np.int64),
                np.asarray(times, dtype=np.float64),
                progress=np.asarray(progress, dtype=np.float64) if has_progress else None,
                records=np.asarray(records, dtype=np.float64) if has_records else None,
            )


def _records(attempt: Attempt) -> Optional[int]:
    """The record count of the attempt's last heartbeat (None without one)."""
    beat = attempt.beat
    return None if beat is None else beat[2]
