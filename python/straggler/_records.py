"""The records the executor, the simulator and the timeline share: what happened to each
attempt (``AttemptEvent`` and its kinds) and the executor's counts (``ExecutorStats``).

Defined once here, with no dependency on any engine, so that every producer (an engine, the
simulator, a replayed log) and every consumer (the timeline, an exporter) agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, get_args

__all__ = ["AttemptEvent", "ExecutorStats", "Outcome", "EventKind", "OUTCOMES", "EVENT_KINDS"]

# How an attempt ended:
# - "finish": it produced its task's result (the task's winning attempt);
# - "fail": it raised (counts as a failure and may be retried);
# - "kill": it ended after its task was done (stopped because another attempt won, or its
#   result arrived too late and was discarded);
# - "lost": the engine lost it without a verdict (its worker died); never a failure.
Outcome = Literal["finish", "fail", "kill", "lost"]
EventKind = Literal["start", "finish", "fail", "kill", "lost"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


@dataclass(frozen=True)
class ExecutorStats:
    """Counts over the executor's life so far.

    ``attempts`` counts every attempt started (first attempts, retries and copies);
    ``speculative`` the copies started while another attempt of the task ran;
    ``speculative_wins`` the tasks a copy finished first; ``failures`` the attempts that raised
    (losers never count); ``killed`` the attempts that ended after their task was already done
    (stopped by ``heartbeat`` or finished too late); ``lost`` the attempts an engine lost
    without a verdict (a Dask worker died under them; never counted as failures);
    ``wasted_seconds`` the run time of the attempts that ended without producing the task's
    result (failed, killed and lost ones); ``timeouts`` the attempts stopped for running past
    ``timeout`` or ``heartbeat_timeout`` (each also counted in ``failures``); ``abandoned`` the
    attempts whose thread would not stop and was left behind (its slot given to a new thread).
    """

    tasks: int
    attempts: int
    speculative: int
    speculative_wins: int
    failures: int
    killed: int
    wasted_seconds: float
    lost: int = 0
    timeouts: int = 0
    abandoned: int = 0


@dataclass(frozen=True)
class AttemptEvent:
    """One line of a job's timeline.

    ``kind``: "start", or how the attempt ended (an ``Outcome``): "finish" (the task's
    winning attempt), "fail" (it raised; counts as a failure), "kill" (it ended after its task
    was done: stopped, or its result discarded) or "lost" (the engine lost it: its worker died).
    ``time`` is on the executor's clock (``time.monotonic`` unless one was injected), or the
    simulation's virtual time.

    What the policy decided, on the start of an attempt it asked for (a speculative copy, or
    the new attempt of a kill-and-restart): ``elapsed``, how long the attempt it copied had run
    when the check flagged it, and ``threshold``, the time past which the policy flags (None
    on every other event). ``reason`` says why an attempt started or ended when that is not
    plain: "restart" (the start of a kill-and-restart's new attempt, and the kill of the
    attempt it replaced), "timeout" or "heartbeat_timeout" (a failure: stopped for running
    past ``limit`` seconds, or silent for ``limit`` seconds).
    """

    kind: str
    time: float
    task: int
    attempt: int
    stage: str
    node: int
    speculative: bool
    elapsed: Optional[float] = None
    threshold: Optional[float] = None
    reason: Optional[str] = None
    limit: Optional[float] = None
