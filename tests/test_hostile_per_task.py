"""Hostile: the per-task path (TaskFuture, the lock-free intake, the lock-free interrupt guard).

Each test asserts a guarantee (every Future resolves exactly once, shutdown returns, stats count
every task, no interrupt lands outside its attempt, no thread of ours dies), never a timing: the
bounded waits below only turn a hang into a failure.
"""

from __future__ import annotations

import concurrent.futures as cf
import random
import threading
import time

import pytest
import straggler as sg
from straggler._engines.threads import ThreadEngine

pytestmark = pytest.mark.timeout(180)

HANG = 15.0  # seconds after which a wait that should end is called a hang


def noop(x=None):
    return x


def _shutdown_bounded(ex, **kw):
    errors = []

    def run():
        try:
            ex.shutdown(**kw)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(HANG)
    assert not t.is_alive(), "shutdown(wait=True) hangs"
    assert not errors, errors


def _all_resolve(futures):
    # cf.wait does not count a Future cancelled and never claimed (CANCELLED, not notified)
    # as done: the standard library's executors leave shutdown(cancel_futures=True)'s so too.
    done, not_done = cf.wait([f for f in futures if not f.cancelled()], timeout=HANG)
    assert not not_done, f"{len(not_done)} of {len(futures)} futures never resolved"


# --- the runners' park ----------------------------------------------------------------------


def _spin(seconds):
    """Hold the interpreter (no sleep): a runner whose wait timed out meanwhile cannot take the
    ledger's lock back before this thread's next wake() notifies it."""
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


def test_park_timeout_racing_a_wake_strands_nothing(monkeypatch):
    """A parked runner whose wait(IDLE) times out just as a submitter's wake() notifies
    it: Condition.wait returns False (timed out) although notify() took its waiter, so the
    wake counted it busy and started no runner, and the runner counts itself unparked a second
    time and leaves: ``parked`` goes to -1, ``busy`` leaks (shutdown(wait=True) hangs), and a
    task queued through the lock (ready queue, which a leaving runner does not re-check) is
    never run."""
    monkeypatch.setattr(ThreadEngine, "IDLE", 0.0005)
    ex = sg.SpeculativeExecutor(max_workers=1, policy=None)
    futures = []
    try:
        for spin in (0.0007, 0.001, 0.002, 0.003):
            for i in range(150):
                if i % 2:
                    futures.append(ex.submit(sg.options(noop, speculatable=False), i))
                else:
                    futures.append(ex.submit(noop, i))
                _spin(spin)
        _all_resolve(futures)
        assert ex._engine.parked >= 0, f"parked count went negative: {ex._engine.parked}"
    finally:
        _shutdown_bounded(ex, wait=True)


# --- submit racing shutdown -----------------------------------------------------------------


def test_submit_after_shutdown_wait_false_while_runners_drain():
    """Submitting while shutdown(wait=False) lets the runners drain."""
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    fs = [ex.submit(time.sleep, 0.001) for _ in range(200)]
    ex.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        ex.submit(noop)
    _all_resolve(fs)
    assert ex.stats().tasks == 200


# --- submit from callbacks and from tasks -----------------------------------------------------


def test_submit_from_done_callbacks_and_tasks():
    """A chain of submits from done-callbacks (runner threads) and from inside tasks."""
    ex = sg.SpeculativeExecutor(max_workers=3, policy=None)
    made = []
    lock = threading.Lock()
    limit = 600

    def task(depth):
        if depth < 3:
            with lock:
                made.append(ex.submit(task, depth + 1))
        return depth

    def again(f):
        with lock:
            if len(made) < limit:
                g = ex.submit(task, 0)
                made.append(g)
                g.add_done_callback(again)

    with lock:
        for _ in range(10):
            f = ex.submit(task, 0)
            made.append(f)
            f.add_done_callback(again)
    deadline = time.monotonic() + HANG
    while True:
        with lock:
            n = len(made)
            snapshot = list(made)
        _all_resolve(snapshot)
        with lock:
            if len(made) == n:
                break
        assert time.monotonic() < deadline
    _shutdown_bounded(ex, wait=True)
    with lock:
        _all_resolve(made)
        assert ex.stats().tasks == len(made)


