"""Mantri's rules (OSDI 2010, §5.1), scenario by scenario, against both Detectors.

Each scenario uses the paper's numbers where it gives them (δ = 0.25, γ = 3 restarts, Δ the
progress-report period, 10 s) and asserts the action, the task and the threshold the rule
implies, on both sides of each boundary. ``detector_cls`` runs every test against the Rust
core and the reference model.
"""

from __future__ import annotations

import pytest
from straggler.policies import MantriPolicy

COPY, RESTART = 0, 1


def stage_started(det, n, *, num_tasks=None, now=0.0):
    stage = det.add_stage(num_tasks=num_tasks if num_tasks is not None else n)
    tasks = det.add_tasks(stage, n).tolist()
    attempts = det.start_many(tasks, now).tolist()
    return tasks, attempts


def finish_at(det, attempts, times):
    for attempt, t in zip(attempts, times):
        det.finish(attempt, t)


def rows(result):
    return list(zip(result.task.tolist(), result.action.tolist(), result.threshold.tolist()))


# --- kill and restart: t_rem > E[t_new] + Δ while tasks wait for slots --------------------------


def test_restart_needs_remaining_time_strictly_over_mean_new_plus_interval(detector_cls):
    det = detector_cls(MantriPolicy())  # Δ = 10 s
    tasks, attempts = stage_started(det, 4)
    finish_at(det, attempts[:3], [10.0, 10.0, 10.0])  # E[t_new] = 10: the bar is 20 s
    det.heartbeat(attempts[3], 20.0, progress=0.5)  # rate 0.025: t_rem = 20, not over
    assert len(det.check(20.0, pending=1)) == 0
    det.heartbeat(attempts[3], 21.0, progress=0.5)  # rate 0.5 / 21: t_rem = 21
    assert rows(det.check(21.0, pending=1)) == [(3, RESTART, 20.0)]


def test_no_restart_while_no_task_waits_a_duplicate_instead(detector_cls):
    det = detector_cls(MantriPolicy())
    _, attempts = stage_started(det, 4)
    finish_at(det, attempts[:3], [10.0, 10.0, 10.0])
    det.heartbeat(attempts[3], 21.0, progress=0.5)  # t_rem = 21
    # P(t_new < 21 / 2) = 1 > δ: a copy, threshold q × 2 = 20.
    assert rows(det.check(21.0, pending=0)) == [(3, COPY, 20.0)]


def test_restart_only_of_a_task_with_a_single_attempt(detector_cls):
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = stage_started(det, 4)
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])
    copy = det.start(3, 1.0, node=1)  # a copy runs: c = 2, so only a further copy is possible
    det.heartbeat(attempts[3], 2.0, progress=0.1)  # t_rem 18
    det.heartbeat(copy, 2.0, progress=0.1)  # t_rem 9: 9 × 2/3 > q = 1
    assert [a for _, a, _ in rows(det.check(2.0, pending=3))] == [COPY]


# --- duplicate: P(t_new < t_rem · c/(c+1)) > δ ----------------------------------------------------


# (progress, time of the report) giving t_rem = 6 and 7 exactly in floating point.
@pytest.mark.parametrize(("report", "copied"), [((0.25, 2.0), False), ((0.125, 1.0), True)])
def test_one_attempt_is_duplicated_when_a_quarter_of_durations_beat_half_its_remaining_time(
    detector_cls, report, copied
):
    # Durations 1..8: q = the one at rank floor(0.25 × 8) = 2, which is 3. With c = 1 a copy
    # needs t_rem / 2 > 3.
    det = detector_cls(MantriPolicy())
    _, attempts = stage_started(det, 9)
    finish_at(det, attempts[:8], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    progress, at = report
    det.heartbeat(attempts[8], at, progress=progress)
    result = det.check(8.0)
    assert rows(result) == ([(8, COPY, 6.0)] if copied else [])


def test_with_copies_running_the_bar_is_c_over_c_plus_one_of_the_quickest(detector_cls):
    det = detector_cls(MantriPolicy())
    _, attempts = stage_started(det, 9)
    finish_at(det, attempts[:8], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    copy = det.start(8, 8.0, node=1)
    det.heartbeat(attempts[8], 10.0, progress=0.1)  # t_rem = 90
    det.heartbeat(copy, 10.0, progress=0.4)  # t_rem = 3: the quicker one judges the task
    assert len(det.check(10.0)) == 0  # 3 × 2/3 = 2 is not over q = 3
    det.heartbeat(copy, 12.0, progress=0.4)  # t_rem = 6: 6 × 2/3 = 4 > 3
    result = det.check(12.0)
    assert (result.task.tolist(), result.attempt.tolist(), result.action.tolist()) == ([8], [copy], [COPY])
    assert result.threshold.tolist() == [4.5]  # q × 3 / 2


# --- γ = 3, no gate, no-progress estimate, order -----------------------------------------------


def test_at_most_three_attempts_beyond_the_first(detector_cls):
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = stage_started(det, 4)
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])
    now, current = 10.0, attempts[3]
    for _ in range(3):
        assert rows(det.check(now, pending=1))[0][:2] == (3, RESTART)
        det.finish(current, now, ok=False)  # the kill
        current = det.start(3, now)
        now += 10.0
    assert len(det.check(now, pending=1)) == 0


