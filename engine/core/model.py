"""Values the core works with: profiles, enrollments, triggers and commands.

Frozen dataclasses inside, pydantic only at the edges (design.md). Datetimes are aware
UTC. Events are plain dicts in the normalized Segment shape (see `engine.runtime.events`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, NamedTuple

from engine.core.frozen import quick_init

SCHEMA_VERSION = 1
CRON_STEP = "__cron__"  # the step of a schedule entry's timer (no enrollment yet)
Status = Literal["active", "completed", "exited"]
Event = Mapping[str, Any]


@quick_init
@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    computed: Mapping[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        return {"id": self.id, "traits": dict(self.traits), "computed": dict(self.computed)}


@quick_init
@dataclass(frozen=True, slots=True)
class Enrollment:
    """One profile's pass through one journey version; persisted as a row."""

    id: str
    journey: str
    version: int
    profile_id: str
    state: str
    status: Status
    entered_at: datetime
    updated_at: datetime
    entry_event: Event
    trigger_event: Event | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    visits: Mapping[str, int] = field(default_factory=dict)
    variants: Mapping[str, str] = field(default_factory=dict)
    exit_reason: str | None = None
    ended_at: datetime | None = None
    goal_reached_at: datetime | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def active(self) -> bool:
        return self.status == "active"

    def occurrence(self, step: str) -> int:
        return self.visits.get(step, 0)

    def changed(self, **changes: Any) -> Enrollment:
        """`dataclasses.replace(self, **changes)`, twice as fast (4.8 against 2.6 us): an
        advance replaces its enrollment once, when it ends (or reaches a goal)."""
        values = list(_enrollment_values(self))
        for name, value in changes.items():
            values[_ENROLLMENT_INDEX[name]] = value
        return Enrollment(*values)

    def outline(self) -> EnrollmentOutline:
        return EnrollmentOutline(self.id, self.profile_id, self.status, self.exit_reason,
                                 self.ended_at, self.updated_at)

    def facts(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "status": self.status,
                "data": dict(self.data), "entered_at": self.entered_at.isoformat(),
                "variants": dict(self.variants)}


class EnrollmentOutline(NamedTuple):
    """Whose an enrollment is and how it stands, without its documents (data, events,
    visits: five JSON documents to decode): what a timer's owner and a send's check
    that it is still wanted need (`Store.enrollment_outlines`)."""

    id: str
    profile_id: str
    status: Status
    exit_reason: str | None
    ended_at: datetime | None
    updated_at: datetime


# Enrollment.changed's view of the fields: all of them, in __init__'s order
_ENROLLMENT_FIELDS = tuple(f.name for f in fields(Enrollment))
_ENROLLMENT_INDEX = {name: i for i, name in enumerate(_ENROLLMENT_FIELDS)}
_enrollment_values = attrgetter(*_ENROLLMENT_FIELDS)


@quick_init
@dataclass(frozen=True, slots=True)
class EntryStats:
    """A profile's past in one journey, as much as entry and re-entry rules need: how many
    times it entered, and when and as which enrollment it last did. Kept as a compact
    index, so handling an event never loads a profile's history."""

    entries: int = 0
    last_enrollment_id: str | None = None
    last_entered_at: datetime | None = None


# --- triggers: why advance() is called ------------------------------------------------

@dataclass(frozen=True, slots=True)
class Enter:
    """Start a new enrollment at the first step; `event` is the enrolling event."""

    profile: Profile


@quick_init
@dataclass(frozen=True, slots=True)
class TimerFired:
    """A wait or a wait_for timeout came due; stale timers (wrong step/occurrence) are no-ops."""

    profile: Profile
    step: str
    occurrence: int


@quick_init
@dataclass(frozen=True, slots=True)
class EventMatched:
    """The event a `wait_for` step waits for has arrived."""

    profile: Profile
    step: str
    event: Event


@quick_init
@dataclass(frozen=True, slots=True)
class ExitRequested:
    """`exit_when` matched: leave at once from any step."""

    profile: Profile
    reason: str


@quick_init
@dataclass(frozen=True, slots=True)
class GoalMet:
    """The journey's goal event arrived within its window (recorded; the journey goes on)."""

    profile: Profile
    event: Event


Trigger = Enter | TimerFired | EventMatched | ExitRequested | GoalMet


# --- commands: what advance() asks the runtime to do ---------------------------------

@quick_init
@dataclass(frozen=True, slots=True)
class Send:
    key: str  # unique per (enrollment, step, occurrence): the idempotency key
    enrollment_id: str
    profile_id: str
    journey: str
    step: str
    channel: str
    template: str
    to: str | None
    context: Mapping[str, Any]  # what the template renders against
    at: datetime


@quick_init
@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    key: str
    enrollment_id: str
    profile_id: str
    journey: str
    step: str
    occurrence: int
    due_at: datetime
    attempts: int = 0  # failed firings so far (the runtime retries, then parks it)


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: str


@quick_init
@dataclass(frozen=True, slots=True)
class UpdateProfile:
    profile_id: str
    set: Mapping[str, Any] = field(default_factory=dict)
    increment: Mapping[str, float] = field(default_factory=dict)
    unset: tuple[str, ...] = ()


@quick_init
@dataclass(frozen=True, slots=True)
class Emit:
    key: str  # derived from the emitting step, so a replay emits the same messageId
    profile_id: str  # the profile the event is for (this one or another)
    event: Event
    source_enrollment: str


@quick_init
@dataclass(frozen=True, slots=True)
class Exit:
    enrollment_id: str
    profile_id: str
    journey: str
    step: str
    reason: str
    at: datetime


@quick_init
@dataclass(frozen=True, slots=True)
class RecordGoal:
    enrollment_id: str
    profile_id: str
    journey: str
    at: datetime
    value: float | None = None  # the goal's `value:` read from its event (revenue, say)


@quick_init
@dataclass(frozen=True, slots=True)
class Note:
    """A decision for the decision log (`journeyman why`): what the core decided for
    this enrollment at `step`, why, and the values that decided it. `kind` is one of
    `waiting`, `resumed`, `branch`, `split`, `goal`, `exited` (the runtime adds the
    others: entries, refusals and what became of each send)."""

    enrollment_id: str
    profile_id: str
    journey: str
    step: str
    kind: str
    reason: str
    at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)


Command = (Send | ScheduleTimer | CancelTimer | UpdateProfile | Emit | Exit | RecordGoal
           | Note)


@quick_init
@dataclass(frozen=True, slots=True)
class Advanced:
    enrollment: Enrollment
    commands: tuple[Command, ...]
