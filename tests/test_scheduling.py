"""The copy-planning seam (``straggler._scheduling``): pure decisions, no threads, no clock."""

from dataclasses import dataclass, field
from typing import ClassVar

import pytest
from straggler._scheduling import NodeBlocklist, Situation, choose_node, plan_copies


@dataclass
class Answer:
    """The shape of ``Detector.check``'s answer (plain lists are enough for the planner)."""

    task: list = field(default_factory=list)
    attempt: list = field(default_factory=list)
    stage: list = field(default_factory=list)
    node: list = field(default_factory=list)
    elapsed: list = field(default_factory=list)
    threshold: list = field(default_factory=list)


def answer(*tasks, nodes=None):
    nodes = nodes or [0] * len(tasks)
    return Answer(list(tasks), [10 + t for t in tasks], [0] * len(tasks), nodes,
                  [5.0] * len(tasks), [1.0] * len(tasks))


# The planner reads only `kind` and the limits named below: these stand-ins carry exactly those.
@dataclass(frozen=True)
class Spark:
    kind: ClassVar[str] = "spark"


@dataclass(frozen=True)
class Flink:
    kind: ClassVar[str] = "flink"
    max_concurrent_executions: int = 3


@dataclass(frozen=True)
class Smallpond:
    kind: ClassVar[str] = "smallpond"
    max_retry_count: int = 5


@dataclass(frozen=True)
class Late:
    kind: ClassVar[str] = "late"
    speculative_cap: float = 0.1
    min_speculative: int = 1


def situation(**kw):
    base = dict(pending=0, free_slots=4, slots=4, attempts={})
    base.update(kw)
    return Situation(**base)


def test_no_copy_while_original_tasks_wait():
    plan = plan_copies(answer(1, 2), policy=Spark(), situation=situation(pending=1, free_slots=1))
    assert plan.copies == ()


def test_copies_use_only_slots_left_after_pending_originals():
    plan = plan_copies(answer(1, 2, 3), policy=Spark(), situation=situation(pending=1, free_slots=3))
    assert [c.task for c in plan.copies] == [1, 2]


def test_copies_follow_the_detectors_urgency_order_and_carry_its_numbers():
    plan = plan_copies(answer(7, 3), policy=Spark(), situation=situation(free_slots=1))
    (copy,) = plan.copies
    assert (copy.task, copy.copied_attempt, copy.elapsed, copy.threshold, copy.node) == (7, 17, 5.0, 1.0, None)


def test_spark_copies_a_task_only_while_one_attempt_runs():
    plan = plan_copies(answer(1, 2), policy=Spark(), situation=situation(attempts={1: 2, 2: 1}))
    assert [c.task for c in plan.copies] == [2]


def test_flink_tops_up_to_max_concurrent_executions_and_blocks_slow_nodes():
    plan = plan_copies(answer(1, 2, nodes=[4, 6]), policy=Flink(), situation=situation(attempts={1: 1, 2: 2}))
    assert [c.task for c in plan.copies] == [1, 1, 2]
    assert plan.block_nodes == (4, 6)


def test_flink_blocks_slow_nodes_even_when_no_slot_is_free():
    plan = plan_copies(answer(1, nodes=[4]), policy=Flink(), situation=situation(free_slots=0))
    assert plan.copies == () and plan.block_nodes == (4,)


def test_smallpond_may_copy_its_newest_attempt_while_older_ones_run():
    plan = plan_copies(answer(1), policy=Smallpond(), situation=situation(attempts={1: 3}))
    assert [c.task for c in plan.copies] == [1]


def test_late_keeps_running_copies_within_the_cap():
    # floor(0.25 x 8 slots) = 2: one copy runs, so one more may start, not two.
    plan = plan_copies(answer(1, 2, 3), policy=Late(speculative_cap=0.25),
                       situation=situation(free_slots=4, slots=8, speculative_running=1))
    assert [c.task for c in plan.copies] == [1]


def test_late_cap_rounds_down_like_the_detectors():
    # floor(0.1 x 4) = 0: with min_speculative=0 (the paper's bare cap) a pool of 4 gets no copy.
    plan = plan_copies(answer(1, 2), policy=Late(min_speculative=0), situation=situation(slots=4))
    assert plan.copies == ()


def test_copy_never_goes_to_a_node_the_task_ran_on():
    plan = plan_copies(answer(1, 2), policy=Spark(), situation=situation(
        free_nodes={0: 2, 1: 1}, task_nodes={1: {0}, 2: {0, 1}}))
    assert [(c.task, c.node) for c in plan.copies] == [(1, 1)]


