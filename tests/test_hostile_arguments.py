"""Hostile: bad (huge, class-instead-of-instance) arguments must be refused at the call with a
TypeError / ValueError naming the argument, never accepted and then kill a thread of ours."""

from __future__ import annotations

import threading
import time

import pytest
import straggler as sg

pytestmark = pytest.mark.timeout(60)


def _dead_thread_errors(make) -> list:
    """Build an executor with ``make``, run one task (and one loser to stop), and collect what
    our threads raised."""
    errors: list = []
    old = threading.excepthook
    threading.excepthook = lambda args: errors.append((args.thread.name, args.exc_type.__name__))
    try:
        try:
            ex = make()
        except (TypeError, ValueError):
            return []  # refused at the call: fine
        try:
            ex.submit(time.sleep, 0.3).result(timeout=10)
            time.sleep(0.3)
        finally:
            threading.excepthook = old
            ex.shutdown(wait=False)
    finally:
        threading.excepthook = old
    return errors


def test_hostile_huge_interval_refused_or_survived() -> None:
    # threading.TIMEOUT_MAX is ~9.2e9 s on Linux; 1e10 is a finite float the checks accept.
    errors = _dead_thread_errors(lambda: sg.SpeculativeExecutor(max_workers=1, interval=1e10))
    assert errors == [], f"a thread of ours died: {errors}"


def test_hostile_huge_stop_grace_refused_or_survived() -> None:
    errors: list = []
    old = threading.excepthook
    threading.excepthook = lambda args: errors.append((args.thread.name, args.exc_type.__name__))
    try:
        try:
            ex = sg.SpeculativeExecutor(max_workers=1, stop_grace=1e10, timeout=0.1, max_failures=1,
                                        interval=0.05, policy=None)
        except (TypeError, ValueError):
            return
        try:
            f = ex.submit(time.sleep, 0.5)
            try:
                f.result(timeout=10)
            except BaseException:
                pass
            time.sleep(0.3)
        finally:
            ex.shutdown(wait=False)
    finally:
        threading.excepthook = old
    assert errors == [], f"a thread of ours died: {errors}"


def test_hostile_huge_max_events_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="max_events"):
        sg.SpeculativeExecutor(max_workers=1, max_events=10**20)


def test_hostile_policy_class_instead_of_instance_names_policy() -> None:
    with pytest.raises(TypeError, match="policy"):
        sg.SpeculativeExecutor(max_workers=1, policy=sg.SparkPolicy)


def test_hostile_output_with_nul_refused_at_submit(tmp_path) -> None:
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        with pytest.raises(ValueError, match="output"):
            ex.submit(sg.options(int, output=str(tmp_path / "a\0b")))
        assert ex.stats().tasks == 0


def test_hostile_existing_output_is_a_value_error(tmp_path) -> None:
    # DESIGN: bad input -> TypeError / ValueError / KeyError naming the argument.
    (tmp_path / "exists").mkdir()
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        with pytest.raises(ValueError, match="output"):
            ex.submit(sg.options(int, output=str(tmp_path / "exists")))
