"""The speculation policies: frozen, validated settings with the peer systems' defaults.

A policy only holds numbers; the Detector reads ``policy.kind`` and each field by name and
applies the rules of POLICIES.md. All times are seconds.

Validation: a value of the wrong type (a string for a number, a bool for a number, a number
for a bool) is a ``TypeError``; a value out of range (or NaN, or infinite) is a ``ValueError``.
Both name the argument and show the value. Integers given for float fields are stored as
floats, so every float field reads back as ``float``.

``from_conf`` reads the peer system's own configuration keys (see each method). Values may be
strings or numbers; durations may be time strings ("100ms", "30s", "1 min", "2h"). A key under
the peer's prefix that we do not know, or a value we cannot read, is a ``ValueError`` naming
the key. Keys outside the prefix are ignored, so a whole Spark or Flink configuration can be
passed in. A configuration that switches speculation off returns ``None`` (no policy, no
speculation), which ``Detector(policy=None)`` and ``SpeculativeExecutor(policy=None)`` accept.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any, ClassVar, Optional

from straggler._checks import flag, integer, is_bool, real
from straggler._units import parse_duration

__all__ = ["SparkPolicy", "FlinkPolicy", "SmallpondPolicy", "LatePolicy", "MantriPolicy"]


# --- validation -------------------------------------------------------------------------------


# One set of checks for every entry point (_checks): the policies' own names for them.
_is_bool = is_bool
_real = real
_integer = integer
_flag = flag


def _store(policy: object, name: str, value: object) -> None:
    # Frozen dataclass: normalised values are written once, here, in __post_init__.
    object.__setattr__(policy, name, value)


# --- reading configurations -------------------------------------------------------------------


def _conf_float(key: str, value: object) -> float:
    if _is_bool(value):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{key}: cannot read {value!r} as a number") from None


def _conf_int(key: str, value: object) -> int:
    if _is_bool(value):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{key}: cannot read {value!r} as an integer")


def _conf_bool(key: str, value: object) -> bool:
    # Spark's and Flink's boolean options accept exactly "true" and "false" (any case).
    if _is_bool(value):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"{key}: cannot read {value!r} as a boolean (true or false)")


def _check_conf(conf: object) -> Mapping[str, Any]:
    if not isinstance(conf, Mapping):
        raise TypeError(f"conf must be a mapping of keys to values, got {conf!r}")
    return conf


def _build(cls: type, kwargs: dict[str, Any], sources: dict[str, str]) -> Any:
    """``cls(**kwargs)``; a validation error names the configuration key it came from."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        message = str(error)
        for field, key in sources.items():
            if message.startswith(field + " "):
                raise ValueError(f"{key}: {message}") from None
        raise ValueError(message) from None


