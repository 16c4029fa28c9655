"""The reference model of ``straggler.Detector``: POLICIES.md written as plain Python.

Clarity over speed: dicts, lists and ``sorted``. The Rust Detector has the same public API
and must give the same answers; the test suite runs against both. Every rule below is part
of the contract, including the ties and edges, and the Rust implementation follows it to the
letter.

Vocabulary
----------
- A *task* belongs to one stage; task ids are dense from 0 across the detector. An *attempt*
  is one run of a task; attempt ids are dense from 0 across the detector.
- A stage's effective ``num_tasks`` is its declared ``num_tasks``, else the number of tasks
  added to it so far, less its *dropped* tasks (see ``drop_task``). A stage whose effective
  ``num_tasks`` is 0 is never examined.
- A task's *duration* is ``finish - start`` of its FIRST successful attempt. Failed attempts
  (``ok=False``, used for failures and for killed losers) and later successes never enter the
  statistics. A task is *done* (succeeded) from its first success on.
- *elapsed* of a running attempt = ``now - start``. ``check(now)`` does not compare ``now``
  with the attempts' times: an attempt that starts after ``now`` has a negative elapsed.
- An attempt is *speculative* when, at its start, another attempt of its task was running
  (rows of ``start_many`` apply in order, so a second row for the same task is speculative).

Calls and validation
--------------------
Every call validates everything before it changes anything; a rejected ``*_many`` batch
changes nothing. Unknown stage/task/attempt id (or a negative one) → ``KeyError``. An id or
count that is not an int (bools included) → ``TypeError``. Bad values → ``ValueError`` naming
the argument and showing the value:
- ``now`` NaN or infinite;
- ``add_stage(num_tasks)`` < 1; adding more tasks than the stage's declared ``num_tasks``;
  ``add_tasks(n)`` with n < 0 or n > 2**26 (checked before anything is allocated);
- ``input_bytes`` other than None, -1 (both: unknown) or an int >= 0; ``add_tasks`` takes
  None (all unknown), one int for all rows, or an int array of length ``n``;
- ``node`` < 0; starting an attempt of a task that already succeeded or was dropped;
- ``now`` before the attempt's start or before its last heartbeat (for ``heartbeat`` and
  ``finish``; equal is fine). Within a ``*_many`` batch, rows apply in order, so a later row of
  the same attempt must not go back in time either;
- ``progress`` outside [0, 1] or NaN; ``records`` negative, NaN or infinite;
- finishing an attempt that already finished;
- arrays of different lengths. In ``*_many`` calls ``now`` is a scalar or an array; the other
  optional arguments are None (not reported / node 0) or arrays of the row count.
A heartbeat for an attempt that already finished is accepted and ignored once its values pass
the value checks (a worker's last heartbeat may be flushed after its finish; rejecting it
would reject the whole batch). ``heartbeat`` records the latest ``progress`` and ``records``
separately, each with the time of the heartbeat that carried it; ``None`` leaves it as it was.
``finish(ok=True)`` returns True iff it is the first success of the task.

check(now, pending=0, slots=None)
---------------------------------
Pure: changes nothing. ``pending`` is an int >= 0, ``slots`` None or an int >= 0. Returns
equal-length arrays ``task, attempt, stage, node`` (int64) and ``elapsed, threshold``
(float64). A task appears at most once; done tasks and tasks added with
``speculatable=False`` never appear; ``policy=None`` returns nothing. Order: largest
``elapsed - threshold`` first, ties by task id ascending (LATE: its own order, below).

Spark (``kind == "spark"``), per stage with n = effective num_tasks:
- n == 1 and not (task_duration_threshold is not None and > 0): skip the stage.
- gate = max(floor(quantile * n), 1) (IEEE double product); s = successes.
- s >= gate: median = sorted(durations)[s // 2] (upper middle);
  threshold = max(multiplier * median, min_runtime); regular path.
- else, if task_duration_threshold > 0 and n <= slots_per_executor: threshold =
  task_duration_threshold; few-tasks path (no min_runtime, no efficiency test).
- else: skip the stage.
- Candidate: task not done, exactly one running attempt. Speculate iff elapsed > threshold
  (strict), and, on the regular path with efficiency=True, also
  ``elapsed > long_run_task_factor * threshold`` or
  ``attempt_rate < process_rate_multiplier * stage_rate`` (both strict).
  attempt_rate = records of the attempt's latest heartbeat that carried records /
  (that heartbeat's time - start); 0 if it never sent records or that time == start.
  stage_rate = sum(records) / sum(durations) over the stage's first successes whose
  ``finish`` carried records; ``inf`` while there is none or while the summed duration is 0.
- threshold column: the threshold used.

Flink (``kind == "flink"``), per stage with n = effective num_tasks:
- Examined only when s / n >= baseline_ratio (float division).
- N = floor(n * baseline_ratio + 0.5). N == 0 → baseline = 0. Else take the finished tasks'
  normalised durations sorted ascending, keep the first N (all of them if fewer), and
  baseline = baseline_multiplier * kept[min(N // 2, len(kept) - 1)].
- Normalised: the stage is *normalised* when every task in it that was not dropped has
  known input bytes (>= 0);
  then norm(t, b) = t / max(b, 5e-324) (Java's Double.MIN_VALUE; so 0 bytes and t > 0 is
  huge or inf, and 0 / anything = 0), else norm(t, b) = t.
- A running attempt of a not-done task is slow iff elapsed >= baseline_lower_bound and
  norm(elapsed, bytes) >= baseline (both inclusive). A task with ``running >=
  max_concurrent_executions`` is skipped. A task with slow attempts appears once, with its
  slowest: largest elapsed, ties → lowest attempt id.
- threshold column: normalised stage → max(baseline_lower_bound, baseline * bytes), where a
  product with a 0 factor is 0 (so inf * 0 → 0, not NaN); else
  max(baseline_lower_bound, baseline).

smallpond (``kind == "smallpond"``), per stage:
- p50, p95, p99 of the successful durations, numpy's linear percentiles. Examined only when
  s >= min_samples.
- For each not-done task: its NEWEST attempt (highest attempt id) is examined, and only while
  it runs; retry_count = attempts started for the task - 1; skipped unless
  retry_count < max_retry_count.
- T = probe_timeout. ``slots=None`` counts as infinitely many slots (pending < slots holds).
  excess = max(T, p95 - p50) if pending < slots; elif aggressive max(T, p99 - p50);
  else max(T, p99 - p50) * (2 + retry_count).
- Speculate iff elapsed - p50 >= excess (inclusive). threshold column = p50 + excess.

LATE (``kind == "late"``):
- Rate of a running attempt = progress / (t - start) for the latest heartbeat that carried
  progress, at time t; 0 if it never reported progress or t == start.
- Per stage, q = numpy linear quantile at slow_task_quantile of the rates of the running
  attempts of the stage's not-done tasks (every such attempt, copies included).
- Candidate: running attempt of a not-done task with exactly one running attempt, elapsed >=
  min_runtime, rate < q (strict).
- time_left = (1 - progress) / rate (progress 0 if never reported); inf if rate == 0.
- require_benefit: keep only if time_left > the stage's median successful duration (numpy
  linear percentile 50); with no success in the stage no estimate exists and the candidate
  is kept. threshold column = that median (nan if no success). elapsed column = elapsed.
- Order: time_left descending, ties by task id ascending (across all stages).
- Cap (slots not None): keep the first max(0, cap - running speculative attempts)
  candidates, cap = max(min_speculative, floor(speculative_cap * slots)); running speculative attempts are counted over
  the whole detector (any running attempt flagged speculative). ``slots=None``: no cap.
- ``slow_nodes(now)``: over the running attempts of not-done tasks, each node's mean rate;
  q = numpy linear quantile at slow_node_quantile of those per-node means; the nodes whose
  mean < q (strict), ascending. Empty for any policy other than LATE. ``now`` is validated
  only (rates use heartbeat times).

drop_task(task)
---------------
Says that a task ended without success and will get no more attempts: its Future was
cancelled before an attempt started, or its last allowed attempt failed. The scheduler calls
it once, when no attempt of the task runs any more (after ``finish(..., ok=False)`` of the
last one). From then on the task is *dropped*: it leaves its stage's effective
``num_tasks`` (for a declared stage: ``num_tasks`` minus the dropped tasks; for an open-ended
one: the tasks added so far minus the dropped ones; a declared stage still takes tasks up to
its declared count), and so the denominators of Spark's gate, one-task and few-tasks rules
and of Flink's finished ratio and N; a dropped task of unknown input bytes no longer keeps a
Flink stage from comparing time per byte. smallpond (a count of successes), LATE and Mantri
never read the stage's size. Errors, each changing nothing: an unknown task (or one of a
removed stage) → ``KeyError``; a task that succeeded, that was dropped already, or that has
running attempts → ``ValueError`` naming the task. Afterwards ``start``/``start_many`` of it
is a ``ValueError``, ``task_done`` is False and ``stage_stats`` counts it in ``dropped``.

How the peers count. Neither shrinks a stage that goes on, because in neither does a stage
go on past a task that will never succeed:
- Spark (``TaskSetManager``, 3.x/4.x): ``numTasks`` is the task set's length, fixed when the
  task set is built, and so is ``minFinishedForSpeculation = max(floor(quantile *
  numTasks), 1)``; ``checkSpeculatableTasks`` compares the number of successful durations
  with it, and returns at once for a zombie task set. ``handleFailedTask`` puts a killed or
  failed task back among the pending ones; once a task has failed ``maxTaskFailures`` times
  it calls ``abort``, which fails the task set and makes it a zombie, so its stage never
  speculates again. A cancelled stage's task sets are aborted likewise
  (``TaskSchedulerImpl.cancelTasks``: ``killAllTaskAttempts``, then ``abort`` of each) and
  are removed once their last running attempt ends.
- Flink (``ExecutionTimeBasedSlowTaskDetector``): the finished ratio is the job vertex's
  FINISHED execution vertices over all of its task vertices, and N is
  ``round(parallelism * ratio)``; a FAILED or CANCELED vertex stays in the denominator, but a
  vertex that failed for good fails (or, when cancelled, ends) the whole job.
Here the job goes on past a cancelled Future or a failed task, so the stage's other tasks
are judged against the tasks that can still succeed.

remove_stage(stage)
-------------------
Forgets a stage: afterwards the stage id and its tasks' ids are unknown (``KeyError``) and
``check`` and ``slow_nodes`` never look at it; other ids are unchanged. Its attempts have all
ended and stay ended attempts (a heartbeat is ignored, ``finish`` is a ``ValueError``). A stage
with running attempts is a ``ValueError`` naming it and stays as it was; a removed or unknown
stage is a ``KeyError``.
Mantri (``kind == "mantri"``; MantriPolicy's docstring gives the paper's sections):
- Per stage with n = successes >= max(min_samples, 1): mean = the durations summed one at a
  time in the order the tasks finished, / n; ordered = sorted durations;
  quick = ordered[floor(delta * n)]. scale = 1.
- Per byte: the finite ``normalised(duration, input_bytes)`` of the first successes with
  known bytes (m of them). A task with input_bytes b > 0 in a stage with m >= min_samples
  uses them instead: mean = (their in-order sum / m) * b, ordered = sorted per-byte values
  (n = m), quick = ordered[floor(delta * m)] * b, scale = b (float(b)).
- Examined: not-done speculatable tasks with a running attempt and
  ``attempts started - 1 < max_restarts``. t_rem of an attempt: ``(1 - progress) / rate`` if
  it reported progress and rate > 0 (rate as for LATE); else with e = now - start and
  k = #{v in ordered: v * scale <= e}: ``ordered[k + (n - k) // 2] * scale - e`` if k < n,
  else e. The task is judged by its attempt of least t_rem (ties: lowest id); c = its
  running attempts.
- Restart (action 1) iff c == 1 and pending > 0 and t_rem > mean + interval; threshold column
  mean + interval. Else copy (action 0) iff ``(t_rem * c) / (c + 1) > quick``; threshold
  ``(quick * (c + 1)) / c``. Else nothing. elapsed column: that attempt's elapsed.
- Order: ``t_rem - mean`` descending, ties by task id. ``action`` is 0 for every other policy.

Queries
-------
``task_done(task)``, ``running(task)`` (running attempts), ``stage_stats(stage)`` → dict with
name (as given, or None), num_tasks (declared, or None), tasks (added, dropped ones
included), dropped, successes, running
(running attempts in the stage), p50, p95, p99 (numpy linear percentiles of the durations;
nan when none).
"""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Any, Optional