def test_acts_as_soon_as_min_samples_succeed_with_no_75_percent_gate(detector_cls):
    det = detector_cls(MantriPolicy(min_samples=3, interval=1.0))
    _, attempts = stage_started(det, 100)
    finish_at(det, attempts[:2], [1.0, 1.0])
    det.heartbeat(attempts[50], 1.0, progress=0.01)
    assert len(det.check(2.0, pending=10)) == 0  # two samples: no t_new estimate yet
    det.finish(attempts[2], 1.0)
    assert rows(det.check(2.0, pending=10))[0][:2] == (50, RESTART)


def test_without_progress_elapsed_is_read_against_longer_durations(detector_cls):
    det = detector_cls(MantriPolicy())
    _, attempts = stage_started(det, 5)
    finish_at(det, attempts[:4], [1.0, 2.0, 3.0, 10.0])
    # q = 2 (rank 1). At 2.5 s the durations over 2.5 are [3, 10]: upper median 10, so
    # t_rem = 7.5 and 7.5 / 2 > 2.
    assert rows(det.check(2.5)) == [(4, COPY, 4.0)]
    # At 1.5 s the longer ones are [2, 3, 10]: median 3, t_rem = 1.5: 0.75 is not over 2.
    assert len(det.check(1.5)) == 0


def test_most_expected_saving_first(detector_cls):
    det = detector_cls(MantriPolicy(interval=5.0))
    _, attempts = stage_started(det, 6)
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])  # restart bar E + Δ = 6; q = 1
    det.heartbeat(attempts[3], 2.0, progress=0.2)  # t_rem 8
    det.heartbeat(attempts[4], 2.0, progress=0.1)  # t_rem 18
    det.heartbeat(attempts[5], 2.0, progress=0.25)  # t_rem 6: no restart, but 3 > q
    result = det.check(2.0, pending=1)
    assert result.task.tolist() == [4, 3, 5]
    assert result.action.tolist() == [RESTART, RESTART, COPY]


def test_other_policies_answer_action_zero(detector_cls):
    from straggler.policies import SparkPolicy

    det = detector_cls(SparkPolicy(quantile=0.5, min_runtime=0.0))
    _, attempts = stage_started(det, 2)
    det.finish(attempts[0], 1.0)
    result = det.check(5.0, pending=3)
    assert result.task.tolist() == [1] and result.action.tolist() == [COPY]


# --- data-size-aware t_new: the stage's time per byte times the task's bytes --------------------


def sized_stage(det, sizes, nodes, n=None):
    n = len(sizes) if n is None else n
    stage = det.add_stage(num_tasks=n)
    tasks = det.add_tasks(stage, n, input_bytes=sizes).tolist()
    attempts = det.start_many(tasks, 0.0, nodes=nodes).tolist()
    return tasks, attempts


def test_a_large_healthy_task_is_not_restarted_one_as_large_on_a_slow_node_is(detector_cls):
    # Three tasks of 128 bytes took 1 s: 1/128 s per byte. Two tasks of 1280 bytes (t_new
    # 10 s, the restart bar 10 + Δ = 11 s): one on a healthy node at 0.1 per second
    # (t_rem 9 s), one on a node four times slower (t_rem 36 s).
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = sized_stage(det, [128, 128, 128, 1280, 1280], nodes=[0, 0, 0, 0, 1])
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])
    det.heartbeat(attempts[3], 1.0, progress=0.1)
    det.heartbeat(attempts[4], 4.0, progress=0.1)
    assert rows(det.check(4.0, pending=5)) == [(4, RESTART, 11.0)]


def test_without_bytes_the_same_large_task_is_restarted(detector_cls):
    # The same stage with unknown sizes: E[t_new] = 1 s, so 9 s left is past 1 + Δ.
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = sized_stage(det, None, nodes=[0, 0, 0, 0, 1], n=5)
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])
    det.heartbeat(attempts[3], 1.0, progress=0.1)
    det.heartbeat(attempts[4], 4.0, progress=0.1)
    assert rows(det.check(4.0, pending=5)) == [(4, RESTART, 2.0), (3, RESTART, 2.0)]


