"""The one place that wires a runtime: `wire()` loads and compiles a journeys folder,
sets up computed traits, the policy gate, the `Runner` and the `Dispatcher` over a
store. `Service` (`journeyman serve` and `worker`), the testing kit
(`engine.testing.InMemoryEngine`) and `journeyman preview` all build on it, so what a
test runs is what production runs.

`Service` is one journeyman process: the event API, the event worker, the timer ticker
and the outbox dispatcher over a SqlStore (`journeyman serve`; `journeyman worker` is
the same without the API).

Threads, and why:
- uvicorn serves the API on the main thread; it only writes event + inbox rows, and
  wakes the event loop.
- APScheduler 3.11 runs three loops (engine/runtime/loops.py), each when there is work:
  events (batches of inbox events), timers (chunks of due timers; cron entries are
  timer rows too) and the outbox dispatcher. A batch that queues sends wakes the
  dispatcher; one that writes a timer moves the timer loop's next run to it; on
  PostgreSQL, other processes wake them through NOTIFY.
The runner is not thread-safe, so the event and timer loops take turns on it (the
Worker's lock); the dispatcher does not touch the runner.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from engine.core.profiles import ComputedTraits
from engine.core.times import iso
from engine.ports import Channel, Clock, Lane, Store, SystemClock, UuidIds
from engine.runtime.dispatch import Dispatcher
from engine.runtime.identity import profile_named
from engine.runtime.kpis import journey_stats
from engine.runtime.loops import Loop, new_scheduler
from engine.runtime.metrics import Metrics
from engine.runtime.policy import PolicyGate
from engine.runtime.privacy import RETENTION_CHUNK, enforce_retention
from engine.runtime.runner import Runner
from engine.runtime.schema_gate import SchemaGate
from engine.runtime.signing import secrets_for
from engine.runtime.time_entries import arm_time_entries, pending_time_entries
from engine.runtime.tracking import DEFAULT_SCANNER_WINDOW, TrackingLinks
from engine.runtime.unsubscribe import SigningSecret, UnsubscribeLinks
from engine.runtime.versions import apply, closed_journeys, deployed_journeys
from engine.runtime.worker import Worker
from engine.store import DEFAULT_URL, SqlStore
from journeys.compiler import CompiledJourney, compile_library
from journeys.loaded import Library
from journeys.loader import load_path
from journeys.model import Policy

log = logging.getLogger("journeyman.service")
SWITCH_INTERVAL = 0.0005  # seconds: the GIL switch interval while API and loops share a process
# Seconds a stop waits for the API's requests under way: a client that stalls halfway
# through its body held it until systemd's TimeoutStopSec killed it (docs/service.md)
GRACEFUL_SHUTDOWN = 5  # uvicorn takes whole seconds
STATUS_REFRESH_SECONDS = 5.0
# Timers due within this many seconds of the earliest fire together, in one transaction,
# when the last of them comes due (a journey's waits are minutes to days; a lone timer's
# transaction cost as much as the work it did): a timer's run is scheduled at most this
# late, the last of a window's on time. Immediate sends are not delayed by it.
TIMER_SLACK = 0.25
# ... and at most this many of them: where timers come due densely (a burst of entries
# two seconds ago), the window closes at the TIMER_WINDOW-th, so its last timer does not
# wait for the work of hundreds before it. A window of 0.25 s held ~250 timers per lane
# worker in bench/journey_bench.py's race, ~50 ms of firing: the last send went out
# 18-105 ms (mean 67) after its timer was due, 10-42 (mean 24) with this (2026-12-06).
# 64 timers still share one run's fixed cost (a transaction, the dispatcher's run after
# it); past ~256 timers a second a lane runs more often than four times a second.
TIMER_WINDOW = 64
# The dispatcher starts a run at most this often while other processes wake it again and
# again (NOTIFY: every batch of every worker); each run sends all that is due. Sends its
# own worker queued, and any after a quiet spell, go at once (loops.py, `spacing`).
OUTBOX_SPACING = 0.05


# How often the retention loop looks for events past the policy's `retention.events`.
RETENTION_EVERY = timedelta(minutes=1)
# PostgreSQL: how often the hot tables' statistics are looked at (one small query; an
# ANALYZE only for a table that changed as much as its size)
STATISTICS_EVERY = 3.0


@dataclass
class Wiring:
    """A runtime, wired: the library and its compiled journeys, the computed traits,
    the runner, the worker and the dispatcher over one store, clock and set of
    channels."""

    library: Library
    compiled: dict[str, CompiledJourney]
    computed: ComputedTraits
    runner: Runner
    worker: Worker
    dispatcher: Dispatcher


def wire(library: Library, *, store: Store, clock: Clock, channels: Mapping[str, Channel],
         unsubscribe: UnsubscribeLinks, identify_by: Sequence[str] = (),
         backend: str = "durable", lease: timedelta = timedelta(minutes=5),
         name: str = "worker", budget: float = 0.02,
         metrics: Metrics | None = None, decision_log: bool = True,
         deployed: bool = False, lane: Lane | None = None,
         optimistic: bool = False) -> Wiring:
    """Compile `library` and build the runner, the worker and the dispatcher over
    `store` (counting into `metrics`, when given). `decision_log=False` records only
    what the policy and the channels did to sends, not every decision (`journeyman
    why` then has less to tell). With `deployed`, the runner also runs the older
    versions deployed in the store (their enrollments finish on them) and no new
    entries go to paused or archived journeys (engine/runtime/versions.py)."""
    compiled = compile_library(library, backend=backend)
    computed = ComputedTraits(library.computed_config)
    versions, closed = (deployed_journeys(library, store, backend=backend) if deployed
                        else ({}, set()))
    tracking = TrackingLinks(unsubscribe.secrets, unsubscribe.base_url)
    if metrics is not None:
        tracking.on_untracked = metrics.untracked_links.inc
    runner = Runner(compiled, clock=clock, unsubscribe=unsubscribe, computed=computed,
                    policy=library.policy, identity_traits=tuple(identify_by),
                    decision_log=decision_log, versions=versions, closed=closed,
                    tracking=tracking)
    # Every journey that can still send: the folder's, and those only deployed (taken
    # out of the folder or archived while people finish on them) with their newest
    # deployed version's `policy:` and `priority` (a transactional journey's sends must
    # not become `no_consent` because its file left the folder).
    sending = {jid: j for (jid, _), j in sorted(versions.items())} | compiled
    gate = PolicyGate(library.policy, {jid: j.model.policy for jid, j in sending.items()},
                      {jid: j.model.priority for jid, j in sending.items()})
    dispatcher = Dispatcher(store, channels, clock, lease=lease, gate=gate,
                            decision_log=decision_log)
    # `optimistic`, SQLite on a file: batches handled outside the write lock and checked
    # before they are written (engine/store/sql/stamps.py), of the worker's lane of the
    # inbox. For a worker in a process of its own: beside the API in one interpreter
    # (`serve`) the API's requests then ran during the handling, each taking the GIL
    # from it: 5,000 events end to end 1,506-1,590 -> 1,116-1,146 events/s (2026-12-04).
    snapshots = (store if optimistic and isinstance(store, SqlStore) and store.snapshots_work
                 else None)
    if lane is not None and lane.count > 1 and snapshots is None:
        raise ValueError(f"--lane {lane}: lanes need a worker on SQLite in a plain file "
                         "(sqlite:///path, no options)")
    worker = Worker(runner, store, clock, name=name, budget=budget, snapshots=snapshots,
                    lane=lane)
    worker.metrics = dispatcher.metrics = metrics
    if metrics is not None:
        metrics.expect_channels(channels)
        metrics.expect_journeys(sending)
    return Wiring(library, compiled, computed, runner, worker, dispatcher)


def scanner_window(policy: Policy) -> timedelta:
    """The policy's scanner window (`false`: none; unset: the default)."""
    window = policy.tracking.scanner_window
    if window is False:
        return timedelta(0)
    return window if window is not None else DEFAULT_SCANNER_WINDOW


