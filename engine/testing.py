"""The testing kit: fakes for every port and an in-memory engine on a fake clock.

    eng = InMemoryEngine.from_folder("journeys/library", start=datetime(2026, 3, 2, 9, tzinfo=UTC))
    eng.identify("u1", traits={"email": "ana@example.com"})
    eng.track("u1", "Signed Up", properties={"source": "site"})
    eng.advance(timedelta(days=7))      # weeks pass in milliseconds
    assert [m.template for m in eng.sent] == [...]

The project's own tests use it; so can yours.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.dispatch import Dispatcher
from engine.events import iso
from engine.model import Enrollment, Exit, Profile, RecordGoal, ScheduleTimer
from engine.policy import PolicyGate
from engine.ports import Decision, Message, OutboxEntry, OutboxRecord
from engine.profiles import ComputedTraits, merge_computed
from engine.runtime import CRON_STEP, Engine
from journeys.compiler import CompiledJourney, compile_library
from journeys.graph import EXITED
from journeys.loader import Library, load_path


class FakeClock:
    """A clock that moves only when told to (trio's MockClock, minus the event loop)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime (UTC)")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError(f"time cannot go backwards ({iso(when)} < {iso(self._now)})")
        self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self.set(self._now + delta)


class SequentialIds:
    """Deterministic ids: `id-1`, `id-2`, ..."""

    def __init__(self, prefix: str = "id") -> None:
        self._counter = itertools.count(1)
        self.prefix = prefix

    def new_id(self) -> str:
        return f"{self.prefix}-{next(self._counter)}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    name: str
    admin: bool = False


class InMemoryStore:
    """The Store port in dicts and a heap. Not thread-safe; one engine per store."""

    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.enrollment_rows: dict[str, Enrollment] = {}
        self.by_profile: dict[tuple[str, str], list[str]] = {}
        self.journeys_of: dict[str, set[str]] = {}  # profile -> journeys it has been in
        self.timers: dict[str, ScheduleTimer] = {}
        self._heap: list[tuple[datetime, str]] = []  # (due, key): SqlStore's order
        self.segments: set[tuple[str, str]] = set()
        self.exits: list[Exit] = []
        self.goals: list[RecordGoal] = []
        self.decisions: list[Decision] = []
        self.outbox: dict[str, OutboxRecord] = {}
        self._unsent: dict[str, None] = {}  # keys of pending rows, in order
        # when each (profile, channel) was sent to: frequency caps count these, not
        # every outbox row (the dispatcher asks once per send)
        self._sent_times: dict[tuple[str, str], list[datetime]] = {}
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        self.inbox: list[dict[str, Any]] = []
        self.keys: dict[str, KeyInfo] = {}
        self.identities: dict[tuple[str, str], str] = {}

    def lock_profile(self, profile_id: str) -> bool:
        """One engine per store: nothing to lock."""
        return False

    def get_profile(self, profile_id: str) -> Profile | None:
        return self.profiles.get(profile_id)

    def put_profile(self, profile: Profile) -> None:
        self.profiles[profile.id] = profile

    def profile_ids(self) -> Iterable[str]:
        return list(self.profiles)

    def active_enrollment(self, profile_id: str, journey: str) -> Enrollment | None:
        ids = self.by_profile.get((profile_id, journey), [])
        active = [self.enrollment_rows[i] for i in ids if self.enrollment_rows[i].active]
        return active[-1] if active else None

    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        found = (self.active_enrollment(profile_id, j)
                 for j in self.journeys_of.get(profile_id, ()))
        return [e for e in found if e is not None]

    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        return [self.enrollment_rows[i] for i in self.by_profile.get((profile_id, journey), [])]

    def profile_enrollments(self, profile_id: str) -> list[Enrollment]:
        rows = [e for e in self.enrollment_rows.values() if e.profile_id == profile_id]
        return sorted(rows, key=lambda e: e.entered_at)

    def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        return self.enrollment_rows.get(enrollment_id)

    def put_enrollment(self, enrollment: Enrollment) -> None:
        if enrollment.id not in self.enrollment_rows:
            self.by_profile.setdefault((enrollment.profile_id, enrollment.journey),
                                       []).append(enrollment.id)
            self.journeys_of.setdefault(enrollment.profile_id, set()).add(enrollment.journey)
        self.enrollment_rows[enrollment.id] = enrollment

    def add_timer(self, timer: ScheduleTimer) -> None:
        if timer.key in self.timers:
            return
        self.timers[timer.key] = timer
        heapq.heappush(self._heap, (timer.due_at, timer.key))

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def has_timer(self, key: str) -> bool:
        return key in self.timers

    def _top(self) -> tuple[datetime, str] | None:
        while self._heap and self._heap[0][1] not in self.timers:
            heapq.heappop(self._heap)  # cancelled
        while self._heap and self.timers[self._heap[0][1]].due_at != self._heap[0][0]:
            heapq.heappop(self._heap)  # re-added under the same key with another time
        return self._heap[0] if self._heap else None

    def claim_due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        claimed: list[ScheduleTimer] = []
        while len(claimed) < limit and (top := self._top()) is not None and top[0] <= now:
            heapq.heappop(self._heap)
            claimed.append(self.timers.pop(top[1]))
        return claimed

    def next_timer_at(self, *, include_cron: bool = True) -> datetime | None:
        if include_cron:
            top = self._top()
            return top[0] if top else None
        due = [t.due_at for t in self.timers.values() if t.step != CRON_STEP]
        return min(due) if due else None

    def segment_member(self, profile_id: str, journey: str) -> bool:
        return (profile_id, journey) in self.segments

    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None:
        if member:
            self.segments.add((profile_id, journey))
        else:
            self.segments.discard((profile_id, journey))

    def record_exit(self, exit: Exit) -> None:
        self.exits.append(exit)

    def record_goal(self, goal: RecordGoal) -> None:
        self.goals.append(goal)

    def record_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)

    # --- outbox -------------------------------------------------------------------

    def enqueue_send(self, entry: OutboxEntry) -> bool:
        if entry.key in self.outbox:
            return False
        self.outbox[entry.key] = OutboxRecord(entry, "pending", 0, entry.created_at, None, None)
        self._unsent[entry.key] = None
        return True

    def claim_outbox(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxEntry]:
        claimed: list[OutboxEntry] = []
        for key in list(self._unsent):
            if len(claimed) == limit:
                break
            row = self.outbox[key]
            if row.next_attempt_at is not None and row.next_attempt_at <= now:
                self.outbox[key] = replace(row, attempts=row.attempts + 1,
                                           next_attempt_at=now + lease)
                claimed.append(replace(row.entry, attempts=row.attempts + 1))
        return claimed

    def mark_sent(self, key: str, at: datetime) -> None:
        row = self.outbox[key]
        self.outbox[key] = replace(row, status="sent", next_attempt_at=None, sent_at=at)
        self._unsent.pop(key, None)
        self._sent_times.setdefault((row.entry.profile_id, row.entry.channel), []).append(at)

    def mark_retry(self, key: str, at: datetime, error: str) -> None:
        self.outbox[key] = replace(self.outbox[key], next_attempt_at=at, last_error=error)

    def mark_failed(self, key: str, at: datetime, error: str) -> None:
        del at  # the decision log has the time
        self.outbox[key] = replace(self.outbox[key], status="failed", next_attempt_at=None,
                                   last_error=error)
        self._unsent.pop(key, None)

    def mark_deferred(self, key: str, until: datetime, reason: str) -> None:
        row = self.outbox[key]
        self.outbox[key] = replace(row, next_attempt_at=until, attempts=row.attempts - 1,
                                   last_error=reason)

    def mark_skipped(self, key: str, reason: str) -> None:
        self.outbox[key] = replace(self.outbox[key], status="skipped", next_attempt_at=None,
                                   last_error=reason)
        self._unsent.pop(key, None)

    def count_sent(self, profile_id: str, channel: str, since: datetime) -> int:
        return sum(1 for at in self._sent_times.get((profile_id, channel), ()) if at > since)

    def next_outbox_at(self) -> datetime | None:
        due = [self.outbox[k].next_attempt_at for k in self._unsent]
        return min((d for d in due if d is not None), default=None)

    def outbox_records(self, profile_id: str | None = None,
                       status: str | None = None) -> list[OutboxRecord]:
        return [r for r in self.outbox.values()
                if (profile_id is None or r.entry.profile_id == profile_id)
                and (status is None or r.status == status)]

    def outbox_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.outbox.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    # --- identities -----------------------------------------------------------------

    def profile_for(self, kind: str, value: str) -> str | None:
        return self.identities.get((kind, value))

    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        return sorted(k for k, pid in self.identities.items() if pid == profile_id)

    def link_identity(self, kind: str, value: str, profile_id: str) -> None:
        self.identities[(kind, value)] = profile_id

    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold `from_` into `into`: identities, traits (`into` wins), enrollments (deduped).
        Timers stay as they are, as in SqlStore (see its merge_profiles)."""
        for key, pid in list(self.identities.items()):
            if pid == from_:
                self.identities[key] = into
        old = self.profiles.pop(from_, None)
        if old is not None:
            keep = self.profiles.get(into, Profile(into))
            self.profiles[into] = Profile(into, {**old.traits, **keep.traits},
                                          merge_computed(old.computed, keep.computed))
        for (pid, journey), ids in list(self.by_profile.items()):
            if pid != from_:
                continue
            del self.by_profile[(pid, journey)]
            target = self.by_profile.setdefault((into, journey), [])
            moved = [replace(self.enrollment_rows[i], profile_id=into) for i in ids]
            for row in moved:
                self.enrollment_rows[row.id] = row
            merged = sorted([self.enrollment_rows[i] for i in target] + moved,
                            key=lambda e: e.entered_at)
            active = [e for e in merged if e.active]
            for loser in active[1:]:  # nobody runs the same journey twice after a merge
                self.enrollment_rows[loser.id] = replace(loser, status="exited", state=EXITED,
                                                         exit_reason="merged")
                # its timers stay and fire as no-ops, as in SqlStore
            self.by_profile[(into, journey)] = [e.id for e in merged]
            self.journeys_of.setdefault(into, set()).add(journey)
        self.journeys_of.pop(from_, None)
        for pid, journey in [s for s in self.segments if s[0] == from_]:
            self.segments.discard((pid, journey))
            self.segments.add((into, journey))

    # --- ingest and keys (what the HTTP API needs) ----------------------------------

    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Dedupe on (source, messageId); append the new ones to the inbox, all or nothing."""
        new = [e for e in events if (source, e["messageId"]) not in self.events]
        fresh: list[str] = []
        for event in new:
            if (source, event["messageId"]) in self.events:
                continue  # a duplicate inside the same batch
            self.events[(source, event["messageId"])] = event
            self.inbox.append(event)
            fresh.append(event["messageId"])
        return fresh

    def create_key(self, name: str, admin: bool = False) -> str:
        key = f"test-key-{name}"
        self.keys[key] = KeyInfo(name, admin)
        return key

    def check_key(self, key: str) -> KeyInfo | None:
        return self.keys.get(key)