def test_copies_of_one_task_go_to_distinct_nodes():
    plan = plan_copies(answer(1), policy=Flink(), situation=situation(
        free_nodes={0: 4, 1: 4, 2: 4}, task_nodes={1: {0}}))
    assert sorted(c.node for c in plan.copies) == [1, 2]


def test_blocked_and_late_slow_nodes_take_no_copy():
    sit = situation(free_nodes={0: 1, 1: 1, 2: 1}, blocked_nodes={1}, slow_nodes={2})
    assert [c.node for c in plan_copies(answer(5), policy=Late(0.5), situation=sit).copies] == [0]
    sit = situation(free_nodes={1: 1, 2: 1}, blocked_nodes={1}, slow_nodes={2})
    assert [c.node for c in plan_copies(answer(5), policy=Spark(), situation=sit).copies] == [2]


def test_choose_node_prefers_the_emptiest_allowed_node():
    assert choose_node(None) is None
    assert choose_node({0: 1, 1: 3, 2: 3}) == 1
    assert choose_node({0: 1, 1: 3}, avoid={1}) == 0
    assert choose_node({0: 0, 1: 3}, blocked={1}) == -1


def test_node_blocklist_expires_and_extends():
    blocks = NodeBlocklist()
    blocks.block(3, now=10.0, duration=5.0)
    blocks.block(3, now=12.0, duration=1.0)  # a shorter block does not shorten it
    assert blocks.blocked(14.9) == {3}
    assert blocks.blocked(15.0) == frozenset()


@pytest.mark.parametrize("policy", [Spark(), Flink(), Smallpond(), Late()])
def test_an_empty_answer_plans_nothing(policy):
    assert plan_copies(Answer(), policy=policy, situation=situation()).copies == ()


def test_late_starts_one_copy_on_fewer_than_ten_slots():
    # floor(0.1 x 8) = 0; the cap is max(min_speculative=1, 0) = 1.
    plan = plan_copies(answer(1, 2), policy=Late(), situation=situation(free_slots=2, slots=8))
    assert [c.task for c in plan.copies] == [1]
    running = situation(free_slots=2, slots=8, speculative_running=1)
    assert plan_copies(answer(1, 2), policy=Late(), situation=running).copies == ()


# --- Mantri: copies and restarts ahead of pending originals -------------------------------------


@dataclass(frozen=True)
class Mantri:
    kind: ClassVar[str] = "mantri"
    max_restarts: int = 3


@dataclass
class ActionAnswer(Answer):
    action: list = field(default_factory=list)


def with_actions(actions, *tasks, nodes=None):
    base = answer(*tasks, nodes=nodes)
    return ActionAnswer(base.task, base.attempt, base.stage, base.node, base.elapsed,
                        base.threshold, list(actions))


def test_mantri_copies_take_free_slots_ahead_of_pending_originals():
    plan = plan_copies(with_actions([0, 0], 1, 2), policy=Mantri(),
                       situation=situation(pending=5, free_slots=1))
    assert [(c.task, c.restart, c.priority) for c in plan.copies] == [(1, False, True)]


def test_copies_first_is_one_option_for_the_other_policies():
    waiting = situation(pending=5, free_slots=1, copies_first=True)
    assert [c.task for c in plan_copies(answer(1, 2), policy=Spark(), situation=waiting).copies] == [1]
    spark_order = situation(pending=5, free_slots=1)
    assert plan_copies(answer(1, 2), policy=Spark(), situation=spark_order).copies == ()


def test_a_restart_needs_no_free_slot_when_the_engine_places_attempts():
    plan = plan_copies(with_actions([1, 0], 1, 2), policy=Mantri(),
                       situation=situation(pending=5, free_slots=0))
    (restart,) = plan.copies
    assert (restart.task, restart.copied_attempt, restart.restart, restart.node) == (1, 11, True, None)


def test_a_restart_goes_to_another_node_and_frees_its_own():
    # Task 1 runs on node 0; node 2 has the only free slot. The restart takes it, and the
    # slot it frees on node 0 takes the copy of task 2.
    plan = plan_copies(with_actions([1, 0], 1, 2, nodes=[0, 1]), policy=Mantri(),
                       situation=situation(pending=0, free_slots=1, free_nodes={0: 0, 1: 0, 2: 1},
                                           task_nodes={1: {0}, 2: {1}}))
    assert [(c.task, c.restart, c.node) for c in plan.copies] == [(1, True, 2), (2, False, 0)]


def test_no_restart_while_another_attempt_of_the_task_is_queued():
    plan = plan_copies(with_actions([1], 1), policy=Mantri(),
                       situation=situation(free_slots=0, attempts={1: 2}))
    assert plan.copies == ()


def test_mantri_allows_max_restarts_plus_one_attempts():
    from straggler._scheduling import max_attempts

    assert max_attempts(Mantri(max_restarts=3)) == 4
