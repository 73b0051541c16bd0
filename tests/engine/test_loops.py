"""The service's loops (engine/runtime/loops.py) on a real APScheduler and the wall clock:
a wake-up for a future due time waits `slack` seconds past it (the timer loop's
coalescing) unless the loop's plan says sooner (the timer loop's window: a lone timer
on time), the time the work reports (the timer loop's own window) and a wake-up for
now do not. The work here takes no time at all, which is when APScheduler's
bookkeeping after starting a run used to overwrite the next run a loop had just asked
for (with an interval trigger both tests fail: the run waits for the safety net). Last,
the time the timer loop's work reports (engine/service.py), on a fake clock."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from engine.ports import Clock, SystemClock
from engine.qa.demo import TimeLapseClock
from engine.runtime.loops import Loop, Plan, new_scheduler


@pytest.fixture
def scheduler() -> Iterator[BackgroundScheduler]:
    sched = new_scheduler()
    yield sched
    if sched.running:
        sched.shutdown(wait=True)


def _second_run_after(scheduler: BackgroundScheduler, slack: float,
                      clock: Clock | None = None, *, woken: bool = True,
                      plan: Plan | None = None, own_thread: bool = False,
                      ahead: float = 0.05) -> float:
    """Wall seconds between a run during which another thread wakes the loop for work
    due `ahead` seconds later (clock time), as a worker that wrote a timer does, and the
    next run; `woken=False`: the run reports that time as its next instead. `plan`: the
    loop's. `own_thread`: the run wakes its own loop (the timer loop re-arming a timer).
    A wake-up that comes after the due time runs at once (the work is due): `ahead`
    must outlast starting the waking thread, on a loaded machine too."""
    clock = clock or SystemClock()
    runs: list[float] = []
    second = threading.Event()
    loops: list[Loop] = []
    made = threading.Event()  # the first run may start before `Loop(...)` returns

    def work() -> datetime | None:
        made.wait(4)
        runs.append(time.monotonic())
        if len(runs) == 2:
            second.set()
        if len(runs) > 1:
            return None
        due = clock.now() + timedelta(seconds=ahead)
        if not woken:
            return due
        if own_thread:
            loops[0].wake(due)
        else:
            waker = threading.Thread(target=loops[0].wake, args=(due,))
            waker.start()
            waker.join()
        return None

    loop = Loop(scheduler, f"slack{slack}", work, clock, safety=5.0, slack=slack, plan=plan)
    loops.append(loop)
    made.set()
    if not scheduler.running:
        scheduler.start()
    assert second.wait(4), "the loop did not run again before its safety net"
    loop.close()
    return runs[1] - runs[0]


def test_a_wake_up_for_a_due_time_waits_the_slack(scheduler: BackgroundScheduler) -> None:
    assert _second_run_after(scheduler, 0.0) < 0.3
    assert 0.33 <= _second_run_after(scheduler, 0.4) < 2.0


def test_the_time_a_run_reports_is_kept(scheduler: BackgroundScheduler) -> None:
    """The timer loop's work says when its window of timers ends: no slack on top."""
    assert 0.04 <= _second_run_after(scheduler, 0.4, woken=False) < 0.4


def test_a_plan_says_when_to_run_within_the_slack(scheduler: BackgroundScheduler) -> None:
    """The timer loop's plan: the window of timers the due time starts ends with it (no
    timer due after it), so the run is at the due time, not the slack after it."""
    assert _second_run_after(scheduler, 0.4, plan=lambda at: at) < 0.3


def _broken_plan(at: datetime) -> datetime:
    raise RuntimeError("the database is down")


def test_a_wake_up_from_the_loops_own_run_or_another_processes_note_is_not_planned(
        scheduler: BackgroundScheduler) -> None:
    """The timer loop's own run re-arming a timer reports its next time at its end (so
    asking the store there is a wasted read), and the thread that hears other
    processes' notes must not wait on a read (`planned=False`): both wait the slack."""
    asked: list[datetime] = []

    def plan(at: datetime) -> datetime:
        asked.append(at)
        return at

    assert 0.33 <= _second_run_after(scheduler, 0.4, plan=plan, own_thread=True) < 2.0
    assert asked == []
    clock = SystemClock()
    ran = threading.Event()

    def work() -> datetime | None:
        ran.set()
        return None

    loop = Loop(scheduler, "noted", work, clock, safety=30.0, slack=0.4, plan=plan)
    assert ran.wait(4)  # its first run (the scheduler runs already)
    time.sleep(0.05)
    ran.clear()
    woken = time.monotonic()
    loop.wake(clock.now() + timedelta(seconds=0.05), planned=False)
    assert ran.wait(4)
    assert 0.33 <= time.monotonic() - woken < 2.0
    assert asked == []
    loop.close()


