"""The in-memory store's queues and bookkeeping: the inbox (ingest with dedupe, claims
in profile order, retries and holds), the outbox, parked failures, API keys and
secrets."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from engine.core.model import ScheduleTimer
from engine.ports import (
    Failure,
    InboxItem,
    KeyInfo,
    Lane,
    Levels,
    OutboxEntry,
    UserInfo,
    key_scopes,
)
from engine.store.errors import DuplicateKeyName, DuplicateUserName
from engine.store.memory.state import MemoryState
from engine.values import held_error, inbox_owner


@dataclass
class InboxRow:
    """An accepted event waiting for a worker (or held: retried later, or parked)."""

    id: int
    profile_id: str
    event: dict[str, Any]
    attempts: int = 0
    status: str = "pending"  # pending | parked
    available_at: datetime | None = None  # held until then after a failure
    last_error: str | None = None


class MemoryQueues(MemoryState):
    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        # the profile each stored event is filed under (SqlStore's events.profile_id)
        self.event_profiles: dict[tuple[str, str], str] = {}
        self.inbox: dict[int, InboxRow] = {}  # by id, in order
        self._sources: set[str] = set()  # of the stored events' keys: (source, messageId)
        self._inbox_ids = itertools.count(1)
        # when each (profile, channel) was sent to: frequency caps count these, not
        # every outbox row (the dispatcher asks once per send)
        self._sent_times: dict[tuple[str, str], list[datetime]] = {}
        self._admitted: dict[str, list[str]] = {}  # profile -> keys of admitted sends
        self.parked: dict[int, Failure] = {}
        self._failure_ids = itertools.count(1)
        self.keys: dict[str, KeyInfo] = {}  # by the key itself (a test store keeps it plain)
        self.settings: dict[str, str] = {}
        self.users: dict[str, UserInfo] = {}

    # --- ingest and the inbox ----------------------------------------------------------

    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Dedupe on (source, messageId); queue the new ones for their profiles."""
        fresh: list[str] = []
        for event in events:
            if (source, event["messageId"]) in self.events:
                continue  # seen before, or a duplicate inside the same batch
            self.events[(source, event["messageId"])] = event
            self._sources.add(source)
            row_id = next(self._inbox_ids)
            owner = self._owner(event)
            self.event_profiles[(source, event["messageId"])] = owner
            self.inbox[row_id] = InboxRow(row_id, owner, event)
            fresh.append(event["messageId"])
        return fresh

    def _owner(self, event: Mapping[str, Any]) -> str:
        """The queue an event waits in (engine/values.py `inbox_owner`)."""
        return inbox_owner(event, lambda kind, value: self.identities.get((kind, value)))

    def pending_events(self) -> list[dict[str, Any]]:
        """The events waiting in the inbox, in order (for tests)."""
        return [row.event for row in self.inbox.values() if row.status == "pending"]

    def claim_inbox(self, limit: int, now: datetime, *,
                    profiles: Collection[str] | None = None) -> list[InboxItem]:
        """SqlStore's rule: each profile's events in order from its earliest, and none
        of a profile whose earliest event is held (retried later, or parked)."""
        held: set[str] = set()
        claimed: list[InboxItem] = []
        for row in self.inbox.values():
            if len(claimed) == limit:
                break
            if row.profile_id in held or (profiles is not None and row.profile_id
                                          not in profiles):
                continue
            if row.status != "pending" or (row.available_at is not None
                                           and row.available_at > now):
                held.add(row.profile_id)
                continue
            claimed.append(InboxItem(row.id, row.profile_id, row.event, row.attempts))
        self._claim_short = len(claimed) < limit
        return claimed

    _claim_short = False

    def claim_was_short(self) -> bool:
        return self._claim_short

    def ack_inbox(self, ids: list[int]) -> None:
        for row_id in ids:
            self.inbox.pop(row_id, None)

    def retry_inbox(self, item_id: int, at: datetime, error: str, *,
                    attempt: bool = True) -> None:
        row = self.inbox[item_id]
        row.attempts += 1 if attempt else 0
        row.available_at, row.last_error = at, error

    def next_inbox_at(self, lane: Lane | None = None) -> datetime | None:
        del lane  # one engine per store: no lanes
        held = [r.available_at for r in self.inbox.values()
                if r.status == "pending" and r.available_at is not None]
        return min(held, default=None)

    def inbox_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.inbox.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def waiting_consents(self, profile_ids: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """As SqlStore's: their inbox rows' events, by id (these name every event)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self.inbox.values():
            if row.profile_id in profile_ids:
                found.setdefault(row.profile_id, []).append(row.event)
        return found

    def _move_queued(self, into: str, from_: str) -> None:
        """As SqlStore's: the rows waiting under `from_`, and their stored events."""
        moved = set()
        for row in self.inbox.values():
            if row.profile_id == from_:
                row.profile_id = into
                moved.add(row.event["messageId"])
        for key in ((source, mid) for mid in moved for source in self._sources):
            if self.event_profiles.get(key) == from_:  # by key: not every event stored
                self.event_profiles[key] = into
        for number, failure in self.parked.items():  # a parked one's failure goes along
            if failure.profile_id == from_ and failure.kind == "event":
                self.parked[number] = replace(failure, profile_id=into)

    def refile_events(self, moves: list[tuple[str, str, str]]) -> None:
        """As SqlStore's: each event filed under the profile it was handled for."""
        wanted = {(mid, queued): handled for mid, queued, handled in moves}
        for key, pid in self.event_profiles.items():
            handled = wanted.get((key[1], pid))
            if handled is not None:
                self.event_profiles[key] = handled

    def _queue_changes(self, acked: list[int], emitted: list[dict[str, Any]]) -> None:
        self.ack_inbox(acked)
        if emitted:
            self.accept_events(emitted, "emit")

    # --- the outbox --------------------------------------------------------------------

    def claim_outbox(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxEntry]:
        due = [key for key in self._unsent if (at := self.outbox[key].next_attempt_at)
               is not None and at <= now]
        profiles: set[str] = set()
        for key in due:  # the profiles of the first `limit` due rows, with all their rows
            if len(profiles) == limit:
                break
            profiles.add(self.outbox[key].entry.profile_id)
        self._claim_short = len(profiles) < limit
        claimed: list[OutboxEntry] = []
        for key in due:
            row = self.outbox[key]
            if row.entry.profile_id in profiles:
                self.outbox[key] = replace(row, attempts=row.attempts + 1,
                                           next_attempt_at=now + lease)
                claimed.append(replace(row.entry, attempts=row.attempts + 1))
        return claimed

    def extend_outbox_lease(self, keys: Collection[str], ours: datetime,
                            until: datetime) -> set[str]:
        kept: set[str] = set()
        for key in keys:
            row = self.outbox.get(key)
            if row is not None and row.status == "pending" and row.next_attempt_at == ours:
                self.outbox[key] = replace(row, next_attempt_at=until)
                kept.add(key)
        return kept

    def mark_admitted(self, key: str, at: datetime) -> None:
        row = self.outbox[key]
        self.outbox[key] = replace(row, entry=replace(row.entry, admitted_at=at))
        self._admitted.setdefault(row.entry.profile_id, []).append(key)

    def admitted_since(self, profile_ids: Collection[str],
                       since: datetime) -> dict[str, list[tuple[str, datetime]]]:
        found: dict[str, list[tuple[str, datetime]]] = {}
        for profile_id in profile_ids:
            sends = sorted((row.entry.admitted_at, row.entry.channel) for key in
                           self._admitted.get(profile_id, ())
                           if (row := self.outbox[key]).status in ("pending", "sent")
                           and row.entry.admitted_at is not None
                           and row.entry.admitted_at > since)
            if sends:
                found[profile_id] = [(channel, at) for at, channel in sends]
        return found

    def mark_sent_many(self, sent: Sequence[tuple[str, datetime]]) -> None:
        for key, at in sent:
            self.mark_sent(key, at)

    def mark_admitted_many(self, admitted: Sequence[tuple[str, datetime]]) -> None:
        for key, at in admitted:
            self.mark_admitted(key, at)

    def mark_sent(self, key: str, at: datetime) -> None:
        row = self.outbox[key]
        self.outbox[key] = replace(row, status="sent", next_attempt_at=None, sent_at=at)
        self._unsent.pop(key, None)
        self._sent_times.setdefault((row.entry.profile_id, row.entry.channel), []).append(at)

    def mark_retry(self, key: str, at: datetime, error: str) -> None:
        self.outbox[key] = replace(self.outbox[key], next_attempt_at=at, last_error=error)

    def mark_failed(self, key: str, at: datetime, error: str) -> None:
        del at  # the decision log has the time
        self._settle(key, "failed", error)

    def mark_deferred(self, key: str, until: datetime, reason: str) -> None:
        row = self.outbox[key]
        self.outbox[key] = replace(row, next_attempt_at=until, attempts=row.attempts - 1,
                                   last_error=held_error(reason, row.last_error))

    def mark_deferred_many(self, deferred: Sequence[tuple[str, datetime, str]]) -> None:
        for key, until, reason in deferred:
            self.mark_deferred(key, until, reason)

    def mark_skipped(self, key: str, reason: str) -> None:
        self._settle(key, "skipped", reason)

    def _settle(self, key: str, status: str, error: str) -> None:
        self.outbox[key] = replace(self.outbox[key], status=status, next_attempt_at=None,
                                   last_error=error)
        self._unsent.pop(key, None)

    def count_sent(self, profile_id: str, channel: str, since: datetime) -> int:
        return sum(1 for at in self._sent_times.get((profile_id, channel), ()) if at > since)

    def next_outbox_at(self) -> datetime | None:
        due = [self.outbox[k].next_attempt_at for k in self._unsent]
        return min((d for d in due if d is not None), default=None)

    def outbox_records(self, profile_id: str | None = None,
                       status: str | None = None, *,
                       journey: str | None = None) -> list[Any]:
        return [r for r in self.outbox.values()
                if (profile_id is None or r.entry.profile_id == profile_id)
                and (journey is None or r.entry.journey == journey)
                and (status is None or r.status == status)]

    def outbox_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.outbox.values():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def levels(self, now: datetime | None = None) -> Levels:
        now = now or self._now()
        late = now - timedelta(minutes=1)
        enrollments: dict[tuple[str, str], int] = {}
        for e in self.enrollment_rows.values():
            enrollments[(e.journey, e.status)] = enrollments.get((e.journey, e.status), 0) + 1
        sends: dict[tuple[str, str], int] = {}
        for r in self.outbox.values():
            key = (r.entry.journey, r.status)
            sends[key] = sends.get(key, 0) + 1
        return Levels(self.inbox_counts(), len(self.timers),
                      sum(1 for t in self.timers.values() if t.due_at < late),
                      self.outbox_counts(), enrollments, sends)

    # --- parked failures -----------------------------------------------------------------

    def park(self, kind: str, ref: str, *, profile_id: str, journey: str, step: str,
             error: str, stack: str, attempts: int, at: datetime,
             payload: Mapping[str, Any] | None = None) -> int:
        failure_id = next(self._failure_ids)
        self.parked[failure_id] = Failure(failure_id, kind, ref, profile_id, journey, step,
                                          error, stack, attempts, at, dict(payload or {}))
        if kind == "event":
            row = self.inbox[int(ref)]
            row.status, row.attempts, row.last_error = "parked", attempts, error
        elif kind == "send":
            self._settle(ref, "parked", error)
        return failure_id

    def failures(self, kind: str | None = None) -> list[Failure]:
        return [f for f in self.parked.values() if kind is None or f.kind == kind]

    def retry_failure(self, failure_id: int, now: datetime) -> bool:
        failure = self.parked.pop(failure_id, None)
        if failure is None:
            return False
        if failure.kind == "event" and (row := self.inbox.get(int(failure.ref))) is not None:
            row.status, row.attempts, row.available_at = "pending", 0, None
        elif failure.kind == "timer":
            self.add_timer(_timer(failure.payload, now))
        elif failure.kind == "send" and failure.ref in self.outbox:
            self.outbox[failure.ref] = replace(self.outbox[failure.ref], status="pending",
                                               attempts=0, next_attempt_at=now)
            self._unsent[failure.ref] = None
        return True

    def discard_failure(self, failure_id: int) -> bool:
        failure = self.parked.pop(failure_id, None)
        if failure is None:
            return False
        if failure.kind == "event":
            self.inbox.pop(int(failure.ref), None)
        elif failure.kind == "send" and failure.ref in self.outbox:
            self._settle(failure.ref, "failed", f"discarded: {failure.error}")
        return True

    # --- keys and settings ------------------------------------------------------------------

    def create_key(self, name: str, admin: bool = False, *,
                   scopes: Collection[str] | None = None, rate: int | None = None) -> str:
        """`test-key-<name>`: a predictable key, for tests."""
        granted = key_scopes(admin, scopes)
        if any(k.name == name and k.revoked_at is None for k in self.keys.values()):
            raise DuplicateKeyName(f"an active key named {name!r} exists; revoke it first")
        key = f"test-key-{name}"
        self.keys[key] = KeyInfo(name, "admin" in granted, key[:10], self._now(),
                                 scopes=granted, rate=rate)
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

    # --- dashboard users ------------------------------------------------------------------

    def create_user(self, name: str, password_hash: str, role: str) -> None:
        if name in self.users:
            raise DuplicateUserName(f"a user named {name!r} exists")
        self.users[name] = UserInfo(name, role, password_hash, self._now())

    def get_user(self, name: str) -> UserInfo | None:
        return self.users.get(name)

    def list_users(self) -> list[UserInfo]:
        return [self.users[name] for name in sorted(self.users)]


def _timer(payload: Mapping[str, Any], due: datetime) -> ScheduleTimer:
    """A parked timer, back to work: due now, its attempts reset."""
    return ScheduleTimer(str(payload["key"]), str(payload["enrollment_id"]),
                         str(payload["profile_id"]), str(payload["journey"]),
                         str(payload["step"]), int(payload["occurrence"]), due)
