"""The worker: handles inbox events and due timers in batches (group commit).

One batch is one transaction: claim (inbox rows, or due timers), load their profiles' state
in bulk into a unit of work (engine/runtime/unit.py), handle the items in the order they came,
each in a child unit, then write every effect in bulk and commit (a few statements a batch).

SQLite on a file, in a `journeyman worker` process (`snapshots`; not beside the API in
`serve`, engine/service.py says why): a batch of events, or a chunk of due timers, is
read and handled in a read transaction, without the write lock, then written in a
short write transaction after checking that nobody wrote the state it read nor took
its events or timers meanwhile (engine/store/sql/stamps.py); if someone did, nothing
is written and the batch is handled again inside the write transaction, as above. So
the API's ingest no longer waits for a batch's handling, and several workers on one
file, one lane of the inbox each (`lane`, engine/store/sql/lanes.py), handle on several
cores; the rows' parameters are built before the write turn too (`UnitOfWork.prepare`).
PostgreSQL locks each profile for the transaction instead (engine/store/sql/inbox.py).

Failure semantics (design.md; docs/service.md says the same for operators):
- Isolation: an exception while handling one event or timer drops that item's child
  unit only; the rest of the batch commits. The item is retried with backoff, and after
  `max_attempts` it is parked with its error and stack (`journeyman failures`).
- Order: a failing event holds its profile's later events: they wait behind it (the
  store does not claim past a profile's earliest waiting event), retried or parked, and
  nobody else's. A parked event keeps holding them until an operator retries or
  discards it: going on without it would apply the later events out of order (an
  unsubscribe undone by an older identify).
- A batch whose writes fail (the database refuses them) is rolled back and done again
  one profile per transaction, so the profile whose data the database refuses fails
  alone. Transient database errors (locked, deadlock, connection lost) roll back and are
  retried after a wait that grows while they go on, without counting as failures
  (engine/runtime/transients.py says when one comes with a profile's data).
- Crashes: the claim is part of the batch's transaction, so a worker killed mid-batch
  loses nothing: the database rolls the transaction back and the rows are claimable
  again at once (PostgreSQL: when the killed process's connection closes). An
  optimistic batch writes nothing before its one write transaction.
- Bounded work: batches grow under load and shrink to one event when idle, and a batch
  stops taking more after `budget` seconds: a transaction (and SQLite's write lock) is
  held briefly even during a storm of due timers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TypeVar

from engine.core.model import CRON_STEP, EnrollmentOutline, ScheduleTimer
from engine.core.times import parse_timestamp, plus
from engine.ports import Clock, InboxItem, Lane, SnapshotStore, Store
from engine.runtime import claim_sizes, takeover
from engine.runtime.batches import (
    Backoff,
    Outcome,
    Redo,
    Refused,
    Stats,
    WriteRefused,
    describe,
    own_ids,
    preloads,
    timer_payload,
)
from engine.runtime.claim_sizes import MIN_BATCH, MIN_TIMER_BATCH, ClaimSizes, took_all
from engine.runtime.dispatch import Dispatcher
from engine.runtime.errortext import error_text, without_values
from engine.runtime.logids import log_ids
from engine.runtime.metrics import Metrics
from engine.runtime.parts import round_in_parts
from engine.runtime.runner import Runner
from engine.runtime.transients import Transient, TransientErrors
from engine.runtime.unit import ProfileBusy, UnitOfWork
from engine.work_kind import ForegroundWaits

log = logging.getLogger("journeyman.worker")

R = TypeVar("R", bound="Outcome | Redo")
# A merge reaching a profile another worker's transaction holds: try again after about
# one batch of that worker (batches last tens of milliseconds), not a second: the
# visitor's later events wait behind it (tests/store/test_isolation.py).
BUSY_RETRY = timedelta(milliseconds=100)


def timer_owner(timer: ScheduleTimer, enrollments: Mapping[str, EnrollmentOutline]) -> str:
    """The profile a timer is for: its enrollment's (a merge moves enrollments, not
    timers), or the one it was armed for (cron timers, gone enrollments)."""
    if timer.step == CRON_STEP:
        return timer.profile_id
    enrollment = enrollments.get(timer.enrollment_id)
    return enrollment.profile_id if enrollment is not None else timer.profile_id


class Worker:
    def __init__(self, runner: Runner, store: Store, clock: Clock, *, name: str,
                 batch: int = 1000, budget: float = 0.02, backoff: Backoff | None = None,
                 dispatcher: Dispatcher | None = None, snapshots: SnapshotStore | None = None,
                 lane: Lane | None = None) -> None:
        self.runner = runner
        # SQLite on a file: batches handled outside the write lock, then checked
        # (`_optimistic_batch`), of this worker's lane of the inbox
        self.snapshots, self.lane = snapshots, lane or Lane()
        # what the last optimistic batch or chunk took, by profile (`_round`)
        self._parts: dict[str, list[str]] | None = None
        self._uncommitted: list[Callable[[], None]] = []  # counts of failures written
        self.dispatcher, self.store, self.clock, self.name = dispatcher, store, clock, name
        self.max_batch, self.budget = batch, budget  # budget: seconds per transaction
        self.stopping = threading.Event()  # the process's stop: a storm ends at a chunk
        self.backoff = backoff or Backoff()
        self.stats = Stats()
        # Wake-ups for the service's loops (engine/runtime/loops.py): sends were queued,
        # events were emitted, a timer was written (its due time).
        self.on_sends: Callable[[], None] | None = None
        self.on_emitted: Callable[[], None] | None = None
        self.on_timer: Callable[[datetime], None] | None = None
        self.metrics: Metrics | None = None
        self._limit = ClaimSizes()
        self.drained = False  # the last batch of events took all that was due (took_all)
        # transient database errors in a row: the wait before the next try, parts
        self.transients = TransientErrors(clock)
        # The runner is not thread-safe: events and timers take turns on it when the
        # event loop and the timer job run in different threads (engine/service.py).
        self._runner_lock = threading.Lock()
        # Set while `fire_timers` goes on past a chunk of due timers (a storm): it holds
        # the runner meanwhile, so the event loop waits for it (engine/service.py,
        # events first). Not for a run that finds at most a chunk: the safety tick's.
        self.firing = threading.Event()

    # --- events ----------------------------------------------------------------------

    def handle_events(self) -> int:
        """Handle one batch of inbox events; returns how many were handled or failed."""
        with self._runner_lock:
            outcome = self._round("events", self._optimistic_batch, self._event_batch,
                                  self._event_batch_per_profile)
        self.drained = outcome.drained
        return self._after(outcome, "events")

    def _round(self, kind: str, optimistic: Callable[[], Outcome | Redo],
               in_lock: Callable[[Sequence[str] | None], Outcome],
               in_parts: Callable[[dict[str, list[str]] | None], Outcome]) -> Outcome:
        """One batch of events or chunk of timers: on SQLite `optimistic` (done again
        `in_lock` for its keys when what it read changed), else `in_lock`. One whose
        writes the database refused, or that failed transiently a few times in a row
        (engine/runtime/transients.py), is done again `in_parts`: its own keys by
        profile (`_parts`), or what is due; refused before it read its lane: next
        round. While a streak of transient errors waits, nothing is tried."""
        if self.transients.waiting_until(kind) is not None:
            return Outcome()
        if self.snapshots is None:
            locked = self._guarded(kind, partial(in_lock, None))
            if isinstance(locked, Outcome):
                return locked
            return in_parts(None) if self._in_parts(kind, locked) else Outcome()
        self._parts = None
        outcome = self._guarded(kind, optimistic)
        if isinstance(outcome, Redo):  # someone wrote what it read: in the lock
            self._count_redone()
            outcome = self._guarded(kind, partial(in_lock, outcome.keys))
        if isinstance(outcome, Outcome):
            return outcome
        if self._in_parts(kind, outcome) and self._parts is not None:
            return in_parts(self._parts)
        return Outcome()

    def _in_parts(self, kind: str, failed: Refused | Transient | Redo) -> bool:
        return isinstance(failed, Refused) or (
            isinstance(failed, Transient) and self.transients.in_parts(kind))

    def _event_batch(self, profiles: Sequence[str] | None) -> Outcome:
        """A batch inside the write transaction: claim, handle, write."""
        started = time.perf_counter()
        with self.store.transaction(stamped=True):
            now = self.clock.now()
            limit = self._limit["inbox"] if profiles is None else self.max_batch
            items = self.store.claim_inbox(limit, now, profiles=profiles)
            if not items:
                return Outcome()
            unit, outcome, _, later = self._handle_items(items, now)
            for write in later:
                write()
            unit.write()
        if profiles is None:  # a batch done again (given profiles) says nothing of the load
            short = self.store.claim_was_short()
            self._adapt("inbox", outcome, started, len(items), full=not short)
            outcome.drained = took_all(outcome.handled + outcome.failed, len(items), short)
        return outcome

    def _optimistic_batch(self) -> Outcome | Redo:
        """SQLite: read and handle a batch of this worker's lane in a snapshot, without
        the write lock, then in a short write transaction check that nobody wrote what
        it read (engine/store/sql/stamps.py) and write it; else `Redo`."""
        snapshots = self.snapshots
        assert snapshots is not None
        started = time.perf_counter()
        with snapshots.snapshot() as snapshot:
            now = self.clock.now()
            items = snapshots.peek_inbox(self._limit["inbox"], now, self.lane)
            if not items and self.lane.count > 1:  # a lane nobody serves, if any
                items = takeover.events(snapshots, self._limit["inbox"], now)
            if not items:
                return Outcome()
            profiles = list(dict.fromkeys(i.profile_id for i in items))
            self._parts = {p: [p] for p in profiles}  # for a write refused: one by one
            unit, outcome, done, later = self._handle_items(items, now)
            snapshots.stamps(snapshot)
        # The rows' parameters built before the write turn (`later`, the failed events'
        # retries and parkings, write to the store, never to the unit)
        write = unit.prepare(snapshots)
        with self.store.transaction(stamped=True):
            if not (snapshots.unchanged(snapshot) and snapshots.inbox_unchanged(done, now)):
                return Redo(keys=profiles)
            for failed in later:
                failed()
            write()
        self._adapt("inbox", outcome, started, len(items))
        return outcome

    def _handle_items(self, items: list[InboxItem], now: datetime) -> tuple[
            UnitOfWork, Outcome, list[InboxItem], list[Callable[[], None]]]:
        """Handle claimed (or peeked) events in memory in the order they came, across queues
        too (an identify linking a device before the device's events sent after it, queued
        before the link), until the budget is spent: unit, outcome, events taken, retries."""
        unit = UnitOfWork(self.store, self.clock)
        owners = {i.profile_id for i in items}
        made, ids = preloads(items, owners)  # held (before their state is read) in one look
        unit.claimed = owners | self.store.try_lock_profiles(made)
        unit.preload(unit.claimed, ids)
        outcome = Outcome()
        done: list[InboxItem] = []
        later: list[Callable[[], None]] = []
        stopped: set[str] = set()  # queues whose event failed or waits
        handling = time.perf_counter()
        for item in items:
            if (outcome.handled + outcome.failed >= MIN_BATCH
                    and time.perf_counter() - handling > self.budget):
                break  # the rest stays queued for the next batch, untouched
            done.append(item)
            if item.profile_id not in stopped and not self._handle_item(
                    unit, item, now, outcome, later):
                stopped.add(item.profile_id)
        outcome.saw(unit)
        return unit, outcome, done, later

    def _handle_item(self, unit: UnitOfWork, item: InboxItem, now: datetime,
                     outcome: Outcome, later: list[Callable[[], None]]) -> bool:
        """One event; False when it failed (retried or parked by `later`): its queue waits."""
        child = unit.child()
        try:
            pid = self.runner.handle(item.event, child)
            if pid != item.profile_id:  # queued before its identity was resolved
                child.refile_event(str(item.event["messageId"]), item.profile_id, pid)
            child.ack(item.id)
        except ProfileBusy as exc:
            later.append(partial(self.store.retry_inbox, item.id, now + BUSY_RETRY,
                                 without_values(str(exc)), attempt=False))
            return False
        except Exception as exc:  # this event's failure, and this profile's alone
            outcome.failed += 1
            later.append(partial(self._event_failed, item, exc, now))
            return False
        unit.adopt(child)
        outcome.handled += 1
        received = parse_timestamp(item.event.get("receivedAt"))
        if received is not None:  # observed once the batch is written (`_after`)
            outcome.lags.append(max(0.0, (now - received).total_seconds()))
        return True

    def _event_failed(self, item: InboxItem, exc: Exception, now: datetime) -> None:
        error, stack, said = describe(exc)
        self._count_failure("event")
        ids = log_ids("event", item.profile_id)
        if item.attempts + 1 >= self.backoff.max_attempts:
            log.error("event %s of profile %s parked after %d attempts: %s", item.id,
                      item.profile_id, item.attempts + 1, said, extra=ids)
            self.store.park("event", str(item.id), profile_id=item.profile_id, journey="",
                            step="", error=error, stack=stack, attempts=item.attempts + 1,
                            at=now)
            self._count_failure("event", parked=True)
        else:
            when = now + self.backoff.delay(item.attempts + 1)
            log.warning("event %s of profile %s failed (attempt %d), retrying at %s: %s", item.id,
                        item.profile_id, item.attempts + 1, when.isoformat(), said, extra=ids)
            self.store.retry_inbox(item.id, when, error)

    def _event_batch_per_profile(self, by_profile: dict[str, list[str]] | None) -> Outcome:
        """After a failed write: the same work (the same profiles, or what is waiting),
        one profile per transaction (engine/runtime/parts.py)."""
        if by_profile is None:
            by_profile = self._listed("events", lambda: {
                i.profile_id: [i.profile_id]
                for i in self.store.claim_inbox(self._limit["inbox"], self.clock.now())})
        return round_in_parts(partial(self._guarded, "events", part=True), by_profile or {},
                              self._event_batch,
                              lambda keys, error: self._fail_first_event(keys[0], error))

    def _fail_first_event(self, profile: str, error: str) -> Outcome:
        with self.store.transaction(stamped=True):
            now = self.clock.now()
            items = self.store.claim_inbox(1, now, profiles=[profile])
            for item in items:
                self._event_failed(item, WriteRefused(error), now)
            return Outcome(failed=len(items))

    # --- timers ------------------------------------------------------------------------

    def fire_timers(self) -> int:
        """Fire the timers due now, chunk by chunk, one transaction each."""
        fired = 0
        with self._runner_lock:
            try:
                while not self.stopping.is_set():
                    outcome = self._round("timers", self._optimistic_timers,
                                          self._timer_chunk, self._timer_chunks_per_profile)
                    fired += self._after(outcome, "timers")
                    if outcome.handled + outcome.failed == 0 or outcome.drained:
                        break
                    self.firing.set()  # more than a chunk due: a storm (`firing`)
            finally:
                self.firing.clear()
        return fired

    def _timer_chunk(self, keys: Sequence[str] | None) -> Outcome:
        """A chunk inside the write transaction: the due timers, or those of `keys`
        still due (one re-armed meanwhile with the same key, a cron's next firing, a
        retry's backoff, is not due yet: it waits for its time)."""
        started = time.perf_counter()
        with self.store.transaction(stamped=True):
            now = self.clock.now()
            limit = self._limit["timers"]
            timers = (self.store.claim_due_timers(now, limit) if keys is None
                      else self.store.claim_timers(keys, due_by=now))
            if not timers:
                return Outcome()
            unit, outcome, _, later = self._fire_chunk(timers, now, claimed=True)
            for write in later:
                write()
            outcome.saw(unit)
            unit.write()
        if keys is None:  # a chunk done again (given keys) says nothing of the load
            self._adapt("timers", outcome, started, len(timers))
            outcome.drained = took_all(outcome.handled + outcome.failed, len(timers),
                                       len(timers) < limit)
        return outcome

    def _optimistic_timers(self) -> Outcome | Redo:
        """SQLite: fire a chunk of this worker's lane's due timers in a snapshot, without
        the write lock, then in a short write transaction check that nobody wrote what it
        read nor touched those timers, claim them and write (as `_optimistic_batch`)."""
        snapshots = self.snapshots
        assert snapshots is not None
        started = time.perf_counter()
        with snapshots.snapshot() as snapshot:
            now = self.clock.now()
            timers = snapshots.peek_timers(now, self._limit["timers"], self.lane)
            if not timers and self.lane.count > 1:  # a lane nobody serves, if any
                timers = takeover.timers(snapshots, self._limit["timers"], now)
            if not timers:
                return Outcome()
            unit, outcome, done, later = self._fire_chunk(timers, now, claimed=False)
            snapshots.stamps(snapshot)
        self._parts = {}
        for timer, owner in done:  # for a write refused: the chunk again, profile by profile
            self._parts.setdefault(owner, []).append(timer.key)
        outcome.saw(unit)  # and again below: failed timers' retries join it in the lock
        write = unit.write if later else unit.prepare(snapshots)  # as _optimistic_batch
        with self.store.transaction(stamped=True):
            if not (snapshots.unchanged(snapshot)
                    and snapshots.timers_unchanged([t for t, _ in done])):
                return Redo(keys=[t.key for t, _ in done])
            self.store.claim_timers([t.key for t, _ in done])  # gone with this commit
            for failed in later:
                failed()
            outcome.saw(unit)
            write()
        self._adapt("timers", outcome, started, len(timers))
        return outcome

    def _fire_chunk(self, timers: list[ScheduleTimer], now: datetime, *, claimed: bool
                    ) -> tuple[UnitOfWork, Outcome, list[tuple[ScheduleTimer, str]],
                               list[Callable[[], None]]]:
        """Fire due timers in memory, in order, until the chunk is cut: the unit to
        write, the outcome, the timers it took with their owners, and the writes for the
        failed ones (retries, parking). `claimed`: inside the write transaction, the
        timers already deleted, so what it does not take is put back, and a waiting API
        request cuts the chunk; otherwise (a snapshot) what it does not take is left as
        it is, due, for the next chunk."""
        # Whose each timer is (its enrollment's profile), then lock those profiles, then
        # read their state: read before the lock, it could be stale.
        probe = self.store.enrollment_outlines({t.enrollment_id for t in timers})
        owners = {t.key: timer_owner(t, probe) for t in timers}
        mine = self.store.try_lock_profiles(set(owners.values()))
        unit = UnitOfWork(self.store, self.clock)
        unit.preload(mine, own_ids(mine), enrollment_ids={
            t.enrollment_id for t in timers if owners[t.key] in mine})
        outcome = Outcome()
        done: list[tuple[ScheduleTimer, str]] = []
        later: list[Callable[[], None]] = []
        # In the write lock while the API is busy: a request waits for the chunk's writes
        budget = (min(self.budget, claim_sizes.BUSY_API_BUDGET)
                  if claimed and self.store.writers_lately() else self.budget)
        handling = time.perf_counter()
        for index, timer in enumerate(timers):
            if index and ((claimed and ForegroundWaits.any()) or (
                    index >= MIN_TIMER_BATCH
                    and (time.perf_counter() - handling > budget
                         or (claimed and self.store.writers_waiting())))):
                # An API request of this process waits for the write lock (after one
                # timer), or of another process on the SQLite file (after a few: its
                # wait is seen by a system call), or the budget is spent: commit what
                # is done, put the rest back (claimable again at once).
                for rest in timers[index:] if claimed else ():
                    unit.add_timer(rest)
                break
            owner = owners[timer.key]
            child = unit.child()
            try:
                if owner not in mine:
                    raise ProfileBusy(owner)
                self.runner.fire(timer, child)
            except ProfileBusy:  # another worker holds its profile: put back, or left
                if claimed:
                    unit.add_timer(timer)
                continue
            except Exception as exc:  # this timer's failure alone (written with the chunk)
                outcome.failed += 1
                later.append(partial(self._timer_failed, unit, timer, owner, exc, now))
            else:
                unit.adopt(child)
                outcome.handled += 1
            done.append((timer, owner))
        return unit, outcome, done, later

    def _timer_failed(self, unit: UnitOfWork, timer: ScheduleTimer, owner: str,
                      exc: Exception, now: datetime) -> None:
        error, stack, said = describe(exc)
        attempts = timer.attempts + 1
        self._count_failure("timer")
        ids = log_ids("timer", owner, timer.journey, timer.step)
        if attempts >= self.backoff.max_attempts:
            log.error("timer %s of profile %s parked after %d attempts: %s", timer.key, owner,
                      attempts, said, extra=ids)
            self.store.park("timer", timer.key, profile_id=owner, journey=timer.journey,
                            step=timer.step, error=error, stack=stack, attempts=attempts,
                            at=now, payload=timer_payload(timer))
            self._count_failure("timer", parked=True)
            return
        when = now + self.backoff.delay(attempts)
        log.warning("timer %s of profile %s failed (attempt %d), retrying at %s: %s",
                    timer.key, owner, attempts, when.isoformat(), said, extra=ids)
        unit.add_timer(ScheduleTimer(timer.key, timer.enrollment_id, timer.profile_id,
                                     timer.journey, timer.step, timer.occurrence, when,
                                     attempts))

    def _timer_chunks_per_profile(self, by_profile: dict[str, list[str]] | None) -> Outcome:
        """After a failed write: the chunk again (its keys by profile, or the timers due
        now), one profile's timers per transaction (engine/runtime/parts.py)."""
        if by_profile is None:
            def due() -> dict[str, list[str]]:
                keys: dict[str, list[str]] = {}
                for timer in self.store.due_timers(self.clock.now(), self._limit["timers"]):
                    keys.setdefault(timer.profile_id, []).append(timer.key)
                return keys
            by_profile = self._listed("timers", due)
        return round_in_parts(partial(self._guarded, "timers", part=True), by_profile or {},
                              self._timer_chunk, self._fail_timers)

    def _fail_timers(self, keys: Sequence[str], error: str) -> Outcome:
        with self.store.transaction(stamped=True):
            now = self.clock.now()
            timers = self.store.claim_timers(keys, due_by=now)  # not a re-armed one
            unit = UnitOfWork(self.store, self.clock)
            for timer in timers:
                self._timer_failed(unit, timer, timer.profile_id, WriteRefused(error), now)
            unit.write()
            return Outcome(failed=len(timers))

    # --- sends ---------------------------------------------------------------------------

    def dispatch(self) -> int:
        """Deliver due sends, if this worker was given a dispatcher (`journeyman serve`
        runs its dispatcher in a loop of its own instead)."""
        return self.dispatcher.dispatch_due() if self.dispatcher is not None else 0

    def next_inbox_at(self) -> datetime | None:
        """When an event of this worker's (its lane's, on SQLite) next comes due; after
        a transient error, when the wait ends, whatever is due (the batch rolled back
        held its rows until then, so another worker's claim may have skipped them and
        ended its round: nothing else says they wait)."""
        if (resume := self.transients.waiting_until("events")) is not None:
            return resume
        return self.store.next_inbox_at(self.lane if self.snapshots is not None else None)

    def next_timer_round(self, slack: timedelta, most: int | None = None) -> datetime | None:
        """When the last timer (of this worker's lane, on SQLite) due within `slack` of
        the earliest, or of the `most` earliest, comes due: they fire together, the last on
        time (docs/service.md); the slack if the store cannot say; a transient's wait."""
        if (resume := self.transients.waiting_until("timers")) is not None:
            return resume
        lane = self.lane if self.snapshots is not None else None
        if (earliest := self.store.next_timer_at(lane=lane)) is None:
            return None
        by = plus(earliest, slack)  # a timer at the calendar's end: no overflow
        last = self.store.last_timer_due_by(by, lane=lane, most=most, since=earliest)
        return last if last is not None and last >= earliest else by

    def run_once(self) -> int:
        return self.handle_events() + self.fire_timers() + self.dispatch()

    # --- plumbing ------------------------------------------------------------------------

    def _guarded(self, kind: str, work: Callable[[], R], *,
                 part: bool = False) -> R | Refused | Transient:
        """Run one transaction's work. A transient database error (locked, deadlock,
        connection lost) is `Transient`: a round's (not a `part`'s: its round counted)
        adds to the streak, and the work comes round again after its wait
        (engine/runtime/transients.py). Any other error rolled the transaction back:
        `Refused`, to do it in parts."""
        counted = len(self._uncommitted)
        try:
            done = work()
        except Exception as exc:
            del self._uncommitted[counted:]  # rolled back: those failures did not happen
            if self.store.is_transient(exc):
                return self._transient(kind, exc, streak=not part)
            error = error_text(exc)
            log.error("a transaction's writes failed; doing it again in parts: %s", error)
            return Refused(error)
        self.transients.succeeded(kind)
        for count in self._uncommitted[counted:]:  # committed (or nothing to commit)
            count()
        del self._uncommitted[counted:]
        return done

    def _transient(self, kind: str, exc: BaseException, *, streak: bool) -> Transient:
        if self.metrics is not None:
            self.metrics.transient_errors.labels(kind).inc()
        return self.transients.failed(kind, exc, streak=streak)

    def _listed(self, kind: str, due: Callable[[], dict[str, list[str]]]
                ) -> dict[str, list[str]] | None:
        """What is due, by profile, for a round in parts (None: a transient error,
        counted, not added to the streak: the round's own error set the wait)."""
        try:
            with self.store.transaction(stamped=True):
                return due()
        except Exception as exc:
            if not self.store.is_transient(exc):
                raise
            self._transient(kind, exc, streak=False)
            return None

    def _after(self, outcome: Outcome, kind: str) -> int:
        count = outcome.handled + outcome.failed
        if count:
            self.stats.batch(count)
            if self.metrics is not None:
                self.metrics.batch_size.labels(kind).observe(count)
                counter = (self.metrics.events_handled if kind == "events"
                           else self.metrics.timers_fired)
                counter.inc(outcome.handled)
                for lag in outcome.lags:  # how long ago each event reached the API
                    self.metrics.handling_lag.observe(lag)
        if kind == "events":
            self.stats.events += outcome.handled
        else:
            self.stats.timers += outcome.handled
        if outcome.sends and self.on_sends is not None:
            self.on_sends()
        if outcome.emitted and self.on_emitted is not None:
            self.on_emitted()
        if outcome.earliest_timer is not None and self.on_timer is not None:
            self.on_timer(outcome.earliest_timer)
        return count

    def _count_redone(self) -> None:
        self.stats.redone += 1
        if self.metrics is not None:
            self.metrics.batches_redone.inc()

    def _count_failure(self, kind: str, *, parked: bool = False) -> None:
        """Counted once the transaction that records the failure (or the parking)
        commits (`_guarded`): one written in a transaction that is refused is recorded
        again in parts."""
        self._uncommitted.append(partial(self._counted, kind, parked))

    def _counted(self, kind: str, parked: bool) -> None:
        if parked:
            self.stats.parked += 1
        else:
            self.stats.failures += 1
        if self.metrics is not None:
            (self.metrics.parked if parked else self.metrics.failures).labels(kind).inc()

    def _adapt(self, kind: str, outcome: Outcome, started: float, claimed: int, *,
               full: bool = False) -> None:
        self._limit.adapt(kind, outcome.handled + outcome.failed,
                          time.perf_counter() - started, claimed, budget=self.budget,
                          most=self.max_batch, full=full)