# --- Spark --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SparkPolicy:
    """Apache Spark's ``spark.speculation`` (TaskSetManager.checkSpeculatableTasks).

    Defaults are Spark 3.x's; ``SparkPolicy.spark4()`` has Spark 4.0's. Ranges: quantile in
    [0, 1]; multiplier >= 0 (Spark's own tests use 0 to speculate at once); min_runtime >= 0;
    task_duration_threshold None or >= 0 (only > 0 switches the few-tasks path on);
    slots_per_executor >= 1; process_rate_multiplier in (0, 1] and long_run_task_factor >= 1
    (Spark's checks); interval > 0.
    """

    kind: ClassVar[str] = "spark"

    quantile: float = 0.75
    multiplier: float = 1.5
    min_runtime: float = 0.1
    task_duration_threshold: Optional[float] = None
    slots_per_executor: int = 1
    efficiency: bool = False
    process_rate_multiplier: float = 0.75
    long_run_task_factor: float = 2.0
    interval: float = 0.1

    def __post_init__(self) -> None:
        _store(self, "quantile", _real("quantile", self.quantile, low=0.0, high=1.0))
        _store(self, "multiplier", _real("multiplier", self.multiplier, low=0.0))
        _store(self, "min_runtime", _real("min_runtime", self.min_runtime, low=0.0))
        if self.task_duration_threshold is not None:
            _store(self, "task_duration_threshold",
                   _real("task_duration_threshold", self.task_duration_threshold, low=0.0))
        _store(self, "slots_per_executor",
               _integer("slots_per_executor", self.slots_per_executor, low=1))
        _store(self, "efficiency", _flag("efficiency", self.efficiency))
        _store(self, "process_rate_multiplier",
               _real("process_rate_multiplier", self.process_rate_multiplier,
                     low=0.0, high=1.0, low_open=True))
        _store(self, "long_run_task_factor",
               _real("long_run_task_factor", self.long_run_task_factor, low=1.0))
        _store(self, "interval", _real("interval", self.interval, low=0.0, low_open=True))

    @classmethod
    def spark4(cls, **overrides: Any) -> "SparkPolicy":
        """Spark 4.0's defaults: quantile 0.9, multiplier 3 (everything else as in 3.x)."""
        settings: dict[str, Any] = {"quantile": 0.9, "multiplier": 3.0}
        settings.update(overrides)
        return cls(**settings)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Optional["SparkPolicy"]:
        """A policy from Spark configuration keys; ``None`` if ``spark.speculation`` is false.

        Keys read (units as Spark's ConfigBuilder declares them: a bare number is
        milliseconds for the three durations):
        ``spark.speculation`` (true/false; absent counts as true, since asking for a Spark
        policy is asking for speculation), ``spark.speculation.interval``,
        ``.multiplier``, ``.quantile``, ``.minTaskRuntime``, ``.task.duration.threshold``,
        ``.efficiency.enabled``, ``.efficiency.processRateMultiplier``,
        ``.efficiency.longRunTaskFactor``; and ``spark.executor.cores`` with
        ``spark.task.cpus`` (default 1): slots_per_executor = cores // cpus when cores is
        given (cores < cpus is an error, as in Spark); without cores it stays 1 (SPARK-30417).
        Every other ``spark.speculation.*`` key is a ``ValueError``.
        """
        conf = _check_conf(conf)
        durations = {
            "spark.speculation.interval": "interval",
            "spark.speculation.minTaskRuntime": "min_runtime",
            "spark.speculation.task.duration.threshold": "task_duration_threshold",
        }
        numbers_ = {
            "spark.speculation.multiplier": "multiplier",
            "spark.speculation.quantile": "quantile",
            "spark.speculation.efficiency.processRateMultiplier": "process_rate_multiplier",
            "spark.speculation.efficiency.longRunTaskFactor": "long_run_task_factor",
        }
        kwargs: dict[str, Any] = {}
        sources: dict[str, str] = {}
        enabled = True
        for key, value in conf.items():
            if not isinstance(key, str):
                continue
            if key == "spark.speculation":
                enabled = _conf_bool(key, value)
            elif key in durations:
                kwargs[durations[key]] = parse_duration(value, default_unit="ms", key=key)
                sources[durations[key]] = key
            elif key in numbers_:
                kwargs[numbers_[key]] = _conf_float(key, value)
                sources[numbers_[key]] = key
            elif key == "spark.speculation.efficiency.enabled":
                kwargs["efficiency"] = _conf_bool(key, value)
                sources["efficiency"] = key
            elif key.startswith("spark.speculation."):
                raise ValueError(f"unknown Spark speculation key {key!r} (value {value!r})")
        if "spark.executor.cores" in conf:
            cores = _conf_int("spark.executor.cores", conf["spark.executor.cores"])
            cpus = _conf_int("spark.task.cpus", conf.get("spark.task.cpus", 1))
            if cores < 1 or cpus < 1 or cores < cpus:
                raise ValueError(
                    f"spark.executor.cores ({cores}) and spark.task.cpus ({cpus}) must be >= 1 "
                    "with cores >= cpus"
                )
            kwargs["slots_per_executor"] = cores // cpus
        elif "spark.task.cpus" in conf:
            _conf_int("spark.task.cpus", conf["spark.task.cpus"])
        if not enabled:
            return None
        return _build(cls, kwargs, sources)