@dataclass(frozen=True, slots=True)
class SentMessage:
    profile: str
    journey: str
    step: str
    channel: str
    template: str
    at: datetime
    to: str | None = None
    subject: str | None = None
    body: str = ""


@dataclass(frozen=True, slots=True)
class ExitRecord:
    profile: str
    journey: str
    step: str
    reason: str
    at: datetime


@dataclass
class RecordingChannel:
    """A channel that keeps what it was asked to send (one instance can serve all channels)."""

    name: str = "recording"
    messages: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.messages.append(message)


class InMemoryEngine:
    """The runtime on an InMemoryStore, a FakeClock and a RecordingChannel."""

    def __init__(self, journeys: Mapping[str, CompiledJourney], *, start: datetime,
                 library: Library | None = None) -> None:
        self.clock = FakeClock(start)
        self.store = InMemoryStore()
        self.channel = RecordingChannel()
        self.library = library
        policy = library.policy if library else None
        computed = ComputedTraits(library.computed_config if library else None)
        channels = dict.fromkeys(
            ("email", "sms", "push", "webhook", "console", "file"), self.channel)
        self.engine = Engine(journeys, store=self.store, clock=self.clock,
                             ids=SequentialIds("msg"), computed=computed, policy=policy)
        gate = PolicyGate(library.policy, {jid: j.model.policy for jid, j in journeys.items()}
                          ) if library else None
        self.dispatcher = Dispatcher(self.store, channels, self.clock, gate=gate)

    @classmethod
    def from_folder(cls, folder: str | Path, *, start: datetime, only: list[str] | None = None,
                    backend: str = "durable") -> InMemoryEngine:
        library = load_path(folder)
        if only is not None:
            missing = set(only) - set(library.journeys)
            if missing:
                raise KeyError(f"no such journeys: {', '.join(sorted(missing))}")
            library.journeys = {k: v for k, v in library.journeys.items() if k in only}
        return cls(compile_library(library, backend=backend), start=start, library=library)

    def use_store(self, store: Any) -> None:
        """Run on another Store (a SqlStore, say) with the same clock and channel."""
        self.store = store
        self.engine.store = store
        self.dispatcher.store = store

    # --- time ----------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, delta: timedelta) -> None:
        """Move the clock by `delta`, firing every timer that comes due on the way, in order."""
        self.advance_to(self.now + delta)

    def advance_to(self, when: datetime) -> None:
        """Fire timers and deliver (or retry) sends in time order up to `when`."""
        while (due := self._next_due()) is not None and due <= when:
            self.clock.set(max(due, self.now))
            self.engine.fire_due_timers()
            self.dispatcher.dispatch_due()
        self.clock.set(max(when, self.now))

    def _next_due(self) -> datetime | None:
        due = [d for d in (self.store.next_timer_at(), self.store.next_outbox_at()) if d]
        return min(due, default=None)

    def run_until_idle(self, limit: timedelta = timedelta(days=400)) -> None:
        """Autojump to each next journey timer until none is pending (cron excluded)."""
        deadline = self.now + limit
        while (due := self._next_work()) is not None and due <= deadline:
            self.advance_to(due)

    def _next_work(self) -> datetime | None:
        """The next journey timer or send (deferred by quiet hours, or retried)."""
        due = [d for d in (self.store.next_timer_at(include_cron=False),
                           self.store.next_outbox_at()) if d]
        return min(due, default=None)

    def run_until(self, predicate: Callable[[InMemoryEngine], bool],
                  limit: timedelta = timedelta(days=400)) -> bool:
        """Autojump timer by timer until `predicate(self)` holds; False if the limit came first."""
        deadline = self.now + limit
        while not predicate(self):
            due = self.store.next_timer_at()
            if due is None or due > deadline:
                return False
            self.advance_to(due)
        return True

    # --- events --------------------------------------------------------------------

    def post(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A Segment-format event; a future `timestamp` moves the clock there first."""
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            from engine.events import parse_timestamp

            when = parse_timestamp(stamp)
            if when is not None and when > self.now:
                self.advance_to(when)
        handled = self.engine.post(event)
        self.dispatcher.dispatch_due()
        return handled

    def track(self, user_id: str, event: str, properties: Mapping[str, Any] | None = None,
              at: datetime | None = None) -> dict[str, Any]:
        if at is not None:
            self.advance_to(at)
        return self.post({"type": "track", "userId": user_id, "event": event,
                          "properties": dict(properties or {}), "timestamp": iso(self.now)})

    def identify(self, user_id: str, traits: Mapping[str, Any] | None = None,
                 at: datetime | None = None) -> dict[str, Any]:
        if at is not None:
            self.advance_to(at)
        return self.post({"type": "identify", "userId": user_id, "traits": dict(traits or {}),
                          "timestamp": iso(self.now)})

    # --- what happened -------------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        return [SentMessage(m.profile_id, m.journey, m.step, m.channel, m.rendered.template,
                            m.at, m.to, m.rendered.subject, m.rendered.summary)
                for m in self.channel.messages]

    @property
    def exits(self) -> list[ExitRecord]:
        return [ExitRecord(e.profile_id, e.journey, e.step, e.reason, e.at)
                for e in self.store.exits]

    @property
    def emitted(self) -> list[Mapping[str, Any]]:
        return [dict(e) for e in self.engine.emitted]

    @property
    def decisions(self) -> list[Decision]:
        return list(self.store.decisions)

    def profile(self, profile_id: str) -> Profile:
        stored = self.store.get_profile(profile_id)
        if stored is None:
            raise KeyError(f"no profile {profile_id!r}")
        policy_tz = self.library.policy.timezone if self.library else "UTC"
        return self.engine.computed.view(stored, self.now, policy_tz)

    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        return self.store.enrollments(profile_id, journey)
