"""SpeculativeExecutor's Futures follow concurrent.futures' rules; its task-side API and inputs."""

from __future__ import annotations

import concurrent.futures as cf
import math
import pickle
import threading

import pytest
import straggler as sg


def blocked_until(event: threading.Event, value):
    assert event.wait(10), "the test never released this task"
    return value


@pytest.fixture
def one_worker():
    ex = sg.SpeculativeExecutor(max_workers=1, policy=None)
    yield ex
    ex.shutdown(wait=True)


def test_running_and_cancel_follow_the_standard_rules(one_worker):
    started, release = threading.Event(), threading.Event()

    def first():
        started.set()
        return blocked_until(release, 1)

    f1 = one_worker.submit(first)
    f2 = one_worker.submit(abs, -2)
    assert started.wait(10)
    assert f1.running() and not f1.cancel()
    assert not f2.running() and f2.cancel() and f2.cancelled()
    release.set()
    assert f1.result() == 1
    with pytest.raises(cf.CancelledError):
        f2.result()
    one_worker.shutdown()
    assert one_worker.stats().attempts == 1  # the cancelled task never ran


def test_wait_and_as_completed_see_tasks_in_the_order_they_finish(one_worker):
    release = threading.Event()
    slow = one_worker.submit(blocked_until, release, "slow")
    done, not_done = cf.wait([slow], timeout=0.01)
    assert (done, not_done) == (set(), {slow})
    with sg.SpeculativeExecutor(max_workers=2, policy=None) as other:
        fast = other.submit(abs, -5)
        first = next(cf.as_completed([slow, fast]))
        assert first is fast
        done, _ = cf.wait([slow, fast], return_when=cf.FIRST_COMPLETED)
        assert fast in done
        release.set()
        assert [f.result() for f in cf.as_completed([slow, fast])] in (["slow", 5], [5, "slow"])


def test_done_callbacks_run_once_and_may_submit_more_work():
    calls = []
    chained = []
    submitted = threading.Semaphore(0)
    with sg.SpeculativeExecutor(max_workers=2, policy=None) as ex:
        def callback(future):
            calls.append(future.result())
            chained.append(ex.submit(abs, -future.result()))
            submitted.release()

        ex.submit(abs, -3).add_done_callback(callback)
        ex.submit(abs, -4).add_done_callback(callback)
        # The chained submits happen in the callbacks; let them in before shutdown.
        assert submitted.acquire(timeout=10) and submitted.acquire(timeout=10)
    assert sorted(calls) == [3, 4]
    assert sorted(f.result() for f in chained) == [3, 4]


def test_shutdown_cancel_futures_cancels_only_tasks_that_never_started():
    started, release = threading.Event(), threading.Event()

    def first():
        started.set()
        return blocked_until(release, "first")

    ex = sg.SpeculativeExecutor(max_workers=1, policy=None)
    running = ex.submit(first)
    queued = [ex.submit(abs, -i) for i in range(5)]
    assert started.wait(10)
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)
    release.set()
    assert running.result() == "first"
    ex.shutdown(wait=True)
    assert ex.stats().attempts == 1


def test_shutdown_waits_for_every_task():
    with sg.SpeculativeExecutor(max_workers=2, policy=None) as ex:
        futures = [ex.submit(pow, 2, i) for i in range(50)]
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2**i for i in range(50)]


def test_map_returns_results_in_order_and_can_show_progress(capsys):
    with sg.SpeculativeExecutor(max_workers=3, policy=None) as ex:
        assert list(ex.map(pow, [2, 3, 4], [5, 2, 0])) == [32, 9, 1]
        assert list(ex.map(abs, range(-20, 0), progress=True)) == list(range(20, 0, -1))
    assert "20/20" in capsys.readouterr().err