# --- Flink --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class FlinkPolicy:
    """Apache Flink's slow-task detector and speculative scheduler (batch jobs).

    Defaults are Flink 1.19's. Ranges follow ExecutionTimeBasedSlowTaskDetector's
    constructor: baseline_ratio in [0, 1), baseline_multiplier > 0, baseline_lower_bound >= 0,
    interval (check-interval) > 0; and max_concurrent_executions >= 1,
    block_slow_node_duration >= 0.
    """

    kind: ClassVar[str] = "flink"

    baseline_ratio: float = 0.75
    baseline_multiplier: float = 1.5
    baseline_lower_bound: float = 60.0
    max_concurrent_executions: int = 2
    block_slow_node_duration: float = 60.0
    interval: float = 1.0

    def __post_init__(self) -> None:
        _store(self, "baseline_ratio",
               _real("baseline_ratio", self.baseline_ratio, low=0.0, high=1.0, high_open=True))
        _store(self, "baseline_multiplier",
               _real("baseline_multiplier", self.baseline_multiplier, low=0.0, low_open=True))
        _store(self, "baseline_lower_bound",
               _real("baseline_lower_bound", self.baseline_lower_bound, low=0.0))
        _store(self, "max_concurrent_executions",
               _integer("max_concurrent_executions", self.max_concurrent_executions, low=1))
        _store(self, "block_slow_node_duration",
               _real("block_slow_node_duration", self.block_slow_node_duration, low=0.0))
        _store(self, "interval", _real("interval", self.interval, low=0.0, low_open=True))

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Optional["FlinkPolicy"]:
        """A policy from Flink configuration keys; ``None`` if speculation is disabled.

        Keys read (a bare number is milliseconds for durations, as in Flink's
        ``TimeUtils``): ``slow-task-detector.check-interval``,
        ``slow-task-detector.execution-time.baseline-lower-bound``,
        ``slow-task-detector.execution-time.baseline-ratio``,
        ``slow-task-detector.execution-time.baseline-multiplier``,
        ``execution.batch.speculative.max-concurrent-executions``,
        ``execution.batch.speculative.block-slow-node-duration``,
        ``execution.batch.speculative.enabled`` (true/false; absent counts as true; false
        returns ``None``). Any other key under ``slow-task-detector.`` or
        ``execution.batch.speculative.`` is a ``ValueError``.
        """
        conf = _check_conf(conf)
        durations = {
            "slow-task-detector.check-interval": "interval",
            "slow-task-detector.execution-time.baseline-lower-bound": "baseline_lower_bound",
            "execution.batch.speculative.block-slow-node-duration": "block_slow_node_duration",
        }
        floats = {
            "slow-task-detector.execution-time.baseline-ratio": "baseline_ratio",
            "slow-task-detector.execution-time.baseline-multiplier": "baseline_multiplier",
        }
        kwargs: dict[str, Any] = {}
        sources: dict[str, str] = {}
        enabled = True
        for key, value in conf.items():
            if not isinstance(key, str):
                continue
            if key in durations:
                kwargs[durations[key]] = parse_duration(value, default_unit="ms", key=key)
                sources[durations[key]] = key
            elif key in floats:
                kwargs[floats[key]] = _conf_float(key, value)
                sources[floats[key]] = key
            elif key == "execution.batch.speculative.max-concurrent-executions":
                kwargs["max_concurrent_executions"] = _conf_int(key, value)
                sources["max_concurrent_executions"] = key
            elif key == "execution.batch.speculative.enabled":
                enabled = _conf_bool(key, value)
            elif key.startswith(("slow-task-detector.", "execution.batch.speculative.")):
                raise ValueError(f"unknown Flink speculation key {key!r} (value {value!r})")
        if not enabled:
            return None
        return _build(cls, kwargs, sources)


