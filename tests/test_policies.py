"""The policy objects: defaults, validation, immutability and reading the peers' configurations."""

from __future__ import annotations

import dataclasses
import math

import pytest
import straggler as sg
from straggler._units import parse_duration
from straggler.policies import FlinkPolicy, LatePolicy, SmallpondPolicy, SparkPolicy

# --- the duration parser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1), ("30s", 30.0), ("5min", 300.0), ("2h", 7200.0), ("1d", 86400.0),
        ("1 min", 60.0), ("60 s", 60.0), ("500 ms", 0.5), ("1m", 60.0), ("2 h", 7200.0),
        ("3 minutes", 180.0), ("1 hour", 3600.0), ("10 secs", 10.0), ("250us", 250e-6),
        ("7 milliseconds", 0.007), ("1.5s", 1.5), ("  42MS ", 0.042), ("1000 ns", 1e-6),
    ],
)
def test_duration_strings_with_a_unit(text: str, seconds: float) -> None:
    assert parse_duration(text, default_unit="ms", key="k") == pytest.approx(seconds)


def test_duration_without_a_unit_is_in_the_default_unit() -> None:
    assert parse_duration("1500", default_unit="ms", key="k") == pytest.approx(1.5)
    assert parse_duration(1500, default_unit="ms", key="k") == pytest.approx(1.5)
    assert parse_duration(30, default_unit="s", key="k") == 30.0
    assert parse_duration(" 2.5 ", default_unit="s", key="k") == 2.5


@pytest.mark.parametrize("value", ["", "abc", "10 parsecs", "1.2.3s", "s", "nan", "inf", True,
                                   None, [1], float("nan"), float("inf"), "1e400s"])
def test_unreadable_durations_name_the_key(value: object) -> None:
    with pytest.raises(ValueError, match="my.key"):
        parse_duration(value, default_unit="ms", key="my.key")


# --- defaults ------------------------------------------------------------------------------------


def test_spark_defaults_are_spark_3() -> None:
    p = SparkPolicy()
    assert (p.quantile, p.multiplier, p.min_runtime, p.task_duration_threshold) == (0.75, 1.5, 0.1, None)
    assert (p.slots_per_executor, p.efficiency) == (1, False)
    assert (p.process_rate_multiplier, p.long_run_task_factor, p.interval) == (0.75, 2.0, 0.1)
    assert SparkPolicy.kind == "spark" and p.kind == "spark"


def test_spark4_changes_quantile_and_multiplier_only() -> None:
    p = SparkPolicy.spark4()
    assert (p.quantile, p.multiplier) == (0.9, 3.0)
    assert dataclasses.replace(p, quantile=0.75, multiplier=1.5) == SparkPolicy()
    assert SparkPolicy.spark4(min_runtime=5).min_runtime == 5.0


def test_flink_smallpond_late_defaults() -> None:
    f = FlinkPolicy()
    assert (f.baseline_ratio, f.baseline_multiplier, f.baseline_lower_bound) == (0.75, 1.5, 60.0)
    assert (f.max_concurrent_executions, f.block_slow_node_duration, f.interval) == (2, 60.0, 1.0)
    s = SmallpondPolicy()
    assert (s.min_samples, s.probe_timeout, s.aggressive, s.max_retry_count, s.interval) == (
        20, 180.0, False, 5, 30.0)
    late = LatePolicy()
    assert (late.slow_task_quantile, late.speculative_cap, late.slow_node_quantile) == (0.25, 0.1, 0.25)
    assert (late.min_runtime, late.require_benefit, late.interval) == (60.0, True, 1.0)
    assert late.min_speculative == 1
    assert (FlinkPolicy.kind, SmallpondPolicy.kind, LatePolicy.kind) == ("flink", "smallpond", "late")


def test_exact_keyword_order_of_each_policy() -> None:
    # The Rust binding reads the fields by these names; positional order is part of the API.
    assert [f.name for f in dataclasses.fields(SparkPolicy)] == [
        "quantile", "multiplier", "min_runtime", "task_duration_threshold", "slots_per_executor",
        "efficiency", "process_rate_multiplier", "long_run_task_factor", "interval"]
    assert [f.name for f in dataclasses.fields(FlinkPolicy)] == [
        "baseline_ratio", "baseline_multiplier", "baseline_lower_bound",
        "max_concurrent_executions", "block_slow_node_duration", "interval"]
    assert [f.name for f in dataclasses.fields(SmallpondPolicy)] == [
        "min_samples", "probe_timeout", "aggressive", "max_retry_count", "interval"]
    assert [f.name for f in dataclasses.fields(LatePolicy)] == [
        "slow_task_quantile", "speculative_cap", "slow_node_quantile", "min_runtime",
        "require_benefit", "interval", "min_speculative"]