@pytest.mark.parametrize("plan", [
    lambda at: None,  # nothing known: the timer is gone, or in another lane
    lambda at: at + timedelta(seconds=10),  # later than the slack: another lane's window
    _broken_plan,
], ids=["unknown", "later", "failing"])
def test_what_a_plan_cannot_say_waits_the_slack(scheduler: BackgroundScheduler,
                                                plan: Plan) -> None:
    assert 0.33 <= _second_run_after(scheduler, 0.4, plan=plan) < 2.0


def test_a_plan_is_asked_only_for_a_due_time_before_the_next_run(
        scheduler: BackgroundScheduler) -> None:
    """A run planned by the due time runs first and reports what comes next: no read of
    the store for every batch that writes a timer behind it."""
    clock = SystemClock()
    asked: list[datetime] = []
    ran = threading.Event()

    def work() -> datetime | None:
        ran.set()
        return clock.now() + timedelta(seconds=2)  # its window ends in 2 s

    def plan(at: datetime) -> datetime:
        asked.append(at)
        return at

    loop = Loop(scheduler, "planned", work, clock, safety=30.0, slack=0.25, plan=plan)
    scheduler.start()
    assert ran.wait(4)
    time.sleep(0.05)  # the run has ended and asked for its next
    loop.wake(clock.now() + timedelta(seconds=3))  # behind the planned run: not asked
    assert asked == []
    sooner = clock.now() + timedelta(seconds=1)
    loop.wake(sooner)  # before it: asked, and the run moves there
    assert asked == [sooner]
    ran.clear()
    woken = time.monotonic()
    assert ran.wait(4)
    assert 0.9 <= time.monotonic() - woken < 1.6  # at ~1 s, not at 2 s
    loop.close()


def test_the_slack_is_the_clocks_time(scheduler: BackgroundScheduler) -> None:
    """The demo's clock runs `speed` times faster: 4 s of its time is 0.2 s of ours, so
    its timers are never hours late. (Work due 1 s of its time ahead: 50 ms of ours. At
    0.05 s, 2.5 ms of ours, the waking thread came after the due time on a loaded
    machine, and the loop rightly ran at once: 3 of 25 runs beside a busy CPU.)"""
    fast = TimeLapseClock(datetime.now(UTC), speed=20.0)
    assert 0.18 <= _second_run_after(scheduler, 4.0, fast, ahead=1.0) < 1.0


def _recorded(scheduler: BackgroundScheduler, name: str, *, slack: float = 0.0,
              spacing: float = 0.0) -> tuple[Loop, list[float], threading.Event]:
    """A started loop whose work notes when it ran; returned after its first run."""
    runs: list[float] = []
    ran = threading.Event()

    def work() -> datetime | None:
        runs.append(time.monotonic())
        ran.set()
        return None

    loop = Loop(scheduler, name, work, SystemClock(), safety=30.0, slack=slack,
                spacing=spacing)
    scheduler.start()
    assert ran.wait(4)  # the first run, at start
    return loop, runs, ran


def _woken(loop: Loop, runs: list[float], ran: threading.Event, *,
           spaced: bool = False) -> float:
    """Wake the loop; seconds until its run started."""
    ran.clear()
    woken_at = time.monotonic()
    loop.wake(spaced=spaced)
    assert ran.wait(4)
    return runs[-1] - woken_at


def test_a_wake_up_is_not_delayed_by_the_slack(scheduler: BackgroundScheduler) -> None:
    loop, runs, ran = _recorded(scheduler, "woken", slack=5.0)
    time.sleep(0.001)  # the run has ended: APScheduler may still be counting it
    assert _woken(loop, runs, ran) < 1.0
    loop.close()