# --- smallpond ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SmallpondPolicy:
    """smallpond's ``start_speculative_execution`` (execution/scheduler.py).

    ``probe_timeout`` is smallpond's 30 s probe interval times 6 missed probes. Ranges:
    min_samples >= 1; probe_timeout >= 0; max_retry_count >= 0 (0: never speculate, since a
    copy needs retry_count < max_retry_count); interval > 0.
    """

    kind: ClassVar[str] = "smallpond"

    min_samples: int = 20
    probe_timeout: float = 180.0
    aggressive: bool = False
    max_retry_count: int = 5
    interval: float = 30.0

    def __post_init__(self) -> None:
        _store(self, "min_samples", _integer("min_samples", self.min_samples, low=1))
        _store(self, "probe_timeout", _real("probe_timeout", self.probe_timeout, low=0.0))
        _store(self, "aggressive", _flag("aggressive", self.aggressive))
        _store(self, "max_retry_count", _integer("max_retry_count", self.max_retry_count, low=0))
        _store(self, "interval", _real("interval", self.interval, low=0.0, low_open=True))

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Optional["SmallpondPolicy"]:
        """A policy from smallpond's scheduler settings; ``None`` for ``"disable"``.

        Keys: ``speculative_exec`` ("enable" | "disable" | "aggressive", any case; absent
        counts as "enable"; "disable" returns ``None``: no speculation), ``max_retry_count``,
        ``secs_executor_probe_interval`` (seconds; a time string also works) and
        ``max_num_missed_probes`` (default 6): probe_timeout = interval × missed probes, and
        interval = the probe interval. smallpond's settings share no prefix, so every key
        given here must be one of these four: any other key is a ``ValueError`` (a typo must
        not silently fall back to a default).
        """
        conf = _check_conf(conf)
        mode = "enable"
        probe_interval = 30.0
        missed_probes = 6
        kwargs: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, value in conf.items():
            if key == "speculative_exec":
                if not isinstance(value, str) or value.strip().lower() not in (
                    "enable", "disable", "aggressive"
                ):
                    raise ValueError(
                        f"{key}: expected 'enable', 'disable' or 'aggressive', got {value!r}"
                    )
                mode = value.strip().lower()
            elif key == "max_retry_count":
                kwargs["max_retry_count"] = _conf_int(key, value)
                sources["max_retry_count"] = key
            elif key == "secs_executor_probe_interval":
                probe_interval = parse_duration(value, default_unit="s", key=key)
                sources["interval"] = key
            elif key == "max_num_missed_probes":
                missed_probes = _conf_int(key, value)
                if missed_probes < 1:
                    raise ValueError(f"{key}: must be >= 1, got {value!r}")
            else:
                raise ValueError(f"unknown smallpond speculation key {key!r} (value {value!r})")
        if mode == "disable":
            return None
        kwargs["interval"] = probe_interval
        kwargs["probe_timeout"] = probe_interval * missed_probes
        kwargs["aggressive"] = mode == "aggressive"
        sources.setdefault("probe_timeout", "secs_executor_probe_interval")
        return _build(cls, kwargs, sources)


# --- LATE ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LatePolicy:
    """LATE (Zaharia et al., OSDI 2008), as in Hadoop's speculator.

    Ranges: the three fractions (slow_task_quantile, speculative_cap, slow_node_quantile) in
    [0, 1]; min_runtime >= 0; interval > 0; min_speculative an int >= 0.

    Cap on copies: at most ``max(min_speculative, floor(speculative_cap * slots))`` copies run
    at once. LATE's paper caps them at 10 % of the slots; taken alone, that cap is 0 on any
    pool of fewer than ten slots and LATE would never act, so ``min_speculative`` (default 1)
    keeps one copy allowed (0 gives the paper's bare cap). Hadoop's ``DefaultSpeculator``,
    LATE's descendant in MapReduce, allows more: ``max(minimumAllowedSpeculativeTasks,
    proportionTotalTasksSpeculatable * tasks, proportionRunningTasksSpeculatable *
    running tasks)``, with ``MRJobConfig``'s defaults 10, 0.01 and 0.1, i.e.
    max(10, 1 % of all tasks, 10 % of running tasks) (``maybeScheduleASpeculation`` in
    hadoop-mapreduce-client-app ``speculate/DefaultSpeculator.java``).
    """

    kind: ClassVar[str] = "late"

    slow_task_quantile: float = 0.25
    speculative_cap: float = 0.1
    slow_node_quantile: float = 0.25
    min_runtime: float = 60.0
    require_benefit: bool = True
    interval: float = 1.0
    min_speculative: int = 1

    def __post_init__(self) -> None:
        _store(self, "slow_task_quantile",
               _real("slow_task_quantile", self.slow_task_quantile, low=0.0, high=1.0))
        _store(self, "speculative_cap",
               _real("speculative_cap", self.speculative_cap, low=0.0, high=1.0))
        _store(self, "slow_node_quantile",
               _real("slow_node_quantile", self.slow_node_quantile, low=0.0, high=1.0))
        _store(self, "min_runtime", _real("min_runtime", self.min_runtime, low=0.0))
        _store(self, "require_benefit", _flag("require_benefit", self.require_benefit))
        _store(self, "interval", _real("interval", self.interval, low=0.0, low_open=True))
        _store(self, "min_speculative", _integer("min_speculative", self.min_speculative, low=0))


