"""`InMemoryStore`: the whole Store port (engine/ports.py) in dicts and a heap, with the
same semantics as `SqlStore` (one contract test suite runs on both). For tests,
`journeyman simulate` and replays: fast, and gone when the process ends."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.core.merge import exited_by_merge, merge_losers, merged_profile
from engine.core.model import CRON_STEP, Enrollment, Exit, Profile, RecordGoal, ScheduleTimer
from engine.ports import (
    Clock,
    Decision,
    InboxItem,
    KeyInfo,
    OutboxEntry,
    OutboxRecord,
    Store,
    SystemClock,
)
from engine.store.errors import DuplicateKeyName


@dataclass
class InboxRow:
    """An accepted event waiting for (or leased to) a worker."""

    id: int
    profile_id: str
    event: dict[str, Any]
    attempts: int = 0
    status: str = "pending"  # pending | failed
    lease_owner: str | None = None
    lease_until: datetime | None = None


class InMemoryStore:
    """The whole Store port in dicts and a heap. Not thread-safe, and `transaction()`
    does not roll back: one engine per store, in one thread (tests, `simulate`)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.inbox_max_attempts = 10
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
        self.inbox: dict[int, InboxRow] = {}  # pending and failed rows by id, in order
        self._inbox_ids = itertools.count(1)
        self.keys: dict[str, KeyInfo] = {}  # by the key itself (a test store keeps it plain)
        self.settings: dict[str, str] = {}
        self.identities: dict[tuple[str, str], str] = {}

    def _now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        """Nothing to release."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A unit in name only: every change is applied at once, and nothing rolls back."""
        yield

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

    def entered_since(self, when: datetime) -> list[Enrollment]:
        rows = [e for e in self.enrollment_rows.values() if e.entered_at >= when]
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

    def add_timers(self, timers: Sequence[ScheduleTimer]) -> None:
        for timer in timers:
            self.add_timer(timer)

    def pending_timers(self) -> int:
        return len(self.timers)

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

    def recorded_exits(self, profile_id: str | None = None) -> list[Exit]:
        return [e for e in self.exits if profile_id is None or e.profile_id == profile_id]

    def recorded_goals(self, profile_id: str | None = None) -> list[RecordGoal]:
        return [g for g in self.goals if profile_id is None or g.profile_id == profile_id]

    def recorded_decisions(self, profile_id: str | None = None) -> list[Decision]:
        return [d for d in self.decisions if profile_id is None or d.profile_id == profile_id]

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
        """Fold `from_` into `into` by the rule of engine/core/merge.py: identities,
        traits, enrollments (deduplicated), segment memberships and the pending inbox."""
        if into == from_:
            return
        for key, pid in list(self.identities.items()):
            if pid == from_:
                self.identities[key] = into
        merged = merged_profile(into, self.profiles.get(into), self.profiles.pop(from_, None))
        if merged is not None:
            self.profiles[into] = merged
        kept = [e for j in self.journeys_of.get(into, ()) for e in self.enrollments(into, j)]
        absorbed = [e for j in self.journeys_of.get(from_, ())
                    for e in self.enrollments(from_, j)]
        losers = {e.id for e in merge_losers(kept, absorbed)}
        now = self._now()
        for journey in self.journeys_of.pop(from_, set()):
            ids = self.by_profile.pop((from_, journey))
            for eid in ids:
                row = replace(self.enrollment_rows[eid], profile_id=into)
                self.enrollment_rows[eid] = row
            target = self.by_profile.setdefault((into, journey), [])
            merged_ids = sorted(target + ids, key=lambda i: self.enrollment_rows[i].entered_at)
            self.by_profile[(into, journey)] = merged_ids
            self.journeys_of.setdefault(into, set()).add(journey)
        for eid in losers:
            self.enrollment_rows[eid] = exited_by_merge(self.enrollment_rows[eid], now)
        for pid, journey in [s for s in self.segments if s[0] == from_]:
            self.segments.discard((pid, journey))
            self.segments.add((into, journey))
        for queued in self.inbox.values():
            if queued.profile_id == from_:
                queued.profile_id = into

    # --- ingest, inbox and keys ---------------------------------------------------

    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Dedupe on (source, messageId); queue the new ones for their profiles."""
        fresh: list[str] = []
        for event in events:
            if (source, event["messageId"]) in self.events:
                continue  # seen before, or a duplicate inside the same batch
            self.events[(source, event["messageId"])] = event
            row_id = next(self._inbox_ids)
            self.inbox[row_id] = InboxRow(row_id, self._owner(event), event)
            fresh.append(event["messageId"])
        return fresh

    def _owner(self, event: Mapping[str, Any]) -> str:
        """The profile an event is queued for: its userId's, else its anonymousId's."""
        for kind, value in (("user_id", event.get("userId")),
                            ("anonymous_id", event.get("anonymousId"))):
            if value:
                return self.identities.get((kind, str(value)), str(value))
        return f"message:{event['messageId']}"

    def pending_events(self) -> list[dict[str, Any]]:
        """The events waiting in the inbox, in order (for tests)."""
        return [row.event for row in self.inbox.values() if row.status == "pending"]

    def claim_inbox(self, worker: str, limit: int, lease: timedelta,
                    now: datetime) -> list[InboxItem]:
        """SqlStore's rule: each free profile's earliest pending events, oldest first."""
        for row in self.inbox.values():
            if (row.status == "pending" and row.attempts >= self.inbox_max_attempts
                    and row.lease_until is not None and row.lease_until <= now):
                row.status, row.lease_owner, row.lease_until = "failed", None, None
        leased = {row.profile_id for row in self.inbox.values()
                  if row.status == "pending" and row.lease_until is not None
                  and row.lease_until > now}
        claimed: list[InboxItem] = []
        for row in self.inbox.values():
            if len(claimed) == limit:
                break
            if row.status == "pending" and row.profile_id not in leased:
                row.lease_owner, row.lease_until = worker, now + lease
                row.attempts += 1
                claimed.append(InboxItem(row.id, row.profile_id, row.event, row.attempts))
        return claimed

    def ack_inbox(self, ids: list[int]) -> None:
        for row_id in ids:
            self.inbox.pop(row_id, None)

    def inbox_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.inbox.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def create_key(self, name: str, admin: bool = False) -> str:
        """`test-key-<name>`: a predictable key, for tests."""
        if any(k.name == name and k.revoked_at is None for k in self.keys.values()):
            raise DuplicateKeyName(f"an active key named {name!r} exists; revoke it first")
        key = f"test-key-{name}"
        self.keys[key] = KeyInfo(name, admin, key[:10], self._now())
        return key

    def check_key(self, key: str) -> KeyInfo | None:
        info = self.keys.get(key)
        return info if info is not None and info.revoked_at is None else None

    def list_keys(self, *, include_revoked: bool = False) -> list[KeyInfo]:
        return [k for k in self.keys.values() if include_revoked or k.revoked_at is None]

    def revoke_key(self, name: str) -> bool:
        for key, info in self.keys.items():
            if info.name == name and info.revoked_at is None:
                self.keys[key] = replace(info, revoked_at=self._now())
                return True
        return False

    def setting(self, key: str) -> str | None:
        return self.settings.get(key)

    def put_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self.settings.pop(key, None)
        else:
            self.settings[key] = value


def _implements_the_port(store: InMemoryStore) -> Store:
    return store  # mypy checks that InMemoryStore is a whole Store