# How long a batch of events or timers may run before it commits (seconds; a lone event
# is still handled at once, and a batch always takes at least MIN_BATCH). `serve` runs
# the API in the same process: short batches, so its requests wait little for the GIL
# and, on SQLite, for the write lock. A `journeyman worker` has no API to wait on: long
# batches spread each transaction's fixed cost (claims, loads, commit) over more
# events. On PostgreSQL (bench/scaleout_bench.py, 2026-12-02) 0.02 -> 0.1 took one
# worker from ~520 to ~760 events/s end to end and two from ~680 to ~910; 0.25 gave a
# little more throughput and a p99 under load of ~0.5 s (0.3 s at 0.1).
SERVE_BATCH_BUDGET = 0.02
WORKER_BATCH_BUDGET = 0.1

# Seconds one call of `_drain_inbox` handles batches before it returns, so the journeys'
# statuses it reads first are read again (the loop, woken again, goes on at once: its
# run does not end, and a dispatcher waiting for events first keeps waiting).
EVENTS_RUN = 1.0

# Events first: while this process's event loop is in a run (a burst of events, or
# steady load), a dispatcher run waits for that run to end, at most EVENTS_FIRST seconds,
# then sends all that was queued meanwhile. Each dispatcher run is two or more write
# transactions (the admission, then the outcomes every 20 sends); on SQLite they waited
# for and held the one write turn between the events' batches: in journey_bench.py's
# race (API + 2 lane workers) the dispatchers held it a third of the time the events were
# handled. A lone event's sends wait for its run's last look at the inbox (a read). Not
# while the timer loop fires a storm of due timers (`Worker.firing`: past its first
# chunk; seen within EVENTS_FIRST_LOOK): the event loop then waits for the runner, which
# the storm holds, and holding sends back would gain nothing. (A timer run that finds
# nothing, the safety tick's, does not count: looking at the timer loop's `idle` ended
# most waits early, the second review's catch.) Under steady load the event loop never
# stops between runs (a run woken meanwhile goes on without a break), so every
# dispatcher run waits the whole bound. Until 2026-12-06 (the twenty-second session) the
# bound was a quarter of a second, and a burst that outlasted it had the dispatchers
# sending beside its batches. At a second, journey_bench.py's SQLite race went from a
# median of 4,248 to 4,966 events/s and scaleout_bench.py's two PostgreSQL workers from
# 2,833-2,917 to 3,146-3,613 (alternate runs); a send under steady load at half that
# throughput waits longer: p50 / p99 from ingest to send 135-189 / 408-470 ms before,
# 235-466 / 714-1,225 ms after (docs/benchmarks.md). `--events-first 0.25` is the old
# trade, 0 sends at once.
EVENTS_FIRST = 1.0
# How often a dispatcher waiting for events first looks whether a storm of due timers
# began or the service is stopping (either ends the wait)
EVENTS_FIRST_LOOK = 0.05