# --- Mantri -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MantriPolicy:
    """Mantri (Ananthanarayanan et al., "Reining in the Outliers in Map-Reduce Clusters using
    Mantri", OSDI 2010): act on an outlier early, by kill-and-restart or by a duplicate,
    whenever that is expected to save time and slots.

    Sources. The restart and duplicate tests, δ = 0.25, γ = 3 and Δ as the progress-report
    period are Mantri's §5.1 ("Resource-aware restart", its Pseudocode 1), as we read it; the
    paper's body could not be re-checked against its text while this was written (only its
    abstract and introduction were reachable), so the figures are from our reading and should
    be re-verified. Rules marked *ours* are not in the paper: Mantri reads t_rem from the data
    an attempt has read and the wrap-up time of its phase, and scales t_new by input size and
    location; we have only progress, the stage's durations and, where tasks declare them
    (``add_tasks(..., input_bytes=...)``), their input bytes (no location factor, no
    scheduling lag).

    Per stage, with n = the stage's successes (first successful attempts) and T = their
    durations (the stage's QuantileSketch: exact up to 1024 successes):

    - A stage acts once ``n >= min_samples`` (*ours*; there is no "75 % done" gate).
    - t_new of a task, the time a new attempt of it would take, is a distribution. By
      default T: E[t_new] = mean(T) = sum / n, q = the duration at rank ``floor(delta * n)``
      (0-based, the product in doubles): P(t_new < x) > delta iff x > q.
    - Data-size-aware t_new (§5.1 scales t_new by the task's input size, so that a task that
      is long because its input is large is not restarted: a new attempt would be as slow).
      When the task's input bytes b are known and positive and at least ``min_samples`` of
      the stage's successes had known bytes and a finite time per byte (duration / bytes;
      the stage's second sketch, the one Flink's rule reads), t_new is that time per byte
      times b: E[t_new] = mean(time per byte) × b, q = (time per byte at rank
      ``floor(delta * m)``) × b, m the count of those successes. A task of unknown or zero
      bytes, or a stage with fewer such successes, uses T as above.
    - t_rem of a running attempt (§5.1 estimates t_rem from progress): if it reported a
      progress p with a positive rate (rate = p / (time of that report − start)),
      ``t_rem = (1 − p) / rate``, the remaining time at that report. Otherwise (*ours*), from
      its elapsed e = now − start against the task's t_new values V (T, or the times per byte
      × b): with k = #values <= e, if k < #V, ``t_rem = sorted(V)[k + (#V − k) // 2] − e``
      (the upper median of the values longer than e); if k == #V (it outlived every one),
      ``t_rem = e``.
    - A task is examined while it is not done, speculatable, and ``attempts started − 1 <
      max_restarts`` (γ: restarts and duplicates alike). With c running attempts it is judged
      by the attempt with the least t_rem (ties: lowest attempt id).
    - Restart (§5.1: "kill, restart task if t_rem > E(t_new) + Δ", while tasks wait for
      slots): ``pending > 0`` and c == 1 and ``t_rem > E[t_new] + interval``. action 1,
      threshold ``E[t_new] + interval``.
    - Otherwise duplicate (§5.1: "duplicate if P(t_rem > t_new (c+1)/c) > δ": c + 1 copies cost
      (c + 1)/c as many slot-seconds, so a copy must be likely to finish within c/(c + 1) of
      t_rem): ``(t_rem * c) / (c + 1) > q``. action 0, threshold ``(q * (c + 1)) / c``.
    - Order: expected saving ``t_rem − E[t_new]``, largest first; ties by task id.

    Not modelled: the paper's network-aware placement (§5.2) and output protection (§5.3),
    killing all but the fastest copies, and its rule for duplicates once no task waits.

    Ranges: delta in [0, 1); max_restarts >= 0 (0: never act); min_samples >= 1;
    interval > 0 (Δ, seconds; also how often the executor checks).
    """

    kind: ClassVar[str] = "mantri"

    delta: float = 0.25
    max_restarts: int = 3
    min_samples: int = 3
    interval: float = 10.0

    def __post_init__(self) -> None:
        _store(self, "delta", _real("delta", self.delta, low=0.0, high=1.0, high_open=True))
        _store(self, "max_restarts", _integer("max_restarts", self.max_restarts, low=0))
        _store(self, "min_samples", _integer("min_samples", self.min_samples, low=1))
        _store(self, "interval", _real("interval", self.interval, low=0.0, low_open=True))