# --- one task at a time, around the park --------------------------------------------------------


@pytest.mark.parametrize("idle", [0.001, 0.01])
def test_one_task_at_a_time_around_the_park(monkeypatch, idle):
    """(With sleeps, not spins: the runner gets the lock back before the next wake)."""
    monkeypatch.setattr(ThreadEngine, "IDLE", idle)
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    rng = random.Random(2)
    fs = []
    for i in range(300):
        f = ex.submit(noop, i)
        fs.append(f)
        if i % 3 == 0:
            assert f.result(timeout=HANG) == i
        time.sleep(rng.choice([0, idle / 2, idle, idle * 1.5, idle * 3]))
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)
    assert [f.result() for f in fs] == list(range(300))
    assert ex.stats().tasks == 300


# --- stages and options mixed with plain tasks -------------------------------------------------


def test_ids_follow_submission_order_across_paths():
    """Plain tasks (intake) and options tasks (lock) interleaved: task ids in order."""
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    seen = []
    lock = threading.Lock()

    def record(i):
        with lock:
            seen.append((sg.current_attempt().task, i))

    fs = []
    for i in range(300):
        if i % 5 == 0:
            fs.append(ex.submit(sg.options(record, stage="other"), i))
        elif i % 7 == 0:
            fs.append(ex.submit(sg.options(record, timeout=60), i))
        else:
            fs.append(ex.submit(record, i))
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)
    by_i = dict((i, tid) for tid, i in seen)
    assert [by_i[i] for i in range(300)] == list(range(300))
    st = ex.stage_stats()
    assert st["default"].tasks + st["other"].tasks == 300 == ex.stats().tasks


def test_num_tasks_on_default_stage_before_plain_submits():
    """A sized default stage keeps plain submits on the lock path and counts them."""
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    fs = [ex.submit(sg.options(noop, num_tasks=3), 0)]
    assert not ex._ledger.intake_open
    fs.append(ex.submit(noop, 1))
    fs.append(ex.submit(noop, 2))
    with pytest.raises(ValueError):
        ex.submit(noop, 3)
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)
    assert ex.stats().tasks == 3


def test_num_tasks_on_default_stage_after_plain_submits():
    """A size declared after plain submits is refused, the plain tasks all counted."""
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    fs = [ex.submit(noop, i) for i in range(50)]
    with pytest.raises(ValueError):
        ex.submit(sg.options(noop, num_tasks=3))
    fs += [ex.submit(noop, i) for i in range(50)]
    assert ex.stats().tasks == 100
    assert ex.stage_stats()["default"].tasks == 100
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)


def test_stats_right_after_lock_free_submits_from_threads():
    """stats()/stage_stats()/events() read while other threads submit lock-free."""
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None)
    ex.submit(noop).result(timeout=HANG)
    fs: list = []
    stop = threading.Event()
    bad = []

    def reader():
        last = 0
        while not stop.is_set():
            n = ex.stats().tasks
            if n < last:
                bad.append((n, last))
            last = n
            ex.stage_stats()
            ex.events()

    r = threading.Thread(target=reader)
    r.start()
    for i in range(3000):
        fs.append(ex.submit(noop, i))
        assert ex.stats().tasks >= i + 2
    stop.set()
    r.join(HANG)
    assert not bad
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)
    assert ex.stats().tasks == 3001 == ex.stage_stats()["default"].tasks


# --- interrupts -------------------------------------------------------------------------------


