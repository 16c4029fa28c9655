"""The Rust Detector against the reference model: random event sequences, identical answers.

A hypothesis state machine drives both implementations with the same calls (valid and
invalid ones, tasks dropped after a cancel or a final failure among them) under every
policy, and after each step requires the same `check` columns, the same slow nodes, the
same stage statistics and the same errors.
"""

from __future__ import annotations

import math

import numpy as np
import straggler as sg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from straggler._reference import ReferenceDetector

# Times on a quarter-second grid make ties (strict vs inclusive comparisons) common.
steps = st.integers(min_value=0, max_value=12).map(lambda k: k / 4)

spark = st.builds(
    sg.SparkPolicy,
    quantile=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    multiplier=st.sampled_from([0.0, 1.0, 1.5, 3.0]),
    min_runtime=st.sampled_from([0.0, 0.5, 2.0]),
    task_duration_threshold=st.sampled_from([None, 0.0, 1.0]),
    slots_per_executor=st.sampled_from([1, 2, 8]),
    efficiency=st.booleans(),
    process_rate_multiplier=st.sampled_from([0.5, 0.75, 1.0]),
    long_run_task_factor=st.sampled_from([1.0, 2.0]),
)
flink = st.builds(
    sg.FlinkPolicy,
    baseline_ratio=st.sampled_from([0.0, 0.25, 0.5, 0.75]),
    baseline_multiplier=st.sampled_from([0.5, 1.0, 1.5]),
    baseline_lower_bound=st.sampled_from([0.0, 0.5, 2.0]),
    max_concurrent_executions=st.sampled_from([1, 2, 3]),
)
smallpond = st.builds(
    sg.SmallpondPolicy,
    min_samples=st.sampled_from([1, 2, 3]),
    probe_timeout=st.sampled_from([0.0, 0.5, 1.0]),
    aggressive=st.booleans(),
    max_retry_count=st.sampled_from([0, 1, 2, 5]),
)
late = st.builds(
    sg.LatePolicy,
    slow_task_quantile=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    speculative_cap=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    slow_node_quantile=st.sampled_from([0.25, 0.5, 1.0]),
    min_runtime=st.sampled_from([0.0, 0.5, 2.0]),
    require_benefit=st.booleans(),
    min_speculative=st.sampled_from([0, 1, 2]),
)
mantri = st.builds(
    sg.MantriPolicy,
    delta=st.sampled_from([0.0, 0.25, 0.5, 0.9]),
    max_restarts=st.sampled_from([0, 1, 3]),
    min_samples=st.sampled_from([1, 2, 3]),
    interval=st.sampled_from([0.25, 1.0, 10.0]),
)
policies = st.one_of(st.none(), spark, flink, smallpond, late, mantri)


def outcome(call):
    """The value of a call, or the type of the exception it raised."""
    try:
        return ("ok", call())
    except (KeyError, ValueError, TypeError) as e:
        return ("error", type(e))


