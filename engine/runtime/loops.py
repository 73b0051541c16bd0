"""The service's loops: inbox events, due timers and the outbox, each an APScheduler job
that runs when there is work instead of on a fixed tick.

A `Loop` runs its work at once when woken (an event was accepted, a batch queued sends
or wrote an earlier timer, another process said so through PostgreSQL NOTIFY), at the
next due time its work reports (the earliest timer, held event or deferred send), and
at least every `safety` seconds as a safety net. Waking a loop that is running marks it
dirty, and it runs again before it sleeps, so no wake-up is lost.

APScheduler 3.11 with `misfire_grace_time=None, coalesce=True, max_instances=1`
(design.md): a late run still runs, once, never twice at the same time.

Times are the clock's; a clock may run faster than the wall clock (the demo's
time-lapse clock has a `speed`), and waits are divided by it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from engine.ports import Clock, background_work

log = logging.getLogger("journeyman.loops")

Work = Callable[[], datetime | None]  # runs once; returns when it next has work, if known


def new_scheduler() -> BackgroundScheduler:
    return BackgroundScheduler(timezone=UTC, job_defaults={
        "misfire_grace_time": None, "coalesce": True, "max_instances": 1})


class Loop:
    def __init__(self, scheduler: BackgroundScheduler, name: str, work: Work, clock: Clock, *,
                 safety: float = 5.0, stop: threading.Event | None = None) -> None:
        self.name = name
        self.work = work
        self.clock = clock
        self.safety = safety
        self.stop = stop or threading.Event()
        self._dirty = threading.Event()
        # APScheduler's shutdown holds its job-store lock while it waits for running
        # jobs, and moving a job needs that lock: a job moving a loop during shutdown
        # would deadlock. `close()` takes this gate, so no move starts after it.
        self._gate = threading.Lock()
        self._closed = False
        self._scheduler = scheduler
        self._job = scheduler.add_job(self._run, "interval", seconds=safety, id=name,
                                      name=name, next_run_time=datetime.now(UTC))

    def wake(self, at: datetime | None = None) -> None:
        """Run now (or at `at`, a clock time, if that is sooner than planned)."""
        if at is not None and at > self.clock.now():
            self._reschedule(at)
            return
        self._dirty.set()
        self._reschedule(None)

    def _run(self) -> None:
        due: datetime | None = None
        while not self.stop.is_set():
            self._dirty.clear()
            try:
                with background_work():  # API requests write first (engine/ports.py)
                    due = self.work()
            except Exception:  # a database hiccup: log it, the safety net retries
                log.exception("the %s loop failed; it runs again shortly", self.name)
                due = None
            if not self._dirty.is_set():
                break
        if due is not None and not self.stop.is_set():
            self._reschedule(due)

    def close(self) -> None:
        """No more moves: call before shutting the scheduler down."""
        with self._gate:
            self._closed = True

    def _reschedule(self, at: datetime | None) -> None:
        """Move the next run to `at` (a clock time; None: now) if that is sooner."""
        wall = datetime.now(UTC)
        if at is not None:
            wall += timedelta(seconds=max(0.0, self._real_seconds(at - self.clock.now())))
        with self._gate:
            if self._closed:
                return
            try:
                current = self._job.next_run_time
                if current is None or wall < current:
                    self._job.modify(next_run_time=wall)
            except JobLookupError:  # removed: the scheduler is shutting down
                pass

    def _real_seconds(self, delta: timedelta) -> float:
        speed: Any = getattr(self.clock, "speed", 1.0)
        return delta.total_seconds() / float(speed or 1.0)