# Allocations of container objects between two young collections (CPython 3.11 and
# 3.12's default: 700; 2,000 from 3.13). A worker allocates a few hundred thousand per
# second, nearly all freed by their reference counts; at 700 it ran ~150 collections
# per 3,000 events, 16-32 ms of each lane worker's ~1.3 s, and at 10,000 it runs 2-6
# (3-11 ms). Garbage in a cycle waits longer before it is freed: a few megabytes at most.
YOUNG_COLLECTION_AFTER = 10_000


class SigtermStop:
    """SIGTERM stops `serve` as SIGINT does, through `finally: stop()` (exit code 0).

    Why: uvicorn catches SIGTERM, shuts the server down, puts back the handler it found
    and raises the signal again. Python's default handler then killed `serve` at once
    (exit 143): `stop()` never ran, so the running batch was cut short, the channels
    were not closed, and the process's wake-up file stayed behind for lane workers to
    take for a live worker. The handler installed here only takes note (and tells the
    server to exit, if it runs): raising from it would land in whatever the main thread
    was doing (an import, `stop()` itself). A SIGTERM before the server runs keeps it
    from starting; more during `stop()` change nothing. Main thread only (signals are
    set there); elsewhere nothing changes."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.server: Any = None  # the uvicorn Server, once made
        self._previous: Any = None
        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGTERM, self._take_note)

    def _take_note(self, _signum: int, _frame: object) -> None:
        self.asked.set()
        if self.server is not None:
            self.server.should_exit = True

    def restore(self) -> None:
        """Put back the handler that was there before."""
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


def tune_garbage_collection() -> None:
    """For a long-running process, once started. A gen-2 collection walks every object
    the process has, ~150,000 after start-up (journeys, rules, SQLAlchemy): 90-140 ms
    with the GIL held, the API's p99 during a timer storm, and ~4% of a worker's time
    (5,000 events in process: 0.17 s of collections, 0.05 s frozen). Start-up's objects
    live as long as the process: frozen, a collection walks only what came after. And
    the young generation is collected less often (`YOUNG_COLLECTION_AFTER`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_AFTER, *gc.get_threshold()[1:])