import numpy as np

from straggler.policies import FlinkPolicy, LatePolicy, MantriPolicy, SmallpondPolicy, SparkPolicy

JAVA_DOUBLE_MIN = 5e-324  # Java's Double.MIN_VALUE, the smallest positive double
MAX_TASKS_PER_CALL = 1 << 26  # the most tasks one add_tasks call may add


class CheckResult:
    """What ``check`` returns: equal-length numpy arrays, most urgent first."""

    __slots__ = ("task", "attempt", "stage", "node", "elapsed", "threshold", "action")

    def __init__(self, rows: list[tuple]) -> None:
        # A row is (task, attempt, stage, node, elapsed, threshold[, action]); action 0 (copy)
        # unless given.
        rows = [row if len(row) == 7 else (*row, 0) for row in rows]
        columns = list(zip(*rows)) if rows else [(), (), (), (), (), (), ()]
        self.task = np.array(columns[0], dtype=np.int64)
        self.attempt = np.array(columns[1], dtype=np.int64)
        self.stage = np.array(columns[2], dtype=np.int64)
        self.node = np.array(columns[3], dtype=np.int64)
        self.elapsed = np.array(columns[4], dtype=np.float64)
        self.threshold = np.array(columns[5], dtype=np.float64)
        self.action = np.array(columns[6], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.task)

    def __repr__(self) -> str:
        return f"CheckResult(task={self.task.tolist()}, attempt={self.attempt.tolist()})"


