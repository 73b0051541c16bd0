"""Ports: what the engine needs from the outside world, as Protocols.

The pure core needs none of these; the runtime (`engine.runtime`) uses them, and
`engine.testing` ships in-memory versions of each (FakeClock, InMemoryStore,
RecordingChannel, SequentialIds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from engine.model import Enrollment, Exit, Profile, RecordGoal, ScheduleTimer
from journeys.errors import JourneyError
from journeys.templating import Rendered


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware UTC datetime."""
        ...


class IdGenerator(Protocol):
    def new_id(self) -> str: ...


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


class DeliveryError(JourneyError):
    """A channel could not deliver. `permanent` failures are not retried (a 5xx SMTP
    reply, a 4xx HTTP answer other than 408/429, no address); any other exception a
    channel raises is taken as transient and retried with backoff by the dispatcher
    (engine/dispatch.py)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """A delivery adapter (email, webhook, sms, console, file). Raises on failure:
    `DeliveryError(permanent=True)` when retrying cannot help, anything else to retry."""

    name: str

    def send(self, message: Message) -> None: ...


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


class Store(Protocol):
    """Where profiles, enrollments and timers live. One event's changes are one unit."""

    def lock_profile(self, profile_id: str) -> bool:
        """Hold the profile until the current transaction ends, so two processes never
        change one profile at once (an event in one, a timer in another). False when
        the store needs no lock (one writer at a time anyway): nothing read before can
        have changed."""
        ...

    def get_profile(self, profile_id: str) -> Profile | None: ...
    def put_profile(self, profile: Profile) -> None: ...
    def profile_ids(self) -> Iterable[str]: ...

    def active_enrollment(self, profile_id: str, journey: str) -> Enrollment | None: ...
    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        """The profile's active enrollments, at most one per journey."""
        ...
    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]: ...
    def get_enrollment(self, enrollment_id: str) -> Enrollment | None: ...
    def put_enrollment(self, enrollment: Enrollment) -> None: ...

    def add_timer(self, timer: ScheduleTimer) -> None:
        """Idempotent on `timer.key`."""
        ...

    def cancel_timer(self, key: str) -> None: ...
    def has_timer(self, key: str) -> bool: ...
    def claim_due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        """Remove and return timers due at or before `now`, oldest first."""
        ...

    def next_timer_at(self, *, include_cron: bool = True) -> datetime | None: ...

    def segment_member(self, profile_id: str, journey: str) -> bool: ...
    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None: ...

    def record_exit(self, exit: Exit) -> None: ...
    def record_goal(self, goal: RecordGoal) -> None: ...
    def record_decision(self, decision: Decision) -> None: ...
    def enqueue_send(self, entry: OutboxEntry) -> bool:
        """Add a send to the outbox; False (and nothing changes) if its key is there
        already: the exactly-once guard for sends."""
        ...

    def profile_for(self, kind: str, value: str) -> str | None: ...
    def link_identity(self, kind: str, value: str, profile_id: str) -> None: ...
    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold `from_` into `into`; see engine/identity.py for the rules."""
        ...