def test_a_run_skipped_while_the_run_before_was_still_counted_is_tried_again_soon(
        scheduler: BackgroundScheduler) -> None:
    """APScheduler skips a run while it still counts the one before (one instance at a
    time) and says so (EVENT_JOB_MAX_INSTANCES): the loop is dirty, and past the run's
    last look at that, its next run is in 10 ms, not at the safety net. A run still
    running looks again itself. The trigger alone answers only what was asked: right
    after APScheduler hands a woken run to a thread (dirty, not yet running), it used to
    answer "in 10 ms" too, a second run for every wake-up from idle."""
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent

    from engine.runtime.loops import _LoopTrigger

    clock = SystemClock()
    loop = Loop(scheduler, "skipped", lambda: None, clock, safety=30.0)
    trigger = _LoopTrigger(loop)
    now = datetime.now(UTC)
    assert trigger.get_next_fire_time(now, now) == now + timedelta(seconds=30)
    loop._dirty.set()  # woken; not running yet
    assert trigger.get_next_fire_time(now, now) == now + timedelta(seconds=30)
    loop._dirty.clear()
    later = now + timedelta(seconds=30)
    loop._job.modify(next_run_time=later)  # the safety net's
    skipped = JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "skipped", "default", [now])
    loop._running = True  # skipped during a run: the run itself looks again
    loop._skipped(skipped)
    assert loop._dirty.is_set()
    assert loop._job.next_run_time == later  # not moved
    loop._dirty.clear()
    loop._running = False  # skipped after the run's last look
    loop._skipped(skipped)
    assert loop._dirty.is_set()
    assert loop._job.next_run_time <= datetime.now(UTC) + timedelta(milliseconds=10)
    other = JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, "other", "default", [now])
    loop._dirty.clear()
    loop._skipped(other)  # another loop's job
    assert not loop._dirty.is_set()
    loop.close()


def test_a_planned_run_skipped_during_a_long_run_is_run_after_it(
        scheduler: BackgroundScheduler) -> None:
    """A wake-up for a due time soon (a timer a batch wrote) after the running run has
    read the store, due before that run ends: APScheduler skips the planned run (one
    instance at a time) and the running run's report cannot know the timer. The loop
    hears of the skip and runs again right after, not at its safety net (30 s)."""
    clock = SystemClock()
    runs: list[float] = []
    ended: list[float] = []
    second = threading.Event()
    loops: list[Loop] = []

    def work() -> datetime | None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            second.set()
        if len(runs) == 1:  # the read is done; a timer due in 20 ms is written now
            threading.Thread(target=loops[0].wake,
                             args=(clock.now() + timedelta(milliseconds=20),)).start()
            time.sleep(0.15)  # this run is still running when the timer comes due
            ended.append(time.monotonic())
        return None

    loops.append(Loop(scheduler, "long", work, clock, safety=30.0))
    scheduler.start()
    assert second.wait(4), "the skipped run waited for the safety net"
    assert runs[1] - ended[0] < 0.5
    loops[0].close()


def test_a_run_skipped_while_the_run_before_was_still_counted_comes_soon(
        scheduler: BackgroundScheduler) -> None:
    """The same after the run's last look at its dirty flag: a wake-up for 20 ms later
    comes while APScheduler still counts the run (held 60 ms here), so that planned run
    is skipped too, and is tried again until it runs."""

    class SlowToFinish(Loop):
        def _run(self) -> None:
            super()._run()
            if len(runs) == 1:
                self.wake(clock.now() + timedelta(milliseconds=20))
                time.sleep(0.06)  # still counted as running by APScheduler
                ended.append(time.monotonic())

    clock = SystemClock()
    runs: list[float] = []
    ended: list[float] = []
    second = threading.Event()

    def work() -> datetime | None:
        runs.append(time.monotonic())
        if len(runs) == 2:
            second.set()
        return None

    loop = SlowToFinish(scheduler, "tail", work, clock, safety=30.0)
    scheduler.start()
    assert second.wait(4), "the skipped run waited for the safety net"
    assert runs[1] - ended[0] < 0.5
    loop.close()