def same(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class DetectorsAgree(RuleBasedStateMachine):
    @initialize(policy=policies)
    def build(self, policy):
        self.ref = ReferenceDetector(policy)
        self.rust = sg.Detector(policy)
        self.now = 0.0
        self.stages = 0
        self.tasks = 0
        self.attempts = 0

    def both(self, name, *args, **kwargs):
        a = outcome(lambda: getattr(self.ref, name)(*args, **kwargs))
        b = outcome(lambda: getattr(self.rust, name)(*args, **kwargs))
        assert a[0] == b[0], (name, args, kwargs, a, b)
        if a[0] == "ok":
            assert same(a[1], b[1]), (name, args, kwargs, a, b)
        else:
            assert a[1] is b[1], (name, args, kwargs, a, b)
        return a

    @rule(num_tasks=st.sampled_from([None, None, 1, 2, 3, 5, 8]))
    def add_stage(self, num_tasks):
        if self.both("add_stage", num_tasks=num_tasks)[0] == "ok":
            self.stages += 1

    @precondition(lambda self: self.stages > 0)
    @rule(data=st.data(), input_bytes=st.sampled_from([-1, 0, 1, 10, 100, 1000]),
          speculatable=st.booleans())
    def add_task(self, data, input_bytes, speculatable):
        stage = data.draw(st.integers(0, self.stages))  # one past the end: KeyError
        if self.both("add_task", stage, input_bytes=input_bytes, speculatable=speculatable)[0] == "ok":
            self.tasks += 1

    @precondition(lambda self: self.stages > 0)
    @rule(data=st.data(), n=st.integers(0, 4))
    def add_tasks(self, data, n):
        stage = data.draw(st.integers(0, self.stages - 1))
        sizes = data.draw(st.one_of(st.none(), st.lists(st.sampled_from([-1, 0, 7, 70]), min_size=n, max_size=n)))
        if self.both("add_tasks", stage, n, input_bytes=sizes)[0] == "ok":
            self.tasks += n

    @rule(data=st.data(), k=st.integers(2, 8), extra=st.integers(0, 3), bytes_known=st.booleans())
    def wave(self, data, k, extra, bytes_known):
        """A stage of k running tasks and `extra` waiting ones: the k start now, some finish
        at staggered times, some fail for good, the others report progress; waiting tasks
        may be dropped (a cancelled Future), failed ones are. This is what makes the policies
        fire, and the gates count only the tasks that may still succeed."""
        n = k + extra
        stage = self.both("add_stage", num_tasks=data.draw(st.sampled_from([None, n])))[1]
        self.stages += 1
        sizes = None
        if bytes_known:
            # A waiting task of unknown size: dropping it lets the stage compare per byte.
            # Under Mantri a task of known positive size is judged by the stage's time per
            # byte times its size (3 gives times per byte that are no exact binary fractions).
            sizes = [data.draw(st.sampled_from([1, 3, 10, 100])) for _ in range(k)]
            sizes += [data.draw(st.sampled_from([-1, 10])) for _ in range(extra)]
        tasks = self.both("add_tasks", stage, n, input_bytes=sizes)[1].tolist()
        self.tasks += n
        nodes = [data.draw(st.integers(0, 3)) for _ in range(k)]
        attempts = self.both("start_many", tasks[:k], self.now, nodes=nodes)[1].tolist()
        self.attempts += k
        done = data.draw(st.integers(0, k))
        durations = sorted(data.draw(steps) + 0.25 for _ in range(done))
        start = self.now
        for attempt, d in zip(attempts[:done], durations):
            self.now = max(self.now, start + d)
            self.both("finish", attempt, self.now, records=data.draw(st.sampled_from([None, 100.0])))
        for task in tasks[k:]:
            if data.draw(st.booleans()):
                self.both("drop_task", task)
        for task, attempt in zip(tasks[done:k], attempts[done:]):
            if data.draw(st.integers(0, 3)) == 0:
                self.both("finish", attempt, self.now, ok=False)
                self.both("drop_task", task)
                continue
            self.both("heartbeat", attempt, self.now,
                      progress=data.draw(st.sampled_from([None, 0.1, 0.3, 0.8])),
                      records=data.draw(st.sampled_from([None, 10.0, 90.0])))
        for ahead in (0.0, 1.0, 3.0, 9.0):
            self.compare_checks(self.now + ahead, data.draw(st.integers(0, 6)),
                                data.draw(st.sampled_from([None, 0, 1, 4, 10])))

    @rule(dt=steps)
    def advance(self, dt):
        self.now += dt

    @precondition(lambda self: self.tasks > 0)
    @rule(data=st.data(), node=st.integers(0, 3))
    def start(self, data, node):
        task = data.draw(st.integers(0, self.tasks))
        if self.both("start", task, self.now, node=node)[0] == "ok":
            self.attempts += 1

    @precondition(lambda self: self.tasks > 0)
    @rule(data=st.data())
    def start_many(self, data):
        tasks = data.draw(st.lists(st.integers(0, self.tasks - 1), max_size=3))
        nodes = data.draw(st.one_of(st.none(), st.lists(st.integers(0, 3), min_size=len(tasks), max_size=len(tasks))))
        if self.both("start_many", tasks, self.now, nodes=nodes)[0] == "ok":
            self.attempts += len(tasks)

    @precondition(lambda self: self.attempts > 0)
    @rule(data=st.data(), back=st.sampled_from([0.0, 0.0, 0.0, 0.25]),
          progress=st.sampled_from([None, 0.0, 0.1, 0.5, 0.9, 1.0, 1.5]),
          records=st.sampled_from([None, 0.0, 10.0, 1000.0, -1.0]))
    def heartbeat(self, data, back, progress, records):
        attempt = data.draw(st.integers(0, self.attempts))
        self.both("heartbeat", attempt, self.now - back, progress=progress, records=records)

    @precondition(lambda self: self.attempts > 0)
    @rule(data=st.data())
    def heartbeat_many(self, data):
        rows = data.draw(st.integers(1, 4))
        attempts = data.draw(st.lists(st.integers(0, self.attempts - 1), min_size=rows, max_size=rows))
        def column(values):
            return data.draw(st.one_of(st.none(), st.lists(st.sampled_from(values), min_size=rows, max_size=rows)))

        progress = column([0.0, 0.2, 0.7, 1.0])
        records = column([0.0, 5.0, 500.0])
        self.both("heartbeat_many", attempts, self.now, progress=progress, records=records)

    @precondition(lambda self: self.attempts > 0)
    @rule(data=st.data(), ok=st.booleans(), records=st.sampled_from([None, 0.0, 100.0, 1000.0]))
    def finish(self, data, ok, records):
        attempt = data.draw(st.integers(0, self.attempts))
        self.both("finish", attempt, self.now, ok=ok, records=records)

    @precondition(lambda self: self.attempts > 0)
    @rule(data=st.data())
    def finish_many(self, data):
        rows = data.draw(st.integers(1, 3))
        attempts = data.draw(st.lists(st.integers(0, self.attempts), min_size=rows, max_size=rows))
        ok = data.draw(st.one_of(st.none(), st.lists(st.booleans(), min_size=rows, max_size=rows)))
        records = data.draw(st.one_of(st.none(), st.lists(st.sampled_from([0.0, 50.0]), min_size=rows, max_size=rows)))
        self.both("finish_many", attempts, self.now, ok=ok, records=records)

    @precondition(lambda self: self.tasks > 0)
    @rule(data=st.data())
    def drop_task(self, data):
        # Refused for a task that succeeded, was dropped already or runs attempts; one past
        # the end (or a task of a removed stage) is a KeyError.
        self.both("drop_task", data.draw(st.integers(0, self.tasks)))

    @precondition(lambda self: self.stages > 0)
    @rule(data=st.data())
    def remove_stage(self, data):
        # Refused while the stage runs attempts; a removed or unknown stage is a KeyError.
        self.both("remove_stage", data.draw(st.integers(0, self.stages)))

    @rule(ahead=steps, pending=st.integers(0, 6), slots=st.sampled_from([None, 0, 1, 4, 10]))
    def check(self, ahead, pending, slots):
        self.compare_checks(self.now + ahead, pending, slots)

    def compare_checks(self, t, pending, slots):
        ref, rust = self.ref.check(t, pending=pending, slots=slots), self.rust.check(t, pending=pending, slots=slots)
        for column in ("task", "attempt", "stage", "node", "elapsed", "threshold", "action"):
            assert same(getattr(ref, column), getattr(rust, column)), (column, ref, rust)
        assert same(self.ref.slow_nodes(t), self.rust.slow_nodes(t))

    @invariant()
    def queries_agree(self):
        if not hasattr(self, "ref"):
            return
        for stage in range(self.stages):
            self.both("stage_stats", stage)
        for task in range(self.tasks):
            self.both("running", task)
            self.both("task_done", task)


DetectorsAgree.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_detectors_agree = DetectorsAgree.TestCase
