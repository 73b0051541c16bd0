"""The service's loops: inbox events, due timers and the outbox, each an APScheduler job
that runs when there is work instead of on a fixed tick.

A `Loop` runs its work at once when woken (an event was accepted, a batch queued sends
or wrote an earlier timer, another process said so through PostgreSQL NOTIFY), at the
next time its work reports (when the next timers should fire, a held event or a
deferred send comes due), and at least every `safety` seconds as a safety net. A
wake-up for a due time may run `slack` seconds late, so that what comes due close
together runs together; a loop given a `plan` asks it when to run instead (the timer
loop: when the last timer due within the slack comes due, so a lone timer fires on
time), and so does the timer loop's own report. Waking a loop that is running marks it
dirty, and it runs again before it sleeps, so no wake-up is lost.

APScheduler 3.11 with `misfire_grace_time=None, coalesce=True, max_instances=1`
(design.md): a late run still runs, once, never twice at the same time.

Times are the clock's; a clock may run faster than the wall clock (the demo's
time-lapse clock), and a wait for one of its times is as long as the clock says
(`Clock.to_wall`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger

from engine.core.times import plus
from engine.ports import Clock
from engine.runtime.transients import known_transient
from engine.work_kind import background_work

log = logging.getLogger("journeyman.loops")

WAKE_RETRY = timedelta(milliseconds=10)
Work = Callable[[], datetime | None]  # runs once; returns when it next has work, if known
# Given a due time woken for, when to run for it (a clock time), if known
Plan = Callable[[datetime], datetime | None]


def new_scheduler() -> BackgroundScheduler:
    return BackgroundScheduler(timezone=UTC, job_defaults={
        "misfire_grace_time": None, "coalesce": True, "max_instances": 1})


class Loop:
    def __init__(self, scheduler: BackgroundScheduler, name: str, work: Work, clock: Clock, *,
                 safety: float = 5.0, slack: float = 0.0, spacing: float = 0.0,
                 plan: Plan | None = None, stop: threading.Event | None = None,
                 transient: Callable[[BaseException], bool] | None = None,
                 on_transient: Callable[[], None] | None = None) -> None:
        self.name = name
        self.work = work
        # The store's `is_transient`: such an error (a lost connection, a lock) is a
        # warning without a traceback, as the worker's transient errors are; an alert on
        # ERROR lines then hears of real failures only
        self.transient = transient
        self.on_transient = on_transient  # counted (journeyman_transient_errors_total)
        self._transients = 0  # transient errors in a row: logged at 1, 2, 4, 8...
        self.clock = clock
        self.safety = safety
        # Seconds (of the clock) a run woken for a future due time (`wake(at)`) may wait
        # past it, so work due close together is done in one run: one transaction for
        # many timers instead of a transaction for every few (timer slack, as in Linux's
        # timer_slack_ns). The time the work itself reports is kept as it is: it knows
        # what is due (Worker.next_timer_round ends its window with its last timer).
        self.slack = slack
        # Asked when to run for a due time woken for, when no run is planned by then:
        # the timer loop's plan reads the window of timers that time starts from the
        # store, so a timer with none due after it fires on time, not `slack` late.
        # Kept within the slack: what it cannot say (None, an error, a later time: the
        # timer is in another lane, or gone) runs `slack` late, as without a plan.
        self.plan = plan
        # Wall seconds at least between the starts of two runs woken from another process
        # (`wake(spaced=True)`): woken again sooner, a run waits for the rest, then does
        # everything that came meanwhile in one go. The outbox loop is woken by every
        # batch of every worker through NOTIFY and ran a transaction per wake-up for a
        # handful of rows. A wake-up from this process (its own worker queued sends)
        # runs at once, and so does any after a quiet spell.
        self.spacing = spacing
        self._last_start = float("-inf")  # time.monotonic() of the last run's work
        self._prompt = threading.Event()  # woken by this process: no spacing
        # Set while no run works (between runs; a run woken again while it works goes
        # on without a break): the dispatcher waits on the event loop's (EVENTS_FIRST).
        self.idle = threading.Event()
        self.idle.set()
        self.stop = stop or threading.Event()
        self._dirty = threading.Event()
        # APScheduler's shutdown holds its job-store lock while it waits for running
        # jobs, and moving a job needs that lock: a job moving a loop during shutdown
        # would deadlock. `close()` takes this gate, so no move starts after it.
        self._gate = threading.Lock()
        self._closed = False
        # The earliest run asked for (wall time) since the last run began; the trigger
        # reads it (see _LoopTrigger).
        self._wanted: datetime | None = None
        self._running = False  # between a run's start and its last look at `_dirty`
        self._run_thread = 0  # threading.get_ident() of the thread of the last run
        self._scheduler = scheduler
        self._job = scheduler.add_job(self._run, _LoopTrigger(self), id=name, name=name,
                                      next_run_time=datetime.now(UTC))
        scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)

    def wake(self, at: datetime | None = None, *, spaced: bool = False,
             planned: bool = True) -> None:
        """Run now (or at `at`, a clock time, if that is sooner than planned). `spaced`:
        a wake-up from another process, which may wait for the loop's `spacing`.
        `planned=False`: a wake-up for `at` that may not ask the plan (a read of the
        store) and waits the slack: one from the thread that hears other processes'
        notes, which would keep the others waiting behind the read (the process that
        wrote the timer plans it itself)."""
        if at is not None and at > self.clock.now():
            latest = plus(at, timedelta(seconds=self.slack))
            self._reschedule(latest)  # first: at most the slack late, however the plan goes
            if planned and (sooner := self._planned(at, latest)) < latest:
                self._reschedule(sooner)
            return
        if not spaced:
            self._prompt.set()
        self._dirty.set()
        self._reschedule(None)

    def _run(self) -> None:
        self._run_thread = threading.get_ident()
        self._running = True
        self.idle.clear()
        self._wanted = None  # this run is what was asked for; later asks set it again
        due: datetime | None = None
        try:
            while not self.stop.is_set():
                wait = self._last_start + self.spacing - time.monotonic()
                if wait > 0 and not self._prompt.is_set():
                    self._prompt.wait(wait)  # cut short by a wake-up from this process
                    if self.stop.is_set():
                        break
                self._last_start = time.monotonic()
                self._prompt.clear()
                self._dirty.clear()
                try:
                    with background_work():  # API requests write first (engine/ports.py)
                        due = self.work()
                except Exception as exc:  # log it; the safety net runs it again
                    if known_transient(self.transient, exc):
                        if self.on_transient is not None:
                            self.on_transient()
                        self._transients += 1
                        count = self._transients
                        if count & (count - 1) == 0:  # 1, 2, 4, 8...: as the worker's
                            log.warning("the %s loop met a transient database error (%s: "
                                        "%d in a row); it runs again shortly", self.name,
                                        type(exc).__name__, count)
                    else:
                        log.exception("the %s loop failed; it runs again shortly", self.name)
                    due = None
                else:
                    if self._transients >= 2:
                        log.info("the %s loop's database answers again after %d transient "
                                 "errors in a row", self.name, self._transients)
                    self._transients = 0
                if not self._dirty.is_set():
                    # Not running from here on, then one more look: a wake-up between
                    # the look above and this point is seen either here or, its run
                    # skipped while APScheduler still counts this one, by the listener
                    # (`_skipped`: tried again in 10 ms).
                    self._running = False
                    if not self._dirty.is_set() or self.stop.is_set():
                        break
                    self._running = True
        finally:
            self._running = False
            self.idle.set()
        if due is not None and not self.stop.is_set():
            # If it is due already, APScheduler still counts this run: the run asked for
            # now is skipped, and the listener (`_skipped`) asks again 10 ms later.
            self._reschedule(due)

    def _planned(self, at: datetime, latest: datetime) -> datetime:
        """When to run for work due at `at` (a clock time): `plan`'s time, at most
        `latest` (`at` plus the slack). No need to ask when a run is planned by `at`: it
        runs first, and its work reports what comes next; nor from this loop's own run
        (the timer loop's chunk re-arming a timer), whose report comes at its end."""
        if (self.plan is None or self._runs_by(at)
                or (self._running and threading.get_ident() == self._run_thread)):
            return latest
        try:
            when = self.plan(at)
        except Exception:  # a database hiccup: the slack, as without a plan
            log.debug("the %s loop's plan failed; it runs %g s after the due time",
                      self.name, self.slack, exc_info=True)
            return latest
        return latest if when is None or when > latest else when

    def _runs_by(self, at: datetime) -> bool:
        """A run is planned at or before `at` (a clock time), and none is running: the
        one planned starts after the wake-up's work was written, so its report sees it
        (a running one may have read the store before)."""
        wanted = self._wanted
        if wanted is None or self._running:
            return False
        return wanted <= datetime.now(UTC) + timedelta(
            seconds=max(0.0, self._real_seconds(at - self.clock.now())))

    def _skipped(self, event: JobSubmissionEvent) -> None:
        """APScheduler skipped a run of this loop because it still counted the one
        before as running (one instance at a time), and asked the trigger for the next
        run before it knew: whatever that run was for (a wake-up that came as the run
        before ended, a timer written after the run before read the store and due before
        it ended) would wait for the safety net. So: dirty, and the running run looks
        again before it stops; past that look, a run in 10 ms (skipped again while
        APScheduler still counts the run, it comes back here). In the scheduler's
        thread, after it released its job stores."""
        if event.job_id != self.name or self.stop.is_set():
            return
        self._dirty.set()
        if not self._running:  # after setting `_dirty`: the run looks at them the other way
            self._move(datetime.now(UTC) + WAKE_RETRY)

    def close(self) -> None:
        """No more moves: call before shutting the scheduler down."""
        self.idle.set()  # whoever waits for this loop's run goes on
        with self._gate:
            self._closed = True
        self._scheduler.remove_listener(self._skipped)

    def _reschedule(self, at: datetime | None) -> None:
        """Move the next run to `at` (a clock time; None: now), if that is sooner."""
        wall = datetime.now(UTC)
        if at is not None:  # a clock time (the demo's runs fast): the wall's is shorter
            wall += timedelta(seconds=max(0.0, self._real_seconds(at - self.clock.now())))
        self._move(wall)

    def _move(self, wall: datetime) -> None:
        """Move the next run to `wall` (wall time), if that is sooner."""
        with self._gate:
            if self._closed:
                return
            if self._wanted is None or wall < self._wanted:
                self._wanted = wall
            try:
                current = self._job.next_run_time
                if current is None or wall < current:
                    self._job.modify(next_run_time=wall)
            except JobLookupError:  # removed: the scheduler is shutting down
                pass

    def _real_seconds(self, delta: timedelta) -> float:
        return self.clock.to_wall(delta)


class _LoopTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """A loop's next run: the earliest asked for since its last run began, else the
    safety net.

    Why not an interval trigger moved with `modify`: APScheduler sets a job's next run
    from its trigger *after* it has handed the run to a thread, so a run that ends
    quickly and asks to run again (or a wake-up in that moment) could be overwritten by
    the interval's next time, and wait for the safety net (0.5 s in `serve`). This
    trigger answers from what was asked, whenever APScheduler asks it. A run APScheduler
    skips while it still counts the one before (a wake-up in the moment after a run's
    last look at its dirty flag) is the listener's (`Loop._skipped`): until 2026-12-06
    this trigger answered "in 10 ms" whenever the loop was dirty and not running, which
    it also is right after APScheduler hands a woken run to a thread, before the run
    begins: every wake-up from idle cost a second run 10 ms later.
    """

    def __init__(self, loop: Loop) -> None:
        self.loop = loop

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime:
        fallback = now + timedelta(seconds=self.loop.safety)
        wanted = self.loop._wanted
        # Only later than the run just counted: APScheduler counts the missed runs up
        # to now by asking again from each one.
        if wanted is not None and (previous_fire_time is None or wanted > previous_fire_time):
            return min(wanted, fallback)
        return fallback

    def __str__(self) -> str:
        return f"loop[safety {self.loop.safety:g} s]"