def test_wake_ups_in_a_row_are_spaced_and_none_is_lost(scheduler: BackgroundScheduler) -> None:
    """With `spacing`, runs woken from other processes again and again (`spaced=True`:
    the dispatcher, NOTIFYed by every batch of every worker) start at most every
    `spacing` s, and the last wake-up still gets a run after it. After a quiet spell,
    or woken by this process (its own worker queued sends), a run starts at once."""
    loop, runs, ran = _recorded(scheduler, "spaced", spacing=0.2)
    time.sleep(0.3)  # quiet: the next wake-up runs at once
    assert _woken(loop, runs, ran, spaced=True) < 0.15
    started = len(runs)
    last_wake = 0.0
    deadline = time.monotonic() + 0.7
    while time.monotonic() < deadline:  # a wake-up every 10 ms for 0.7 s
        last_wake = time.monotonic()
        loop.wake(spaced=True)
        time.sleep(0.01)
    time.sleep(0.5)
    spaced = runs[started:]
    assert 2 <= len(spaced) <= 6, spaced  # ~0.7 / 0.2 runs, not ~70
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(spaced))
    assert spaced[-1] >= last_wake  # the last wake-up had its run
    _woken(loop, runs, ran, spaced=True)  # quiet again: at once
    loop.wake(spaced=True)  # a run starts, and waits for the spacing ...
    time.sleep(0.02)
    assert _woken(loop, runs, ran) < 0.1  # ... which a wake-up from this process cuts short
    loop.close()


def test_work_that_is_due_again_at_once_runs_again_at_once(
        scheduler: BackgroundScheduler) -> None:
    """A run whose work reports its next due time as now or past (the outbox loop: sends
    queued during the dispatch; the timer loop: a timer came due meanwhile) runs again
    at once. Asked for from the end of the run, that next run came while APScheduler
    still counted this one: it was skipped, and the loop waited for its safety net.
    Here the end of each run is held 30 ms to make that moment certain."""

    class SlowToFinish(Loop):
        def _run(self) -> None:
            super()._run()
            time.sleep(0.03)  # still counted as running by APScheduler

    clock = SystemClock()
    runs: list[float] = []
    done = threading.Event()

    def work() -> datetime | None:
        runs.append(time.monotonic())
        if len(runs) == 4:
            done.set()
        return clock.now() - timedelta(milliseconds=1) if len(runs) < 4 else None

    loop = SlowToFinish(scheduler, "due", work, clock, safety=5.0)
    scheduler.start()
    assert done.wait(4), "the loop did not run again before its safety net"
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert max(gaps) < 0.3, gaps
    loop.close()


NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@contextmanager
def _service_at(tmp_path: Path, now: datetime) -> Iterator[Any]:
    """A `Service` on a SQLite file with one journey and a fake clock at `now`."""
    from engine.service import Service
    from engine.testing import FakeClock
    from tests.engine.helpers import HELLO, stub_email, write_folder

    folder = write_folder(tmp_path / "j", {"hello": HELLO},
                          {"welcome": stub_email("welcome")})
    service = Service(folder, f"sqlite:///{tmp_path / 't.db'}", channels={},
                      clock=FakeClock(now))
    try:
        yield service
    finally:
        service.stop()


def test_the_timer_loop_reports_when_its_window_of_timers_ends(tmp_path: Path) -> None:
    """`serve`'s and `worker`'s timer loop (engine/service.py): after its run, the next
    is when the last timer due within TIMER_SLACK of the earliest comes due."""
    from engine.service import TIMER_SLACK
    from tests.store.helpers import timer

    now = NOW
    with _service_at(tmp_path, now) as service:
        first, last = now + timedelta(seconds=1), now + timedelta(seconds=1.2)
        service.store.add_timers([timer("a", first), timer("b", last),
                                  timer("c", first + timedelta(seconds=TIMER_SLACK + 0.01))])
        assert service._fire_timers() == last  # not first + the slack
        # A batch that writes a timer asks the same (Loop.plan): the run for a lone
        # timer is at its due time, not the slack after it.
        assert service._timer_round(first) == last
        service.start()
        assert service._loops["timers"].plan == service._timer_round


def test_a_window_of_dense_timers_closes_at_its_timer_window_th(tmp_path: Path) -> None:
    """Timers due densely (more than TIMER_WINDOW within the slack): the window closes
    at the TIMER_WINDOW-th, so the last of it does not wait for hundreds before it."""
    from engine.service import TIMER_SLACK, TIMER_WINDOW
    from tests.store.helpers import timer

    now = NOW
    with _service_at(tmp_path, now) as service:
        step = timedelta(seconds=TIMER_SLACK / (2 * TIMER_WINDOW))  # 2 windows' worth
        due = [now + timedelta(seconds=1) + i * step for i in range(2 * TIMER_WINDOW)]
        service.store.add_timers([timer(f"t{i:04d}", at) for i, at in enumerate(due)])
        assert service._timer_round() == due[TIMER_WINDOW - 1]
        assert service._timer_round(due[0]) == due[TIMER_WINDOW - 1]
        service.clock.set(due[TIMER_WINDOW - 1])  # type: ignore[attr-defined]
        service._fire_timers()
        assert service.store.pending_timers() == TIMER_WINDOW  # the window fired, no more
        assert service._timer_round() == due[-1]