def normalised(time: float, input_bytes: int) -> float:
    """Flink's execution time per input byte (ExecutionTimeWithInputBytes.compareTo)."""
    return time / max(float(input_bytes), JAVA_DOUBLE_MIN)


def _times_or_zero(a: float, b: float) -> float:
    # A product with a 0 factor is 0, so inf * 0 gives 0 rather than NaN.
    return 0.0 if a == 0.0 or b == 0.0 else a * b


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


# --- argument checks ------------------------------------------------------------------------------


def _is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _int(name: str, value: object) -> int:
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _time(name: str, value: object) -> float:
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _progress(value: object) -> Optional[float]:
    if value is None:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"progress must be a number, got {value!r}")
    number = float(value)
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise ValueError(f"progress must be in [0, 1], got {value!r}")
    return number


def _records(value: object) -> Optional[float]:
    if value is None:
        return None
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"records must be a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"records must be finite and >= 0, got {value!r}")
    return number


def _rows(name: str, values: object) -> list[Any]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    return array.tolist()


def _same_length(n: int, name: str, values: list[Any]) -> None:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} rows, expected {n}")


def _column(name: str, values: object, n: int) -> list[Any]:
    column = _rows(name, values)
    _same_length(n, name, column)
    return column


def _now_column(now: object, n: int) -> list[float]:
    if np.ndim(now) == 0:  # type: ignore[arg-type]
        scalar = np.asarray(now).item() if isinstance(now, (np.generic, np.ndarray)) else now
        return [_time("now", scalar)] * n
    return [_time("now", value) for value in _column("now", now, n)]


