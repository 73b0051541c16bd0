"""Ports: everything the runtime needs from the outside world, in one place.

- `Clock` and `IdGenerator`, with the real ones (`SystemClock`, `UuidIds`) beside them
  (tests use `engine.testing.FakeClock` and `SequentialIds`);
- `Channel` (and `BatchChannel`), what every delivery adapter in `channels/` implements,
  the `Message` it delivers and the `DeliveryError` it raises;
- `Store`, the one storage port, in parts by concern (`ProfileStore`, `EnrollmentStore`,
  `TimerStore`, `SegmentStore`, `RecordStore`, `OutboxStore`, `IdentityStore`,
  `InboxStore`, `KeyStore`); both `engine.store.memory.InMemoryStore` and
  `engine.store.sql.SqlStore` implement all of it (mypy checks it), and one contract
  test suite runs on both;
- the values that cross the ports: `OutboxEntry`, `OutboxRecord`, `Decision`,
  `InboxItem`, `KeyInfo`.

The pure core (`engine.core`) needs none of these; the runtime (`engine.runtime`) uses
them and the stores implement them, so neither imports the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from engine.core.model import Enrollment, Exit, Profile, RecordGoal, ScheduleTimer
from journeys.templating import Rendered
from rules.errors import JourneymanError

# --- time and ids ----------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str: ...


class SystemClock:
    """The wall clock (the edge's; the core never reads a clock)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidIds:
    """Random ids for production (tests use engine.testing.SequentialIds)."""

    def new_id(self) -> str:
        return uuid.uuid4().hex  # noqa: TID251 - the one real source of random ids


# --- delivery ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message on its way to a channel adapter; `at` is the delivery time."""

    key: str  # idempotency key: (enrollment, step, occurrence)
    profile_id: str
    journey: str
    step: str
    channel: str
    to: str | None
    rendered: Rendered
    at: datetime


class DeliveryError(JourneymanError):
    """A channel could not deliver. `permanent` failures are not retried (a 5xx SMTP
    reply, a 4xx HTTP answer other than 408/429, no address); any other exception a
    channel raises is taken as transient and retried with backoff by the dispatcher
    (engine/runtime/dispatch.py)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """A delivery adapter (email, webhook, sms, console, file). Raises on failure:
    `DeliveryError(permanent=True)` when retrying cannot help, anything else to retry."""

    name: str

    def send(self, message: Message) -> None: ...


@runtime_checkable
class BatchChannel(Protocol):
    """A channel that can send several messages at once (one result each, in order)."""

    name: str

    def send(self, message: Message) -> None: ...
    def send_batch(self, messages: list[Message]) -> list[Exception | None]: ...


# --- values that cross the store port ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A rendered send waiting in the outbox. `key` is unique: enqueueing it twice is a no-op."""

    key: str
    enrollment_id: str
    profile_id: str
    journey: str
    step: str
    channel: str
    to: str | None
    rendered: Rendered
    created_at: datetime
    attempts: int = 0  # delivery attempts so far, this one included once claimed

    def message(self, at: datetime | None = None) -> Message:
        """The message to deliver `at` (the delivery time; default: when it was queued)."""
        return Message(self.key, self.profile_id, self.journey, self.step, self.channel,
                       self.to, self.rendered, at or self.created_at)


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An outbox row as an operator sees it: the entry, its status and its history."""

    entry: OutboxEntry
    status: str  # pending | sent | failed | skipped
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class Decision:
    """Why something did or did not happen (a skipped send, a failed render, ...)."""

    at: datetime
    profile_id: str
    journey: str
    step: str
    what: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An accepted event leased to a worker: handle it, then ack it in the same unit."""

    id: int
    profile_id: str
    event: dict[str, Any]
    attempts: int


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as the store knows it (the key itself is never stored)."""

    name: str
    admin: bool = False
    prefix: str = ""
    created_at: datetime | None = None
    revoked_at: datetime | None = None


# --- the store port, by concern --------------------------------------------------------


class ProfileStore(Protocol):
    def transaction(self) -> AbstractContextManager[None]:
        """One unit for every store call made in the block (this thread): committed at
        the end, rolled back on an exception. Nested blocks join the outer one."""
        ...

    def lock_profile(self, profile_id: str) -> bool:
        """Hold the profile until the current transaction ends, so two processes never
        change one profile at once (an event in one, a timer in another). False when
        the store needs no lock (one writer at a time anyway): nothing read before can
        have changed."""
        ...

    def get_profile(self, profile_id: str) -> Profile | None: ...
    def put_profile(self, profile: Profile) -> None: ...
    def profile_ids(self) -> Iterable[str]: ...


class EnrollmentStore(Protocol):
    def active_enrollment(self, profile_id: str, journey: str) -> Enrollment | None: ...
    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        """The profile's active enrollments, at most one per journey."""
        ...
    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        """The profile's enrollments in one journey, oldest first."""
        ...
    def profile_enrollments(self, profile_id: str) -> list[Enrollment]:
        """Every enrollment of a profile, in every journey, oldest first."""
        ...
    def entered_since(self, when: datetime) -> list[Enrollment]:
        """Enrollments entered at or after `when`, oldest first (for live displays)."""
        ...
    def get_enrollment(self, enrollment_id: str) -> Enrollment | None: ...
    def put_enrollment(self, enrollment: Enrollment) -> None: ...


class TimerStore(Protocol):
    def add_timer(self, timer: ScheduleTimer) -> None:
        """Idempotent on `timer.key`: a second add with the same key changes nothing."""
        ...
    def add_timers(self, timers: Sequence[ScheduleTimer]) -> None:
        """Many `add_timer`s at once (same idempotency)."""
        ...
    def cancel_timer(self, key: str) -> None: ...
    def has_timer(self, key: str) -> bool: ...
    def claim_due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        """Remove and return up to `limit` timers due at or before `now`, oldest first
        (claim inside the transaction that fires them: a crash puts them back)."""
        ...
    def next_timer_at(self, *, include_cron: bool = True) -> datetime | None: ...
    def pending_timers(self) -> int: ...


class SegmentStore(Protocol):
    def segment_member(self, profile_id: str, journey: str) -> bool: ...
    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None: ...


class RecordStore(Protocol):
    def record_exit(self, exit: Exit) -> None: ...
    def record_goal(self, goal: RecordGoal) -> None: ...
    def record_decision(self, decision: Decision) -> None: ...
    def recorded_exits(self, profile_id: str | None = None) -> list[Exit]: ...
    def recorded_goals(self, profile_id: str | None = None) -> list[RecordGoal]: ...
    def recorded_decisions(self, profile_id: str | None = None) -> list[Decision]: ...


class OutboxStore(Protocol):
    def enqueue_send(self, entry: OutboxEntry) -> bool:
        """Add a send to the outbox; False (and nothing changes) if its key is there
        already: the exactly-once guard for sends."""
        ...
    def claim_outbox(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxEntry]:
        """Lease up to `limit` due sends (oldest first) and count the attempt; commits on
        its own: the lease is what keeps a second dispatcher off these rows."""
        ...
    def mark_sent(self, key: str, at: datetime) -> None: ...
    def mark_retry(self, key: str, at: datetime, error: str) -> None: ...
    def mark_failed(self, key: str, at: datetime, error: str) -> None: ...
    def mark_deferred(self, key: str, until: datetime, reason: str) -> None:
        """Not now (quiet hours): due again at `until`, and the claim was no attempt."""
        ...
    def mark_skipped(self, key: str, reason: str) -> None:
        """Not at all (no consent, over a frequency cap): kept, with the reason."""
        ...
    def count_sent(self, profile_id: str, channel: str, since: datetime) -> int:
        """Sends delivered to a profile on a channel after `since` (frequency caps)."""
        ...
    def next_outbox_at(self) -> datetime | None: ...
    def outbox_records(self, profile_id: str | None = None,
                       status: str | None = None) -> list[OutboxRecord]:
        """The outbox as an operator sees it, oldest first."""
        ...
    def outbox_counts(self) -> dict[str, int]: ...


class IdentityStore(Protocol):
    def profile_for(self, kind: str, value: str) -> str | None: ...
    def link_identity(self, kind: str, value: str, profile_id: str) -> None: ...
    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (kind, value) identifiers that point at a profile, sorted."""
        ...
    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold `from_` into `into` in one unit, by the rule of engine/core/merge.py."""
        ...


class InboxStore(Protocol):
    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Store new events and queue each for the profile it resolves to, all or
        nothing; dedupe on (source, messageId). Returns the messageIds newly accepted."""
        ...
    def claim_inbox(self, worker: str, limit: int, lease: timedelta,
                    now: datetime) -> list[InboxItem]:
        """Lease up to `limit` pending events, each profile's in order, to one worker."""
        ...
    def ack_inbox(self, ids: list[int]) -> None:
        """Done with these events (inside the unit that handled them)."""
        ...
    def inbox_counts(self) -> dict[str, int]: ...


class KeyStore(Protocol):
    def create_key(self, name: str, admin: bool = False) -> str: ...
    def check_key(self, key: str) -> KeyInfo | None: ...
    def list_keys(self, *, include_revoked: bool = False) -> list[KeyInfo]: ...
    def revoke_key(self, name: str) -> bool: ...
    def setting(self, key: str) -> str | None:
        """A value the store keeps for the runtime, or None. Never a secret in clear:
        the unsubscribe secrets live outside the store (engine/runtime/signing.py)."""
        ...
    def put_setting(self, key: str, value: str | None) -> None:
        """Keep `value` under `key`, replacing any; None forgets the key."""
        ...


class Store(ProfileStore, EnrollmentStore, TimerStore, SegmentStore, RecordStore, OutboxStore,
            IdentityStore, InboxStore, KeyStore, Protocol):
    """The one storage port: everything the runtime, the API and the operators' commands
    ask of a store."""

    def close(self) -> None: ...


__all__ = ["BatchChannel", "Channel", "Clock", "Decision", "DeliveryError",
           "EnrollmentStore", "IdGenerator", "IdentityStore", "InboxItem", "InboxStore",
           "KeyInfo", "KeyStore", "Message", "OutboxEntry", "OutboxRecord", "OutboxStore",
           "ProfileStore", "RecordStore", "SegmentStore", "Store", "SystemClock", "TimerStore",
           "UuidIds"]