class Service:
    def __init__(self, journeys: str | Path, db: str = DEFAULT_URL, *,
                 channels: Mapping[str, Channel], clock: Clock | None = None,
                 identify_by: Sequence[str] = (), tick: float = 0.5, backend: str = "durable",
                 name: str | None = None, lease: float = 60.0,
                 secrets: Sequence[SigningSecret] | None = None,
                 public_url: str = "http://127.0.0.1:8000", decision_log: bool = True,
                 dashboard_open: bool = False,
                 batch_budget: float = SERVE_BATCH_BUDGET, lane: Lane | None = None,
                 optimistic: bool = False, events_first: float = EVENTS_FIRST,
                 bundled_default: bool = False) -> None:
        self.clock: Clock = clock or SystemClock()
        self.library: Library = load_path(journeys)  # InvalidJourney: the CLI prints it
        self.store = SqlStore(db, create=True, clock=self.clock)
        # Unsubscribe links are signed with the configured secrets, else (SQLite) with
        # the generated file beside the database, so links in mail already sent stay
        # valid across restarts; never with a secret kept in clear in the database.
        try:
            signing = secrets_for(db, self.store, secrets, self.clock.now())
        except BaseException:
            self.store.close()
            raise
        self.unsubscribe = UnsubscribeLinks(signing, public_url)
        # `--journeys` is applied first, with the checks of `journeyman plan` (PlanError:
        # the CLI prints it); then the runtime runs what is deployed.
        try:
            self.plan = apply(self.library, self.store, self.clock.now(),
                              bundled_default=bundled_default)  # no --journeys given
        except BaseException:
            self.store.close()
            raise
        # Dashboard sessions are signed with a key derived from the same secret, so every
        # API process on the store accepts them.
        self.session_secret = signing[0].value
        self.dashboard_open = dashboard_open
        # A lease is how long a crashed process holds what it claimed (inbox events,
        # outbox rows) before another takes over.
        self.metrics = Metrics(self.store, now=self.clock.now)
        try:
            wiring = wire(self.library, store=self.store, clock=self.clock,
                          channels=channels, unsubscribe=self.unsubscribe,
                          identify_by=identify_by, backend=backend,
                          lease=timedelta(seconds=lease),
                          name=name or f"{socket.gethostname()}:{os.getpid()}",
                          metrics=self.metrics, decision_log=decision_log, deployed=True,
                          budget=batch_budget, lane=lane, optimistic=optimistic)
        except BaseException:  # a wrong --lane: ValueError, printed by the CLI
            self.store.close()
            raise
        self.computed = wiring.computed
        self.runner = wiring.runner
        self.dispatcher = wiring.dispatcher
        self.worker = wiring.worker
        self.tick = tick
        self.events_first = events_first
        self.schema = SchemaGate(self.store.schema_apart)  # no claims while it is apart
        self._statuses_read = time.monotonic()
        self._arm_again = False  # time-driven entries left to arm (see _arm_time_entries)
        self._armed_at = 0.0
        self._stop = threading.Event()
        # SIGTERM: a dispatcher's run stops between claims, a storm of timers between
        # chunks (systemd and compose SIGKILL a worker still running after 60 s)
        self.dispatcher.stopping = self.worker.stopping = self._stop
        self._scheduler = new_scheduler()
        self._loops: dict[str, Loop] = {}
        self._stop_listening: Callable[[], None] | None = None
        self._stop_checkpoints: Callable[[], None] | None = None

    # --- the loops -----------------------------------------------------------------

    def start(self) -> None:
        """Start the event, timer and outbox loops (not the API): each runs when there
        is work (engine/runtime/loops.py). Journeys with time-driven entries deployed
        since the last start reach the existing profiles first."""
        # Cleared first: a stop asked for while this starts (SIGTERM during the warm-up,
        # `journeyman worker`'s handler) must not be forgotten
        self._stop.clear()
        self.warm_up()
        self._arm_time_entries()
        def loop(name: str, work: Callable[[], datetime | None], **options: Any) -> Loop:
            # What the work lets through (the worker counts its own rounds' errors)
            transients = self.metrics.transient_errors.labels(name)
            return Loop(self._scheduler, name, work, self.clock, stop=self._stop,
                        transient=self.store.is_transient, on_transient=transients.inc,
                        **options)

        loops = {
            "events": loop("events", self._drain_inbox, safety=self.tick),
            "timers": loop("timers", self._fire_timers, safety=self.tick, slack=TIMER_SLACK,
                           plan=self._timer_round),
            "outbox": loop("outbox", self._dispatch, safety=self.tick, spacing=OUTBOX_SPACING),
            "retention": loop("retention", self._retain,
                              safety=RETENTION_EVERY.total_seconds()),
        }
        if self.store.dialect == "postgresql":  # engine/store/sql/statistics.py
            loops["statistics"] = loop("statistics", self._analyze, safety=STATISTICS_EVERY)
        self._loops = loops
        self.worker.on_sends = loops["outbox"].wake
        self.worker.on_emitted = loops["events"].wake
        self.worker.on_timer = loops["timers"].wake
        self._scheduler.start()
        # Other processes on the same PostgreSQL wake these loops through NOTIFY.
        self._stop_listening = self.store.listen({
            "inbox": loops["events"].wake,
            "timers": partial(loops["timers"].wake, planned=False),  # no read on that thread
            "outbox": partial(loops["outbox"].wake, spaced=True)}, serves=self.worker.lane)
        # SQLite: the WAL is checkpointed beside the loops, not in the worker's commits.
        self._stop_checkpoints = self.store.checkpoint_in_background()

    def warm_up(self) -> None:
        """Compile, before the first batch does, every template (with the layouts their
        HTML extends) and the store's plans and reads of a unit of work: a new `journeyman
        worker`'s first batch of 32 events took 30-70 ms in journey_bench.py's race, its
        next ones 12-20 (in process, 30-32 ms against 12; 17-20 since). Only an
        optimisation: a failure is logged, and the loops start as they would."""
        self.library.templates.compile_all()
        try:
            self.store.warm_up()
        except Exception as exc:  # the database is away: the loops will say so
            log.warning("warm-up of the store's statements failed: %s", exc)

    def wake_events(self) -> None:
        """An event was accepted here: handle it now."""
        loop = self._loops.get("events")
        if loop is not None:
            loop.wake()

    def _arm_time_entries(self) -> None:
        """Arm the time-driven entries that need it (engine/runtime/time_entries.py). If
        some are still left (another process holds the arming, or one died halfway), ask
        again at the next status refresh."""
        self._armed_at = time.monotonic()
        arm_time_entries(self.runner, self.store, self.clock.now())
        self._arm_again = bool(pending_time_entries(self.runner, self.store))

    def _refresh_statuses(self, *, arm: bool = False) -> None:
        """Pick up `journeyman journeys pause/resume/archive` from other processes (at
        most every few seconds: one small read). With `arm` (the timer loop), arm the
        time-driven entries of a resumed journey, or those another process left."""
        if time.monotonic() - self._statuses_read >= STATUS_REFRESH_SECONDS:
            self._statuses_read = time.monotonic()
            closed = closed_journeys(self.store)
            if self.runner.closed - closed:  # resumed: `journeys resume` asked for a re-arm
                self._arm_again = True
            self.runner.closed = closed  # one rebinding: no lock needed
        if arm and self._arm_again and (
                time.monotonic() - self._armed_at >= STATUS_REFRESH_SECONDS):
            self._arm_time_entries()

    def _drain_inbox(self) -> datetime | None:
        """Handle batches while there are events (at most EVENTS_RUN seconds' worth: then
        the loop, woken, calls again and the journeys' statuses are read again), then say
        when a held event comes due. Nothing while the schema is apart (as the others)."""
        if (closed := self.schema.closed_until(self.clock)) is not None:
            return closed
        self._refresh_statuses()
        started = time.monotonic()
        while (not self._stop.is_set() and self.worker.handle_events()
               and not self.worker.drained):
            if time.monotonic() - started > EVENTS_RUN:
                self._loops["events"].wake()
                break
        return self.worker.next_inbox_at()

    def _fire_timers(self) -> datetime | None:
        if (closed := self.schema.closed_until(self.clock)) is not None:
            return closed
        self._refresh_statuses(arm=True)
        self.worker.fire_timers()
        return self._timer_round()

    def _timer_round(self, _woken_for: datetime | None = None) -> datetime | None:
        """When the timer loop runs next: when the last timer due within TIMER_SLACK of
        the earliest (of its TIMER_WINDOW earliest) comes due. Also asked when a batch of
        this process wrote a timer due sooner than the next run (Loop.plan; another
        process's note of a timer is not planned, engine/runtime/loops.py): a lone timer
        fires on time."""
        return self.worker.next_timer_round(timedelta(seconds=TIMER_SLACK), TIMER_WINDOW)

    def _dispatch(self) -> datetime | None:
        if (closed := self.schema.closed_until(self.clock)) is not None:
            return closed
        events = self._loops.get("events")
        if self.events_first > 0 and events is not None:
            until = time.monotonic() + self.events_first  # events first (EVENTS_FIRST)
            firing = self.worker.firing
            while (not firing.is_set() and not self._stop.is_set()
                   and (left := until - time.monotonic()) > 0):
                if events.idle.wait(min(left, EVENTS_FIRST_LOOK)):
                    break  # the run ended (a new one may have begun since: not waited for)
            if self._stop.is_set():
                return None
        return self.dispatcher.run()

    def _analyze(self) -> datetime | None:
        """PostgreSQL: ANALYZE the tables that grew fast since their last analysis (a
        new database's plans, engine/store/sql/statistics.py); every STATISTICS_EVERY."""
        self.store.refresh_statistics()
        return None

    def _retain(self) -> datetime | None:
        """Delete events older than the policy's `retention.events`, a chunk at a time:
        again at once while there are more, else in RETENTION_EVERY. Also folds the
        dashboard rollup's deltas (PostgreSQL, migration 0014)."""
        if (closed := self.schema.closed_until(self.clock)) is not None:
            return closed  # a clock time: a time-lapse clock's seconds are shorter
        now = self.clock.now()
        self.store.fold_rollup_deltas()  # the dashboard's counts (migration 0014)
        deleted = enforce_retention(self.store, now, self.library.policy.retention.events)
        return now if deleted >= RETENTION_CHUNK else now + RETENTION_EVERY

    def stop(self) -> None:
        self.stop_loops()
        for channel in {id(c): c for c in self.dispatcher.channels.values()}.values():
            close = getattr(channel, "close", None)  # SMTP connections, HTTP clients
            if callable(close):
                close()
        self.store.close()

    def stop_loops(self) -> None:
        """Stop the loops: a running batch finishes (its transaction commits), nothing
        new starts."""
        self._stop.set()
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        for loop in self._loops.values():
            loop.close()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._stop_checkpoints is not None:
            self._stop_checkpoints()
            self._stop_checkpoints = None

    def wait(self) -> None:
        """Block until `stop()` (or a signal handler sets the stop event)."""
        while not self._stop.wait(1):
            pass

    def request_stop(self) -> None:
        self._stop.set()

    # --- the API -------------------------------------------------------------------

    def app(self) -> Any:
        from engine.api import create_app
        from engine.api.dashboard import Dashboard

        dashboard = Dashboard(self.store, self.runner.journeys, self.clock.now,
                              self.session_secret, profiles=self.profile,
                              open_local=self.dashboard_open,
                              secure_cookies=self.unsubscribe.base_url.lower().startswith(
                                  "https://"))
        assert self.runner.tracking is not None
        return create_app(self.store, self.clock.now, new_id=UuidIds().new_id,
                          profiles=self.profile, unsubscribe=self.unsubscribe,
                          on_accepted=self.wake_events, ready=self.store.ready,
                          metrics=self.metrics, tracking=self.runner.tracking,
                          scanner_window=scanner_window(self.library.policy),
                          stats=self.stats, dashboard=dashboard)

    def ops_app(self) -> Any:
        """`/healthz`, `/readyz` and `/metrics` alone (`journeyman worker --http-port`)."""
        from engine.api.ops import create_ops_app

        return create_ops_app(self.store.ready, self.metrics)

    def profile(self, user_id: str) -> dict[str, Any] | None:
        """The admin view of a profile: traits, computed traits, identities, enrollments."""
        pid = profile_named(self.store, user_id) or user_id
        stored = self.store.get_profile(pid)
        if stored is None:
            return None
        view = self.computed.view(stored, self.clock.now(), self.library.policy.timezone)
        return {
            "id": pid,
            "traits": dict(view.traits),
            "computed": dict(view.computed),
            "identities": [{"kind": k, "value": v} for k, v in self.store.identities_of(pid)],
            "enrollments": [{"journey": e.journey, "version": e.version, "step": e.state,
                             "status": e.status, "entered_at": iso(e.entered_at),
                             "exit_reason": e.exit_reason}
                            for e in self.store.profile_enrollments(pid)],
        }

    def stats(self, journey: str, since: datetime | None = None) -> dict[str, Any] | None:
        """A journey's KPIs (engine/runtime/kpis.py), or None for an unknown journey."""
        loaded = self.library.journeys.get(journey)
        if loaded is None:
            return None
        return journey_stats(self.store, loaded.model, since=since)

    def serve(self, host: str = "127.0.0.1", port: int = 8000, *,
              with_worker: bool = True, sock: socket.socket | None = None) -> None:
        """Run everything until SIGINT/SIGTERM (uvicorn handles the signals); without
        the worker, the API alone: accepted events wait in the inbox for the workers
        (woken through NOTIFY on PostgreSQL, by their safety tick on SQLite). `sock`:
        a socket already bound to `host:port` to listen on (the caller knew the port
        was free before it said so)."""
        import uvicorn
        from uvicorn.config import STARTUP_FAILURE

        sigterm = SigtermStop()
        try:
            if with_worker:
                # The API shares the interpreter with the loops, which run Python flat
                # out during a storm of due timers. CPython hands the GIL to a waiting
                # thread after the switch interval (5 ms): a request, which waits for
                # it after every socket and SQLite call, then took tens of milliseconds.
                # 0.5 ms keeps the API answering (bench/storm_bench.py) for a few per
                # cent of throughput.
                sys.setswitchinterval(SWITCH_INTERVAL)
                self.start()
            app = self.app()  # ~27,000 objects of its own: built before they are frozen
            tune_garbage_collection()  # the API alone too: it lives as long
            # `uvicorn.run`, with its server in reach of the SIGTERM handler
            # log_config=None: uvicorn's lines go through the process's handler (plain
            # text or JSON, redacted: engine/cli/logs.py), not handlers of its own
            sigterm.server = server = uvicorn.Server(uvicorn.Config(
                app, host=host, port=port, log_level="warning", access_log=False,
                log_config=None, timeout_graceful_shutdown=GRACEFUL_SHUTDOWN))
            if not sigterm.asked.is_set():  # not asked to stop while starting
                with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a stop, as SIGTERM
                    server.run(sockets=None if sock is None else [sock])
                if not server.started and not sigterm.asked.is_set():
                    sys.exit(STARTUP_FAILURE)  # the port could not be had: uvicorn.run's 3
        finally:
            self.stop()
            sigterm.restore()
            if sock is not None:  # uvicorn closes what it served; not a socket never served
                sock.close()
