"""straggler: find the stragglers of a running batch job and race a copy of them.

Speculative execution for any Python scheduler: streaming quantile sketches and the
speculation policies of Spark, Flink, smallpond, LATE and Mantri run in a Rust core; a thin Python
layer runs tasks on a thread pool (or Dask) and feeds the core heartbeats.
"""

from straggler._context import (
    AttemptCancelled,
    AttemptContext,
    AttemptTimeout,
    WorkerDied,
    current_attempt,
    heartbeat,
    options,
)
from straggler._core import Candidates, Detector, QuantileSketch, __version__
from straggler._export import read_events, write_events
from straggler._records import AttemptEvent, ExecutorStats
from straggler._replay import ReplayResult, ReplayWarning, replay
from straggler.executor import SpeculativeExecutor
from straggler.policies import FlinkPolicy, LatePolicy, MantriPolicy, SmallpondPolicy, SparkPolicy
from straggler.simulation import SimulationResult, simulate

# timeline imports matplotlib (optional: straggler[plot]) only when a plot is drawn.
from straggler.timeline import plot_timeline

__all__ = [
    "AttemptCancelled",
    "AttemptContext",
    "AttemptTimeout",
    "AttemptEvent",
    "Candidates",
    "Detector",
    "ExecutorStats",
    "FlinkPolicy",
    "LatePolicy",
    "MantriPolicy",
    "QuantileSketch",
    "ReplayResult",
    "ReplayWarning",
    "SimulationResult",
    "SmallpondPolicy",
    "SparkPolicy",
    "SpeculativeExecutor",
    "WorkerDied",
    "__version__",
    "current_attempt",
    "heartbeat",
    "options",
    "plot_timeline",
    "read_events",
    "replay",
    "simulate",
    "write_events",
]