@pytest.fixture
def thread_deaths(monkeypatch):
    deaths = []
    previous = threading.excepthook

    def hook(args):
        deaths.append((args.thread.name if args.thread else None, args.exc_type))
        previous(args)

    monkeypatch.setattr(threading, "excepthook", hook)
    return deaths


def test_interrupt_inside_bad_arguments():
    """Bad arguments raise (TypeError, or OverflowError for an id out of range), never crash."""
    from straggler._core import interrupt_inside

    key = 12345
    with pytest.raises(TypeError):
        interrupt_inside([], key, ValueError)
    with pytest.raises(TypeError):
        interrupt_inside({}, "x", ValueError)
    with pytest.raises(TypeError):
        interrupt_inside({}, True, ValueError)
    with pytest.raises(TypeError):
        interrupt_inside({}, key, ValueError("instance"))
    with pytest.raises(TypeError):
        interrupt_inside({}, key, int)
    with pytest.raises(TypeError):
        interrupt_inside({}, key, None)
    with pytest.raises(TypeError):
        interrupt_inside({key: "thread"}, key, ValueError)
    with pytest.raises(TypeError):
        interrupt_inside({key: None}, key, ValueError)
    with pytest.raises((TypeError, OverflowError)):
        interrupt_inside({key: -1}, key, ValueError)
    with pytest.raises((TypeError, OverflowError)):
        interrupt_inside({key: 2**80}, key, ValueError)
    with pytest.raises(TypeError):
        interrupt_inside({key: 1}, key)  # type: ignore[call-arg]
    assert interrupt_inside({}, key, ValueError) is False
    assert interrupt_inside({key: 0}, key, ValueError) is False  # no such thread
    assert interrupt_inside({key: 999_999_999}, key, ValueError) is False


def _spin_until_cancelled(n):
    # ignores heartbeat(): only the asynchronous exception stops it
    t = time.perf_counter()
    x = 0
    while time.perf_counter() - t < n:
        x += 1
    return n


def test_interrupts_racing_short_attempts(thread_deaths):
    """Timeouts with stop_grace=0 interrupt attempts that end about when the interrupt
    comes; the next attempt run by the same thread is never hit; every Future resolves once and
    no runner thread dies."""
    ex = sg.SpeculativeExecutor(max_workers=2, policy=None, timeout=0.002, stop_grace=0.005, max_failures=1,
                                interval=0.001)
    hits_outside = []

    def short(i):
        _spin_until_cancelled(0.0015 + (i % 5) * 0.0003)
        return i

    def check_after(f):
        # a done-callback runs in the runner thread, outside any attempt
        pass

    fs = []
    for i in range(150):
        f = ex.submit(short, i)
        f.add_done_callback(check_after)
        fs.append(f)
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)
    for i, f in enumerate(fs):
        e = f.exception()
        assert e is None and f.result() == i or isinstance(e, sg.AttemptTimeout), (i, e)
    assert not thread_deaths, thread_deaths
    assert not hits_outside


def test_interrupt_never_hits_the_next_attempt_on_the_thread(thread_deaths):
    """One runner; each task spins about as long as the timeout then returns, the next
    task records any AttemptCancelled it receives before its own deadline could be reached
    (its timeout is long)."""
    ex = sg.SpeculativeExecutor(max_workers=1, policy=None, stop_grace=0.005, max_failures=1, interval=0.001)
    wrong = []

    def victim(i):
        _spin_until_cancelled(0.002)
        return i

    def bystander(i):
        try:
            _spin_until_cancelled(0.0005)
        except sg.AttemptCancelled:
            wrong.append(i)
            raise
        return i

    fs = []
    for i in range(100):
        fs.append(ex.submit(sg.options(victim, timeout=0.002), i))
        fs.append(ex.submit(sg.options(bystander, timeout=60), i))
    _all_resolve(fs)
    _shutdown_bounded(ex, wait=True)
    assert not wrong, f"interrupts meant for a victim landed in bystanders {wrong[:10]}"
    assert not thread_deaths, thread_deaths