@pytest.mark.parametrize("transient", [True, False])
def test_a_transient_error_is_a_warning_without_a_traceback(
        scheduler: BackgroundScheduler, caplog: pytest.LogCaptureFixture,
        transient: bool) -> None:
    """A lost connection made the outbox loop log ERROR with two tracebacks each time (an
    operator's alert) while the other loops warned: an error the store files as transient
    is a warning naming it, anything else still an ERROR with its traceback."""
    failed = threading.Event()

    class LostError(Exception):
        pass

    def work() -> datetime | None:
        failed.set()
        raise LostError("server closed the connection unexpectedly")

    scheduler.start()
    with caplog.at_level("WARNING", logger="journeyman"):
        loop = Loop(scheduler, "outbox", work, SystemClock(), safety=60.0,
                    transient=lambda exc: transient and isinstance(exc, LostError))
        assert failed.wait(5)
        loop.close()
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    (record,) = [r for r in caplog.records if "outbox loop" in r.getMessage()]
    if transient:
        assert record.levelname == "WARNING"
        assert record.getMessage() == ("the outbox loop met a transient database error "
                                       "(LostError: 1 in a row); it runs again shortly")
        assert record.exc_info is None
    else:
        assert record.levelname == "ERROR"
        assert record.exc_info is not None


def test_transient_errors_in_a_row_are_logged_at_1_2_4_and_their_end(
        scheduler: BackgroundScheduler, caplog: pytest.LogCaptureFixture) -> None:
    """A long outage is not a warning on every tick: 1, 2, 4, 8... in a row, as the
    worker's transient errors, and one line when the database answers again. Each is
    counted (journeyman_transient_errors_total, whose rate is what to alert on)."""
    runs: list[int] = []
    counted: list[int] = []
    recovered = threading.Event()

    class DownError(Exception):
        pass

    def work() -> datetime | None:
        runs.append(len(runs))
        if len(runs) <= 5:
            raise DownError("the database system is shutting down")
        recovered.set()
        return None

    scheduler.start()
    with caplog.at_level("INFO", logger="journeyman"):
        loop = Loop(scheduler, "outbox", work, SystemClock(), safety=60.0,
                    transient=lambda exc: isinstance(exc, DownError),
                    on_transient=lambda: counted.append(1))
        deadline = time.monotonic() + 10
        while not recovered.is_set() and time.monotonic() < deadline:
            loop.wake()
            time.sleep(0.02)
        assert recovered.is_set()
        loop.close()
    lines = [r.getMessage() for r in caplog.records if "outbox loop" in r.getMessage()]
    assert lines == [
        *(f"the outbox loop met a transient database error (DownError: {n} in a row); it "
          "runs again shortly" for n in (1, 2, 4)),
        "the outbox loop's database answers again after 5 transient errors in a row"]
    assert len(counted) == 5


class _Lapse:
    """The demo's clock by the Clock port alone (`from_wall`, `to_wall`), no `speed`."""

    def __init__(self, speed: float) -> None:
        self._inner = TimeLapseClock(datetime.now(UTC), speed=speed)

    def now(self) -> datetime:
        return self._inner.now()

    def from_wall(self, seconds: float) -> timedelta:
        return self._inner.from_wall(seconds)

    def to_wall(self, span: timedelta) -> float:
        return self._inner.to_wall(span)


def test_a_loop_asks_the_clock_how_long_its_times_are_on_the_wall(
        scheduler: BackgroundScheduler) -> None:
    """As test_the_slack_is_the_clocks_time, with a clock that says its pace only
    through the port: the loop read a `speed` attribute, and waited 4 s for this one."""
    assert 0.18 <= _second_run_after(scheduler, 4.0, _Lapse(20.0), ahead=1.0) < 1.0