def test_a_copy_is_judged_against_the_scaled_quantile(detector_cls):
    # Times per byte 1/128, 2/128, 3/128, 4/128 (q at rank 1: 2/128); a task of 512 bytes
    # has q = 8 s, so with no task waiting a copy needs t_rem / 2 > 8.
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = sized_stage(det, [128, 128, 128, 128, 512], nodes=None)
    finish_at(det, attempts[:4], [1.0, 2.0, 3.0, 4.0])
    det.heartbeat(attempts[4], 4.0, progress=0.25)  # t_rem = 12: 6 is not over 8
    assert len(det.check(4.0)) == 0
    det.heartbeat(attempts[4], 8.0, progress=0.25)  # t_rem = 24: 12 > 8
    assert rows(det.check(8.0)) == [(4, COPY, 16.0)]


def test_without_progress_a_sized_task_is_read_against_its_scaled_times(detector_cls):
    # Successes of 128 bytes in 1, 2, 3 and 10 s; a task of 256 bytes: its t_new values are
    # 2, 4, 6, 20 and q = 4.
    det = detector_cls(MantriPolicy())
    _, attempts = sized_stage(det, [128, 128, 128, 128, 256], nodes=None)
    finish_at(det, attempts[:4], [1.0, 2.0, 3.0, 10.0])
    assert len(det.check(2.5)) == 0  # above 2.5: [4, 6, 20], t_rem 6 − 2.5 = 3.5, half not over 4
    assert rows(det.check(5.0)) == [(4, COPY, 8.0)]  # above 5: [6, 20], t_rem 15


@pytest.mark.parametrize("last", [0, -1])
def test_a_task_of_zero_or_unknown_bytes_keeps_the_durations(detector_cls, last):
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = sized_stage(det, [128, 128, 128, last], nodes=None)
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])
    det.heartbeat(attempts[3], 1.0, progress=0.5)  # t_rem 1: E[t_new] + Δ = 2, q = 1
    assert len(det.check(1.0, pending=1)) == 0
    det.heartbeat(attempts[3], 4.0, progress=0.5)  # t_rem 4
    assert rows(det.check(4.0, pending=1)) == [(3, RESTART, 2.0)]


def test_the_time_per_byte_needs_min_samples_successes_with_known_bytes(detector_cls):
    # Three successes, but only two of known bytes: the durations judge the 1280-byte task.
    det = detector_cls(MantriPolicy(interval=1.0))
    _, attempts = sized_stage(det, [128, 128, -1, 1280], nodes=None)
    finish_at(det, attempts[:3], [1.0, 1.0, 1.0])
    det.heartbeat(attempts[3], 1.0, progress=0.1)  # t_rem 9 > 1 + 1
    assert rows(det.check(1.0, pending=1)) == [(3, RESTART, 2.0)]


# --- the issue's workloads ------------------------------------------------------------------------


def test_equal_tasks_are_never_acted_on(detector_cls):
    """No stragglers: 40 tasks of 1 s on 4 slots, progress reported every 0.1 s."""
    det = detector_cls(MantriPolicy(min_samples=1, interval=0.1))
    stage = det.add_stage(num_tasks=40)
    tasks = det.add_tasks(stage, 40).tolist()
    queue = list(tasks)
    running = {}
    acted = 0
    for step in range(0, 101):
        now = step / 10
        for task, (attempt, start) in list(running.items()):
            if now - start >= 1.0 - 1e-9:
                det.finish(attempt, now)
                del running[task]
            else:
                det.heartbeat(attempt, now, progress=round(now - start, 10))
        while queue and len(running) < 4:
            task = queue.pop(0)
            running[task] = (det.start(task, now), now)
        acted += len(det.check(now, pending=len(queue), slots=4))
    assert not running and not queue
    assert acted == 0


def test_the_issues_one_host_stragglers_are_restarted_once_three_tasks_are_done(detector_cls):
    """The issue's workload: 40 tasks on 4 slots, the first attempts of tasks 3, 17 and 29
    take 3 s and the others 0.1 s, progress every 20 ms. With Δ = the 0.1 s check interval,
    the stragglers in the first wave are restarted once three successes are in."""
    det = detector_cls(MantriPolicy(interval=0.1))
    stage = det.add_stage(num_tasks=40)
    det.add_tasks(stage, 40)
    slow = det.start(3, 0.0)
    fast = [det.start(t, 0.0) for t in (0, 1, 2)]
    for attempt in fast:
        det.finish(attempt, 0.1)
    t = 0.1
    for task in (4, 5):  # the freed slots take the next tasks; two more successes
        det.finish(det.start(task, t), t + 0.1)
    det.heartbeat(slow, 0.3, progress=0.1)  # 0.3 s of 3 s: t_rem = 2.7 > 0.1 + 0.1
    result = det.check(0.3, pending=33, slots=4)
    assert rows(result) == [(3, RESTART, pytest.approx(0.2))]
