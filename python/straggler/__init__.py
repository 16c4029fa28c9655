"""straggler: find the stragglers of a running batch job and race a copy of them.

Speculative execution for any Python scheduler: streaming quantile sketches and the
speculation policies of Spark, Flink, smallpond and LATE run in a Rust core; a thin Python
layer runs tasks on a thread pool (or Dask) and feeds the core heartbeats.
"""

from straggler._core import QuantileSketch, __version__

__all__ = ["QuantileSketch", "__version__"]