# --- the model ----------------------------------------------------------------------------------------


class _Stage:
    def __init__(self, num_tasks: Optional[int], name: Optional[str]) -> None:
        self.declared = num_tasks
        self.name = name
        self.tasks: list[int] = []
        self.dropped = 0  # tasks that ended without success for good
        # Durations of first successes in the order they finished (the order the core's
        # sketch sums them in, so that means agree to the last bit).
        self.finished: list[float] = []
        # Their finite durations per input byte, of the tasks whose bytes are known.
        self.finished_per_byte: list[float] = []

    @property
    def num_tasks(self) -> int:
        added = self.declared if self.declared is not None else len(self.tasks)
        return added - self.dropped


class _Task:
    def __init__(self, stage: int, input_bytes: int, speculatable: bool) -> None:
        self.stage = stage
        self.input_bytes = input_bytes  # -1: unknown
        self.speculatable = speculatable
        self.attempts: list[int] = []
        self.duration: Optional[float] = None  # of the first success
        self.finish_records: Optional[float] = None
        self.dropped = False  # ended without success for good (drop_task)


class _Attempt:
    def __init__(self, task: int, node: int, start: float, speculative: bool) -> None:
        self.task = task
        self.node = node
        self.start = start
        self.speculative = speculative
        self.last_time = start  # latest of start and heartbeat times
        self.progress: Optional[float] = None
        self.progress_time = start
        self.records: Optional[float] = None
        self.records_time = start
        self.finished = False

    @property
    def running(self) -> bool:
        return not self.finished