def test_map_raises_the_first_error_in_order():
    with sg.SpeculativeExecutor(max_workers=2, policy=None, max_failures=1) as ex:
        results = ex.map(lambda x: 1 // x, [1, 0, 2])
        assert next(results) == 1
        with pytest.raises(ZeroDivisionError):
            next(results)


# --- inside a task ----------------------------------------------------------------------------

def test_outside_a_task_there_is_no_attempt_and_heartbeat_does_nothing():
    assert sg.current_attempt() is None
    assert sg.heartbeat() is None
    assert sg.heartbeat(progress=0.5, records=10) is None


@pytest.mark.parametrize("kwargs, error, word", [
    ({"progress": 1.5}, ValueError, "progress"),
    ({"progress": math.nan}, ValueError, "progress"),
    ({"progress": "half"}, TypeError, "progress"),
    ({"records": -1}, ValueError, "records"),
    ({"records": 2.5}, TypeError, "records"),
])
def test_heartbeat_rejects_bad_values_naming_them(kwargs, error, word):
    with pytest.raises(error, match=word):
        sg.heartbeat(**kwargs)


def test_current_attempt_describes_the_running_attempt(tmp_path):
    def describe():
        sg.heartbeat(progress=1.0, records=3)
        a = sg.current_attempt()
        return a.task, a.attempt, a.speculative, a.node, a.staging_dir

    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        plain = ex.submit(describe).result()
        staged = ex.submit(sg.options(describe, output=str(tmp_path / "o"))).result()
    assert plain == (0, 0, False, 0, None)
    assert staged[:4] == (1, 0, False, 0)
    assert staged[4].startswith(str(tmp_path) + "/.o.")  # beside the output: one filesystem


def test_the_attempt_context_pickles_without_its_link_to_the_executor():
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        context = ex.submit(sg.current_attempt).result()
    copy = pickle.loads(pickle.dumps(context))
    assert (copy.task, copy.attempt, copy.staging_dir) == (0, 0, None)
    assert copy._live is None and context._live is not None


def test_options_never_touch_the_functions_own_arguments():
    def echo(*args, **kwargs):
        return args, kwargs

    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        fn = sg.options(echo, stage="s", num_tasks=2, input_bytes=10)
        got = ex.submit(fn, 1, stage="mine", output="theirs", fn="x").result()
    assert got == ((1,), {"stage": "mine", "output": "theirs", "fn": "x"})
    assert fn(5) == ((5,), {})  # the wrapper is still the function


@pytest.mark.parametrize("kwargs, error, word", [
    ({"num_tasks": 0}, ValueError, "num_tasks"),
    ({"input_bytes": -1}, ValueError, "input_bytes"),
    ({"speculatable": "no"}, TypeError, "speculatable"),
    ({"stage": 3}, TypeError, "stage"),
    ({"output": ""}, ValueError, "output"),
])
def test_options_reject_bad_values_naming_them(kwargs, error, word):
    with pytest.raises(error, match=word):
        sg.options(abs, **kwargs)


def test_a_stage_keeps_the_size_it_was_declared_with():
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        ex.submit(sg.options(abs, stage="m", num_tasks=2), 1)
        with pytest.raises(ValueError, match="num_tasks.*'m'.*2.*3"):
            ex.submit(sg.options(abs, stage="m", num_tasks=3), 1)
        ex.submit(sg.options(abs, stage="m"), 1)  # no size: the declared one stands


@pytest.mark.parametrize("kwargs, error, word", [
    ({"max_workers": 0}, ValueError, "max_workers"),
    ({"max_workers": 2.0}, TypeError, "max_workers"),
    ({"interval": 0}, ValueError, "interval"),
    ({"interval": math.inf}, ValueError, "interval"),
    ({"max_failures": 0}, ValueError, "max_failures"),
    ({"policy": "spark"}, TypeError, "policy"),
    ({"executor": object()}, TypeError, "executor"),
])
def test_the_executor_rejects_bad_arguments_naming_them(kwargs, error, word):
    with pytest.raises(error, match=word):
        sg.SpeculativeExecutor(**kwargs)


def test_an_engine_of_unknown_size_needs_max_workers():
    class Inline(cf.Executor):
        def submit(self, fn, /, *args, **kwargs):
            future = cf.Future()
            future.set_result(fn(*args, **kwargs))
            return future

    with pytest.raises(ValueError, match="max_workers"):
        sg.SpeculativeExecutor(Inline())
    with sg.SpeculativeExecutor(Inline(), max_workers=2, policy=None) as ex:
        assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_a_non_callable_is_refused():
    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        with pytest.raises(TypeError, match="fn"):
            ex.submit(42)
        with pytest.raises(TypeError, match="fn"):
            sg.options(42)


def test_heartbeat_accepts_numpy_scalars_like_the_detector_does():
    import numpy as np

    def beats() -> int:
        sg.heartbeat(progress=np.float32(0.5), records=np.int64(7))
        sg.heartbeat(progress=np.float16(0.75))
        sg.heartbeat(progress=np.int64(1), records=np.uint8(9))
        return 1

    with sg.SpeculativeExecutor(max_workers=1, policy=None) as ex:
        assert ex.submit(beats).result(timeout=30) == 1
    assert ex.stats().failures == 0
    with pytest.raises(TypeError, match="progress"):
        sg.heartbeat(progress=np.bool_(True))