def test_policies_are_exported_from_the_package() -> None:
    for name in ("SparkPolicy", "FlinkPolicy", "SmallpondPolicy", "LatePolicy"):
        assert name in sg.__all__
    assert sg.SparkPolicy is SparkPolicy


def test_ints_given_for_float_fields_read_back_as_floats() -> None:
    p = SparkPolicy(multiplier=3, min_runtime=0)
    assert type(p.multiplier) is float and type(p.min_runtime) is float
    assert type(FlinkPolicy(baseline_lower_bound=1).baseline_lower_bound) is float


# --- immutability ----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [SparkPolicy(), FlinkPolicy(), SmallpondPolicy(), LatePolicy()])
def test_policies_are_frozen_and_slotted(policy: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.interval = 5.0  # type: ignore[attr-defined]
    assert not hasattr(policy, "__dict__")
    assert hash(policy) == hash(dataclasses.replace(policy))


# --- validation ------------------------------------------------------------------------------------

BAD_VALUES = [
    # (class, argument, value, exception)
    (SparkPolicy, "quantile", -0.1, ValueError),
    (SparkPolicy, "quantile", 1.01, ValueError),
    (SparkPolicy, "quantile", math.nan, ValueError),
    (SparkPolicy, "quantile", "0.5", TypeError),
    (SparkPolicy, "multiplier", -1.0, ValueError),
    (SparkPolicy, "multiplier", math.inf, ValueError),
    (SparkPolicy, "multiplier", True, TypeError),
    (SparkPolicy, "min_runtime", -0.001, ValueError),
    (SparkPolicy, "task_duration_threshold", -5.0, ValueError),
    (SparkPolicy, "task_duration_threshold", "60min", TypeError),
    (SparkPolicy, "slots_per_executor", 0, ValueError),
    (SparkPolicy, "slots_per_executor", 2.0, TypeError),
    (SparkPolicy, "slots_per_executor", True, TypeError),
    (SparkPolicy, "efficiency", 1, TypeError),
    (SparkPolicy, "efficiency", "true", TypeError),
    (SparkPolicy, "process_rate_multiplier", 0.0, ValueError),
    (SparkPolicy, "process_rate_multiplier", 1.5, ValueError),
    (SparkPolicy, "long_run_task_factor", 0.99, ValueError),
    (SparkPolicy, "interval", 0.0, ValueError),
    (FlinkPolicy, "baseline_ratio", 1.0, ValueError),
    (FlinkPolicy, "baseline_ratio", -0.5, ValueError),
    (FlinkPolicy, "baseline_multiplier", 0.0, ValueError),
    (FlinkPolicy, "baseline_lower_bound", -1.0, ValueError),
    (FlinkPolicy, "baseline_lower_bound", math.inf, ValueError),
    (FlinkPolicy, "max_concurrent_executions", 0, ValueError),
    (FlinkPolicy, "max_concurrent_executions", 2.5, TypeError),
    (FlinkPolicy, "block_slow_node_duration", -1.0, ValueError),
    (FlinkPolicy, "interval", -1.0, ValueError),
    (SmallpondPolicy, "min_samples", 0, ValueError),
    (SmallpondPolicy, "min_samples", 20.0, TypeError),
    (SmallpondPolicy, "probe_timeout", -1.0, ValueError),
    (SmallpondPolicy, "probe_timeout", math.nan, ValueError),
    (SmallpondPolicy, "aggressive", 0, TypeError),
    (SmallpondPolicy, "max_retry_count", -1, ValueError),
    (SmallpondPolicy, "interval", 0, ValueError),
    (LatePolicy, "slow_task_quantile", 1.5, ValueError),
    (LatePolicy, "speculative_cap", -0.1, ValueError),
    (LatePolicy, "slow_node_quantile", math.nan, ValueError),
    (LatePolicy, "min_runtime", -1.0, ValueError),
    (LatePolicy, "min_runtime", None, TypeError),
    (LatePolicy, "require_benefit", "yes", TypeError),
    (LatePolicy, "interval", math.inf, ValueError),
    (LatePolicy, "min_speculative", -1, ValueError),
    (LatePolicy, "min_speculative", 1.5, TypeError),
    (LatePolicy, "min_speculative", True, TypeError),
]


@pytest.mark.parametrize(("cls", "argument", "value", "error"), BAD_VALUES,
                         ids=[f"{c.__name__}-{a}-{v!r}" for c, a, v, _ in BAD_VALUES])
def test_bad_values_raise_naming_the_argument_and_value(
    cls: type, argument: str, value: object, error: type
) -> None:
    with pytest.raises(error) as caught:
        cls(**{argument: value})
    assert argument in str(caught.value)
    assert repr(value) in str(caught.value)


def test_boundary_values_are_accepted() -> None:
    SparkPolicy(quantile=0.0, multiplier=0.0, min_runtime=0.0, task_duration_threshold=0.0,
                process_rate_multiplier=1.0, long_run_task_factor=1.0)
    SparkPolicy(quantile=1.0)
    FlinkPolicy(baseline_ratio=0.0, baseline_lower_bound=0.0, max_concurrent_executions=1,
                block_slow_node_duration=0.0)
    SmallpondPolicy(min_samples=1, probe_timeout=0.0, max_retry_count=0)
    LatePolicy(slow_task_quantile=0.0, speculative_cap=1.0, slow_node_quantile=1.0, min_runtime=0.0)


# --- Spark from_conf --------------------------------------------------------------------------------


def test_spark_from_conf_reads_every_key() -> None:
    p = SparkPolicy.from_conf({
        "spark.speculation": "true",
        "spark.speculation.interval": "200ms",
        "spark.speculation.multiplier": "3",
        "spark.speculation.quantile": 0.9,
        "spark.speculation.minTaskRuntime": "30s",
        "spark.speculation.task.duration.threshold": "60min",
        "spark.speculation.efficiency.enabled": "TRUE",
        "spark.speculation.efficiency.processRateMultiplier": "0.5",
        "spark.speculation.efficiency.longRunTaskFactor": 3,
        "spark.executor.cores": "8",
        "spark.task.cpus": "2",
        "spark.app.name": "ignored: outside the prefix",
    })
    assert p == SparkPolicy(quantile=0.9, multiplier=3.0, min_runtime=30.0,
                            task_duration_threshold=3600.0, slots_per_executor=4,
                            efficiency=True, process_rate_multiplier=0.5,
                            long_run_task_factor=3.0, interval=0.2)


def test_spark_bare_numbers_are_milliseconds() -> None:
    # Spark's ConfigBuilder: interval, minTaskRuntime and task.duration.threshold are
    # timeConf(TimeUnit.MILLISECONDS).
    p = SparkPolicy.from_conf({"spark.speculation.minTaskRuntime": "3000",
                               "spark.speculation.interval": 100,
                               "spark.speculation.task.duration.threshold": 1500})
    assert (p.min_runtime, p.interval, p.task_duration_threshold) == (3.0, 0.1, 1.5)


def test_spark_from_empty_conf_is_the_default_policy() -> None:
    assert SparkPolicy.from_conf({}) == SparkPolicy()


def test_spark_speculation_false_means_no_policy() -> None:
    assert SparkPolicy.from_conf({"spark.speculation": "false"}) is None
    assert SparkPolicy.from_conf({"spark.speculation": False}) is None


def test_spark_slots_need_executor_cores() -> None:
    # SPARK-30417: without spark.executor.cores the slots are taken to be 1.
    assert SparkPolicy.from_conf({"spark.task.cpus": "2"}).slots_per_executor == 1
    assert SparkPolicy.from_conf({"spark.executor.cores": 3}).slots_per_executor == 3
    with pytest.raises(ValueError, match="spark.executor.cores"):
        SparkPolicy.from_conf({"spark.executor.cores": "1", "spark.task.cpus": "2"})


@pytest.mark.parametrize(("key", "value"), [
    ("spark.speculation.multipler", "3"),           # a typo under the prefix
    ("spark.speculation.quantile", "high"),
    ("spark.speculation.interval", "soon"),
    ("spark.speculation.minTaskRuntime", "30 parsecs"),
    ("spark.speculation", "yes"),
    ("spark.speculation.efficiency.enabled", "1"),
    ("spark.executor.cores", "many"),
    ("spark.speculation.quantile", "2"),             # readable but out of range
    ("spark.speculation.minTaskRuntime", "-5s"),
])
def test_spark_from_conf_errors_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        SparkPolicy.from_conf({key: value})


# --- Flink from_conf --------------------------------------------------------------------------------


def test_flink_from_conf_reads_every_key() -> None:
    p = FlinkPolicy.from_conf({
        "slow-task-detector.check-interval": "500 ms",
        "slow-task-detector.execution-time.baseline-lower-bound": "1 min",
        "slow-task-detector.execution-time.baseline-ratio": "0.5",
        "slow-task-detector.execution-time.baseline-multiplier": 2,
        "execution.batch.speculative.max-concurrent-executions": "3",
        "execution.batch.speculative.block-slow-node-duration": "2 h",
        "execution.batch.speculative.enabled": "true",
        "parallelism.default": "ignored",
    })
    assert p == FlinkPolicy(baseline_ratio=0.5, baseline_multiplier=2.0, baseline_lower_bound=60.0,
                            max_concurrent_executions=3, block_slow_node_duration=7200.0,
                            interval=0.5)


def test_flink_bare_numbers_are_milliseconds() -> None:
    p = FlinkPolicy.from_conf({"slow-task-detector.execution-time.baseline-lower-bound": "60000"})
    assert p.baseline_lower_bound == 60.0


def test_flink_disabled_means_no_policy() -> None:
    assert FlinkPolicy.from_conf({"execution.batch.speculative.enabled": "false"}) is None
    assert FlinkPolicy.from_conf({}) == FlinkPolicy()


@pytest.mark.parametrize(("key", "value"), [
    ("slow-task-detector.execution-time.baseline-ration", "0.5"),
    ("execution.batch.speculative.max-concurrent", "2"),
    ("slow-task-detector.check-interval", "fast"),
    ("execution.batch.speculative.max-concurrent-executions", "2.5"),
    ("execution.batch.speculative.enabled", "on"),
    ("slow-task-detector.execution-time.baseline-ratio", "1.0"),   # Flink: ratio in [0, 1)
])
def test_flink_from_conf_errors_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        FlinkPolicy.from_conf({key: value})


# --- smallpond from_conf -----------------------------------------------------------------------------


def test_smallpond_probe_timeout_is_interval_times_missed_probes() -> None:
    p = SmallpondPolicy.from_conf({"speculative_exec": "enable", "max_retry_count": 3,
                                   "secs_executor_probe_interval": 10, "max_num_missed_probes": 4})
    assert p == SmallpondPolicy(probe_timeout=40.0, aggressive=False, max_retry_count=3,
                                interval=10.0)


def test_smallpond_modes() -> None:
    assert SmallpondPolicy.from_conf({"speculative_exec": "aggressive"}).aggressive is True
    assert SmallpondPolicy.from_conf({}) == SmallpondPolicy()
    # "disable" switches speculation off: no policy at all.
    assert SmallpondPolicy.from_conf({"speculative_exec": "disable"}) is None


@pytest.mark.parametrize(("key", "value"), [
    ("speculative_exec", "sometimes"),
    ("speculative_exec", True),
    ("max_retry_count", "five"),
    ("secs_executor_probe_interval", "soon"),
    ("max_num_missed_probes", 0),
    ("max_retry_cout", 5),
])
def test_smallpond_from_conf_errors_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        SmallpondPolicy.from_conf({key: value})


@pytest.mark.parametrize("cls", [SparkPolicy, FlinkPolicy, SmallpondPolicy])
def test_from_conf_needs_a_mapping(cls: type) -> None:
    with pytest.raises(TypeError, match="conf"):
        cls.from_conf([("a", 1)])


# --- Mantri ------------------------------------------------------------------------------------


def test_mantri_defaults_are_the_papers():
    from straggler.policies import MantriPolicy

    p = MantriPolicy()
    assert (p.kind, p.delta, p.max_restarts, p.interval) == ("mantri", 0.25, 3, 10.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"delta": 1.0}, ValueError, "delta"),
        ({"delta": "0.2"}, TypeError, "delta"),
        ({"max_restarts": -1}, ValueError, "max_restarts"),
        ({"max_restarts": 1.5}, TypeError, "max_restarts"),
        ({"min_samples": 0}, ValueError, "min_samples"),
        ({"interval": 0.0}, ValueError, "interval"),
        ({"interval": float("nan")}, ValueError, "interval"),
    ],
)
def test_mantri_rejects_bad_settings_naming_them(kwargs, error, words):
    from straggler.policies import MantriPolicy

    with pytest.raises(error, match=words):
        MantriPolicy(**kwargs)