class ReferenceDetector:
    """Pure-Python model of ``straggler.Detector`` (see the module docstring)."""

    def __init__(
        self,
        policy: SparkPolicy | FlinkPolicy | SmallpondPolicy | LatePolicy | MantriPolicy | None = None,
    ) -> None:
        if policy is not None and not isinstance(
            policy, (SparkPolicy, FlinkPolicy, SmallpondPolicy, LatePolicy, MantriPolicy)
        ):
            raise TypeError(f"policy must be a policy object or None, got {policy!r}")
        self.policy = policy
        self._stages: list[Optional[_Stage]] = []  # None: removed
        self._tasks: list[_Task] = []
        self._attempts: list[_Attempt] = []

    # --- lookups ---

    def _stage(self, stage: object) -> _Stage:
        index = _int("stage", stage)
        target = self._stages[index] if 0 <= index < len(self._stages) else None
        if target is None:
            raise KeyError(f"unknown stage {stage!r}")
        return target

    def _task(self, task: object) -> _Task:
        index = _int("task", task)
        if not 0 <= index < len(self._tasks) or self._stages[self._tasks[index].stage] is None:
            raise KeyError(f"unknown task {task!r}")
        return self._tasks[index]

    def _live_stages(self) -> list[tuple[int, _Stage]]:
        return [(index, stage) for index, stage in enumerate(self._stages) if stage is not None]

    def _attempt(self, attempt: object) -> _Attempt:
        index = _int("attempt", attempt)
        if not 0 <= index < len(self._attempts):
            raise KeyError(f"unknown attempt {attempt!r}")
        return self._attempts[index]

    def _running_count(self, task: _Task) -> int:
        return sum(1 for a in task.attempts if self._attempts[a].running)

    # --- building ---

    def add_stage(self, num_tasks: Optional[int] = None, name: Optional[str] = None) -> int:
        if num_tasks is not None:
            num_tasks = _int("num_tasks", num_tasks)
            if num_tasks < 1:
                raise ValueError(f"num_tasks must be >= 1 or None, got {num_tasks!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self._stages.append(_Stage(num_tasks, name))
        return len(self._stages) - 1

    @staticmethod
    def _input_bytes(value: object) -> int:
        if value is None:
            return -1
        number = _int("input_bytes", value)
        if number < -1:
            raise ValueError(f"input_bytes must be >= 0, or -1/None for unknown, got {value!r}")
        return number

    def _check_room(self, stage: _Stage, extra: int) -> None:
        if stage.declared is not None and len(stage.tasks) + extra > stage.declared:
            raise ValueError(
                f"stage declared num_tasks={stage.declared} and has {len(stage.tasks)} tasks; "
                f"cannot add {extra} more"
            )

    def add_task(self, stage: int, input_bytes: Optional[int] = -1, speculatable: bool = True) -> int:
        target = self._stage(stage)
        size = self._input_bytes(input_bytes)
        if not _is_bool(speculatable):
            raise TypeError(f"speculatable must be a bool, got {speculatable!r}")
        self._check_room(target, 1)
        self._tasks.append(_Task(int(stage), size, bool(speculatable)))
        target.tasks.append(len(self._tasks) - 1)
        return len(self._tasks) - 1

    def add_tasks(self, stage: int, n: int, input_bytes: object = None) -> np.ndarray:
        target = self._stage(stage)
        count = _int("n", n)
        if count < 0:
            raise ValueError(f"n must be >= 0, got n={n!r}")
        if count > MAX_TASKS_PER_CALL:
            raise ValueError(f"n={n!r} is more tasks than one call may add ({MAX_TASKS_PER_CALL})")
        if input_bytes is None or np.ndim(input_bytes) == 0:  # type: ignore[arg-type]
            sizes = [self._input_bytes(input_bytes)] * count
        else:
            sizes = [self._input_bytes(v) for v in _column("input_bytes", input_bytes, count)]
        self._check_room(target, count)
        first = len(self._tasks)
        for size in sizes:
            self._tasks.append(_Task(int(stage), size, True))
            target.tasks.append(len(self._tasks) - 1)
        return np.arange(first, first + count, dtype=np.int64)

    # --- events ---

    def _validate_start(self, task: object, now: object, node: object) -> tuple[int, float, int]:
        target = self._task(task)
        time = _time("now", now)
        where = _int("node", node)
        if where < 0:
            raise ValueError(f"node must be >= 0, got {node!r}")
        if target.duration is not None:
            raise ValueError(f"task {task!r} already succeeded; it cannot start again")
        if target.dropped:
            raise ValueError(f"task {task!r} was dropped; it gets no more attempts")
        return int(task), time, where  # type: ignore[call-overload]

    def _apply_start(self, task: int, time: float, node: int) -> int:
        target = self._tasks[task]
        speculative = self._running_count(target) > 0
        self._attempts.append(_Attempt(task, node, time, speculative))
        attempt = len(self._attempts) - 1
        target.attempts.append(attempt)
        return attempt

    def start(self, task: int, now: float, node: int = 0) -> int:
        return self._apply_start(*self._validate_start(task, now, node))

    def start_many(self, tasks: object, now: object, nodes: object = None) -> np.ndarray:
        task_rows = _rows("tasks", tasks)
        n = len(task_rows)
        times = _now_column(now, n)
        node_rows = [0] * n if nodes is None else _column("nodes", nodes, n)
        checked = [self._validate_start(t, s, w) for t, s, w in zip(task_rows, times, node_rows)]
        return np.array([self._apply_start(*row) for row in checked], dtype=np.int64)

    def _validate_heartbeat(
        self, attempt: object, time: float, progress: object, records: object,
        last_times: dict[int, float],
    ) -> tuple[int, float, Optional[float], Optional[float]]:
        target = self._attempt(attempt)
        index = int(attempt)  # type: ignore[call-overload]
        value = _progress(progress)
        count = _records(records)
        if target.running:
            last = last_times.get(index, target.last_time)
            if time < last:
                raise ValueError(
                    f"now={time!r} is before attempt {index}'s start or last heartbeat ({last!r})"
                )
            last_times[index] = time
        return index, time, value, count

    def _apply_heartbeat(
        self, index: int, time: float, progress: Optional[float], records: Optional[float]
    ) -> None:
        target = self._attempts[index]
        if not target.running:
            return  # a late heartbeat of a finished attempt: ignored
        target.last_time = time
        if progress is not None:
            target.progress, target.progress_time = progress, time
        if records is not None:
            target.records, target.records_time = records, time

    def heartbeat(
        self, attempt: int, now: float, progress: Optional[float] = None,
        records: Optional[float] = None,
    ) -> None:
        row = self._validate_heartbeat(attempt, _time("now", now), progress, records, {})
        self._apply_heartbeat(*row)

    def heartbeat_many(
        self, attempts: object, now: object, progress: object = None, records: object = None
    ) -> None:
        attempt_rows = _rows("attempts", attempts)
        n = len(attempt_rows)
        times = _now_column(now, n)
        progress_rows = [None] * n if progress is None else _column("progress", progress, n)
        record_rows = [None] * n if records is None else _column("records", records, n)
        last_times: dict[int, float] = {}
        checked = [
            self._validate_heartbeat(a, t, p, r, last_times)
            for a, t, p, r in zip(attempt_rows, times, progress_rows, record_rows)
        ]
        for row in checked:
            self._apply_heartbeat(*row)

    def finish(self, attempt: int, now: float, ok: bool = True, records: Optional[float] = None) -> bool:
        target = self._attempt(attempt)
        time = _time("now", now)
        if not _is_bool(ok):
            raise TypeError(f"ok must be a bool, got {ok!r}")
        count = _records(records)
        if target.finished:
            raise ValueError(f"attempt {attempt!r} already finished")
        if time < target.last_time:
            raise ValueError(
                f"now={time!r} is before attempt {attempt!r}'s start or last heartbeat "
                f"({target.last_time!r})"
            )
        target.finished = True
        task = self._tasks[target.task]
        if ok and task.duration is None:
            task.duration = time - target.start
            task.finish_records = count
            stage = self._stages[task.stage]
            assert stage is not None  # a stage with a running attempt cannot have been removed
            stage.finished.append(task.duration)
            if task.input_bytes >= 0:
                per_byte = normalised(task.duration, task.input_bytes)
                if math.isfinite(per_byte):
                    stage.finished_per_byte.append(per_byte)
            return True
        return False

    def finish_many(
        self, attempts: object, now: object, ok: object = None, records: object = None
    ) -> np.ndarray:
        """``finish`` per row, all rows validated first; an attempt may end only once."""
        ids = [_int("attempt", a) for a in _rows("attempts", attempts)]
        n = len(ids)
        times = _now_column(now, n)
        oks = [True] * n if ok is None else _column("ok", ok, n)
        counts = [None] * n if records is None else _column("records", records, n)
        seen: set[int] = set()
        for a, time, flag, count in zip(ids, times, oks, counts):
            target = self._attempt(a)
            if not _is_bool(flag):
                raise TypeError(f"ok must be a bool, got {flag!r}")
            _records(count)
            if target.finished:
                raise ValueError(f"attempt {a!r} already finished")
            if a in seen:
                raise ValueError(f"attempts: ends attempt {a!r} twice")
            seen.add(a)
            if time < target.last_time:
                raise ValueError(
                    f"now={time!r} is before attempt {a!r}'s start or last heartbeat "
                    f"({target.last_time!r})"
                )
        won = [self.finish(a, t, ok=bool(f), records=c) for a, t, f, c in zip(ids, times, oks, counts)]
        return np.array(won, dtype=bool)

    def drop_task(self, task: int) -> None:
        target = self._task(task)
        if target.duration is not None:
            raise ValueError(f"task {task!r} has already succeeded; it cannot be dropped")
        if target.dropped:
            raise ValueError(f"task {task!r} was already dropped")
        running = self._running_count(target)
        if running:
            raise ValueError(
                f"task {task!r} still has {running} running attempt(s); end them with "
                "finish(ok=False) before dropping it"
            )
        target.dropped = True
        stage = self._stages[target.stage]
        assert stage is not None  # _task refused a task of a removed stage
        stage.dropped += 1

    def remove_stage(self, stage: int) -> None:
        target = self._stage(stage)
        running = sum(self._running_count(self._tasks[t]) for t in target.tasks)
        if running:
            raise ValueError(f"stage {stage!r} has {running} running attempts; end them first")
        self._stages[int(stage)] = None

    # --- queries ---

    def task_done(self, task: int) -> bool:
        return self._task(task).duration is not None

    def running(self, task: int) -> int:
        return self._running_count(self._task(task))

    def _durations(self, stage: _Stage) -> list[float]:
        return [self._tasks[t].duration for t in stage.tasks if self._tasks[t].duration is not None]  # type: ignore[misc]

    def stage_stats(self, stage: int) -> dict[str, Any]:
        target = self._stage(stage)
        durations = self._durations(target)
        return {
            "name": target.name,
            "num_tasks": target.declared,
            "tasks": len(target.tasks),
            "dropped": target.dropped,
            "successes": len(durations),
            "running": sum(self._running_count(self._tasks[t]) for t in target.tasks),
            "p50": _percentile(durations, 50),
            "p95": _percentile(durations, 95),
            "p99": _percentile(durations, 99),
        }

    def _rate(self, attempt: _Attempt) -> float:
        if attempt.progress is None or attempt.progress_time == attempt.start:
            return 0.0
        return attempt.progress / (attempt.progress_time - attempt.start)

    def _live_attempts(self, stage: _Stage) -> list[int]:
        """Running attempts of the stage's not-done tasks."""
        return [
            a for t in stage.tasks if self._tasks[t].duration is None
            for a in self._tasks[t].attempts if self._attempts[a].running
        ]

    def slow_nodes(self, now: float) -> np.ndarray:
        _time("now", now)
        if not isinstance(self.policy, LatePolicy):
            return np.array([], dtype=np.int64)
        rates_by_node: dict[int, list[float]] = {}
        for _, stage in self._live_stages():
            for a in self._live_attempts(stage):
                attempt = self._attempts[a]
                rates_by_node.setdefault(attempt.node, []).append(self._rate(attempt))
        if not rates_by_node:
            return np.array([], dtype=np.int64)
        means = {node: sum(r) / len(r) for node, r in rates_by_node.items()}
        cut = float(np.quantile(list(means.values()), self.policy.slow_node_quantile))
        return np.array(sorted(node for node, m in means.items() if m < cut), dtype=np.int64)

    # --- the decision ---

    def check(self, now: float, pending: int = 0, slots: Optional[int] = None) -> CheckResult:
        time = _time("now", now)
        waiting = _int("pending", pending)
        if waiting < 0:
            raise ValueError(f"pending must be >= 0, got {pending!r}")
        if slots is not None:
            slots = _int("slots", slots)
            if slots < 0:
                raise ValueError(f"slots must be >= 0 or None, got {slots!r}")
        policy = self.policy
        if policy is None:
            return CheckResult([])
        if isinstance(policy, LatePolicy):
            return self._check_late(policy, time, slots)
        if isinstance(policy, MantriPolicy):
            return self._check_mantri(policy, time, waiting)
        rows: list[tuple[int, int, int, int, float, float]] = []
        for index, stage in self._live_stages():
            if stage.num_tasks == 0:
                continue
            if isinstance(policy, SparkPolicy):
                rows += self._check_spark(policy, index, stage, time)
            elif isinstance(policy, FlinkPolicy):
                rows += self._check_flink(policy, index, stage, time)
            else:
                rows += self._check_smallpond(policy, index, stage, time, waiting, slots)
        rows.sort(key=lambda row: (-(row[4] - row[5]), row[0]))
        return CheckResult(rows)

    def _candidates(self, stage: _Stage) -> list[int]:
        """The stage's tasks that may be copied at all: not done, speculatable."""
        return [
            t for t in stage.tasks
            if self._tasks[t].duration is None and self._tasks[t].speculatable
        ]

    def _check_spark(self, policy: SparkPolicy, index: int, stage: _Stage, now: float) -> list:
        n = stage.num_tasks
        fixed = policy.task_duration_threshold
        has_fixed = fixed is not None and fixed > 0
        if n == 1 and not has_fixed:
            return []
        durations = sorted(self._durations(stage))
        gate = max(math.floor(policy.quantile * n), 1)
        if len(durations) >= gate:
            median = durations[len(durations) // 2]
            threshold = max(policy.multiplier * median, policy.min_runtime)
            regular = True
        elif has_fixed and n <= policy.slots_per_executor:
            threshold = float(fixed)  # type: ignore[arg-type]
            regular = False
        else:
            return []
        stage_rate = math.inf
        reported = [
            (self._tasks[t].finish_records, self._tasks[t].duration) for t in stage.tasks
            if self._tasks[t].duration is not None and self._tasks[t].finish_records is not None
        ]
        total_time = sum(d for _, d in reported)  # type: ignore[misc]
        if reported and total_time > 0:
            stage_rate = sum(r for r, _ in reported) / total_time  # type: ignore[misc]
        rows = []
        for t in self._candidates(stage):
            running = [a for a in self._tasks[t].attempts if self._attempts[a].running]
            if len(running) != 1:
                continue
            attempt = self._attempts[running[0]]
            elapsed = now - attempt.start
            if not elapsed > threshold:
                continue
            if regular and policy.efficiency:
                if attempt.records is None or attempt.records_time == attempt.start:
                    rate = 0.0
                else:
                    rate = attempt.records / (attempt.records_time - attempt.start)
                long_run = elapsed > policy.long_run_task_factor * threshold
                slow_rate = rate < policy.process_rate_multiplier * stage_rate
                if not (long_run or slow_rate):
                    continue
            rows.append((t, running[0], index, attempt.node, elapsed, threshold))
        return rows

    def _check_flink(self, policy: FlinkPolicy, index: int, stage: _Stage, now: float) -> list:
        n = stage.num_tasks
        finished = [t for t in stage.tasks if self._tasks[t].duration is not None]
        if len(finished) / n < policy.baseline_ratio:
            return []
        by_bytes = all(
            self._tasks[t].input_bytes >= 0 for t in stage.tasks if not self._tasks[t].dropped
        )

        def norm(time: float, task: int) -> float:
            return normalised(time, self._tasks[task].input_bytes) if by_bytes else time

        count = math.floor(n * policy.baseline_ratio + 0.5)
        if count == 0:
            baseline = 0.0
        else:
            kept = sorted(norm(self._tasks[t].duration, t) for t in finished)[:count]  # type: ignore[arg-type]
            baseline = policy.baseline_multiplier * kept[min(count // 2, len(kept) - 1)]
        rows = []
        for t in self._candidates(stage):
            running = [a for a in self._tasks[t].attempts if self._attempts[a].running]
            if len(running) >= policy.max_concurrent_executions:
                continue
            slow = [
                a for a in running
                if now - self._attempts[a].start >= policy.baseline_lower_bound
                and norm(now - self._attempts[a].start, t) >= baseline
            ]
            if not slow:
                continue
            slowest = min(slow, key=lambda a: (self._attempts[a].start, a))  # earliest start = largest elapsed
            attempt = self._attempts[slowest]
            if by_bytes:
                threshold = max(
                    policy.baseline_lower_bound,
                    _times_or_zero(baseline, float(self._tasks[t].input_bytes)),
                )
            else:
                threshold = max(policy.baseline_lower_bound, baseline)
            rows.append((t, slowest, index, attempt.node, now - attempt.start, threshold))
        return rows

    def _check_smallpond(
        self, policy: SmallpondPolicy, index: int, stage: _Stage, now: float,
        pending: int, slots: Optional[int],
    ) -> list:
        durations = self._durations(stage)
        if len(durations) < policy.min_samples:
            return []
        p50, p95, p99 = (float(np.percentile(durations, q)) for q in (50, 95, 99))
        rows = []
        for t in self._candidates(stage):
            attempts = self._tasks[t].attempts
            if not attempts or not self._attempts[attempts[-1]].running:
                continue
            retry_count = len(attempts) - 1
            if not retry_count < policy.max_retry_count:
                continue
            if slots is None or pending < slots:
                excess = max(policy.probe_timeout, p95 - p50)
            elif policy.aggressive:
                excess = max(policy.probe_timeout, p99 - p50)
            else:
                excess = max(policy.probe_timeout, p99 - p50) * (2 + retry_count)
            attempt = self._attempts[attempts[-1]]
            elapsed = now - attempt.start
            if elapsed - p50 >= excess:
                rows.append((t, attempts[-1], index, attempt.node, elapsed, p50 + excess))
        return rows

    def _check_late(self, policy: LatePolicy, now: float, slots: Optional[int]) -> CheckResult:
        ranked: list[tuple[float, tuple[int, int, int, int, float, float]]] = []
        for index, stage in self._live_stages():
            live = self._live_attempts(stage)
            if not live:
                continue
            cut = float(np.quantile([self._rate(self._attempts[a]) for a in live],
                                    policy.slow_task_quantile))
            durations = self._durations(stage)
            median = _percentile(durations, 50)
            for t in self._candidates(stage):
                running = [a for a in self._tasks[t].attempts if self._attempts[a].running]
                if len(running) != 1:
                    continue
                attempt = self._attempts[running[0]]
                elapsed = now - attempt.start
                rate = self._rate(attempt)
                if not (elapsed >= policy.min_runtime and rate < cut):
                    continue
                progress = attempt.progress if attempt.progress is not None else 0.0
                time_left = math.inf if rate == 0.0 else (1.0 - progress) / rate
                if policy.require_benefit and durations and not time_left > median:
                    continue
                ranked.append(
                    (time_left, (t, running[0], index, attempt.node, elapsed, median))
                )
        ranked.sort(key=lambda item: (-item[0], item[1][0]))
        rows = [row for _, row in ranked]
        if slots is not None:
            speculative_running = sum(1 for a in self._attempts if a.running and a.speculative)
            cap = max(policy.min_speculative, math.floor(policy.speculative_cap * slots))
            rows = rows[: max(0, cap - speculative_running)]
        return CheckResult(rows)

    def _check_mantri(self, policy: MantriPolicy, now: float, pending: int) -> CheckResult:
        ranked: list[tuple[float, tuple]] = []
        for index, stage in self._live_stages():
            n = len(stage.finished)
            if n < policy.min_samples or n == 0:
                continue
            ordered = sorted(stage.finished)
            by_duration = (
                _sum_in_order(stage.finished) / n, ordered[math.floor(policy.delta * n)], ordered
            )
            by_byte = None
            m = len(stage.finished_per_byte)
            if m >= policy.min_samples:
                per_byte = sorted(stage.finished_per_byte)
                by_byte = (
                    _sum_in_order(stage.finished_per_byte) / m,
                    per_byte[math.floor(policy.delta * m)],
                    per_byte,
                )
            for t in self._candidates(stage):
                task = self._tasks[t]
                if len(task.attempts) - 1 >= policy.max_restarts:
                    continue
                running = [a for a in task.attempts if self._attempts[a].running]
                if not running:
                    continue
                if by_byte is not None and task.input_bytes > 0:
                    scale = float(task.input_bytes)
                    mean_pb, quick_pb, values = by_byte
                    mean, quick = mean_pb * scale, quick_pb * scale
                else:
                    scale = 1.0
                    mean, quick, values = by_duration
                # The attempt likely to finish first: least t_rem, then lowest id.
                remaining, best = min(
                    (self._mantri_remaining(self._attempts[a], now, values, scale), a)
                    for a in running
                )
                c = len(running)
                restart_at = mean + policy.interval
                if c == 1 and pending > 0 and remaining > restart_at:
                    action, threshold = 1, restart_at
                elif (remaining * c) / (c + 1) > quick:
                    action, threshold = 0, (quick * (c + 1)) / c
                else:
                    continue
                attempt = self._attempts[best]
                row = (t, best, index, attempt.node, now - attempt.start, threshold, action)
                ranked.append((remaining - mean, row))
        ranked.sort(key=lambda item: (-item[0], item[1][0]))
        return CheckResult([row for _, row in ranked])

    def _mantri_remaining(
        self, attempt: _Attempt, now: float, ordered: list[float], scale: float
    ) -> float:
        """Mantri's t_rem: from progress when it has a positive rate, else from the task's
        t_new values (``ordered`` times ``scale``) longer than the elapsed time (see
        MantriPolicy)."""
        rate = self._rate(attempt)
        if attempt.progress is not None and rate > 0.0:
            return (1.0 - attempt.progress) / rate
        elapsed = now - attempt.start
        below = bisect.bisect_right(ordered, elapsed, key=lambda v: v * scale)
        n = len(ordered)
        if below == n:
            return elapsed
        return ordered[below + (n - below) // 2] * scale - elapsed


def _sum_in_order(values: list[float]) -> float:
    """Left-to-right float sum (the core's sketch adds one value at a time)."""
    total = 0.0
    for value in values:
        total += value
    return total
