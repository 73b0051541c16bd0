"""What a worker's batches are made of (engine/runtime/worker.py): the retry policy, the
counts, what one batch did (`Outcome`) and the two ways a batch ends without writing
(`Redo`: an optimistic batch read state written meanwhile; `Refused`: the database
refused its writes), and the small helpers that group and describe a batch's items."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.core.model import ScheduleTimer
from engine.ports import InboxItem, WriteRun
from engine.runtime.errortext import error_text, logged_text, stack_text
from engine.runtime.unit import UnitOfWork
from engine.values import PROFILE_ID_KIND, named_ids, provisional_owner


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retries of a failing event or timer: attempt n waits base * 2**(n-1), capped;
    after `max_attempts` failures the item is parked."""

    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=10)
    max_attempts: int = 5

    def delay(self, attempt: int) -> timedelta:
        return min(self.base * (1 << max(attempt - 1, 0)), self.cap)


@dataclass
class Stats:
    events: int = 0
    timers: int = 0
    failures: int = 0  # items that failed an attempt
    parked: int = 0
    redone: int = 0  # optimistic batches done again in the lock (someone wrote their state)
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # the last few, for metrics

    def batch(self, size: int) -> None:
        self.batches += 1
        self.batch_sizes = [*self.batch_sizes[-99:], size]


@dataclass
class Outcome:
    """What one batch did, for stats and for the loops' wake-ups."""

    handled: int = 0
    failed: int = 0
    sends: bool = False  # it queued sends: wake the dispatcher
    emitted: bool = False  # it queued events: wake the event loop
    earliest_timer: datetime | None = None  # the soonest timer it wrote
    lags: list[float] = field(default_factory=list)  # seconds from the API, per event
    # The claim took everything that was due and all of it was done: the loop need not
    # claim again at once only to find nothing (a transaction per wake-up; see
    # `Worker.drained`).
    drained: bool = False

    def add(self, other: Outcome) -> None:
        self.handled += other.handled
        self.failed += other.failed
        self.lags += other.lags
        self.note(other.sends, other.emitted, other.earliest_timer)

    def note(self, sends: bool, emitted: bool, timer: datetime | None) -> None:
        self.sends |= sends
        self.emitted |= emitted
        if timer is not None and (self.earliest_timer is None or timer < self.earliest_timer):
            self.earliest_timer = timer

    def saw(self, unit: UnitOfWork) -> None:
        """What the unit is about to write that other loops care about."""
        for run in (c for c in unit.changes if isinstance(c, WriteRun)):
            due = min((t.due_at for t in run.timers_added.values()), default=None)
            self.note(bool(run.sends), bool(run.emitted), due)


@dataclass(frozen=True, slots=True)
class Redo:
    """An optimistic batch read state someone wrote before it could write: nothing was
    written; the batch is done again inside the write transaction, by its `keys` (the
    profiles of a batch of events, the timers of a chunk)."""

    keys: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Refused:
    """The database refused a transaction's writes (not a transient error)."""

    error: str


class WriteRefused(Exception):  # noqa: N818 - names what happened to the item
    """The database refused this item's writes (the error is the database's)."""


def describe(exc: BaseException) -> tuple[str, str, str]:
    """What is kept of a failure (its text and stack) and what is logged of it (without
    the words that may quote a person's data: `logged_text`)."""
    return error_text(exc), stack_text(exc), logged_text(exc)


def identity_keys(items: Iterable[InboxItem]) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for item in items:
        for kind, field_name in (("user_id", "userId"), ("anonymous_id", "anonymousId"),
                                 ("user_id", "previousId"), ("anonymous_id", "previousId")):
            value = item.event.get(field_name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                keys.add((kind, str(value).strip()))
    return keys


def preloads(items: Iterable[InboxItem], owners: Iterable[str]) -> tuple[
        set[str], set[tuple[str, str]]]:
    """The profiles new visitors' provisional queues make (their anonymousIds' texts,
    engine/values.py `inbox_owner`), and the identifiers a batch preloads: those the
    events name and those the queues' profiles' ids and their texts (a provisional
    userId's too) are read for (`own_and_had_ids`). Read one by one (and, on
    PostgreSQL, each made profile held by a statement of its own) when a visitor's
    queue was preloaded by its name alone."""
    texts: dict[str, str] = {}
    for item in items:
        for kind, field_name in (("anonymous_id", "anonymousId"), ("user_id", "userId")):
            value = item.event.get(field_name)
            text = str(value).strip() if value is not None else ""
            if text and item.profile_id == provisional_owner(kind, text):
                texts[text] = kind
    made = {text for text, kind in texts.items() if kind == "anonymous_id"}
    return made, identity_keys(items) | own_and_had_ids({*named_ids(owners), *texts})


def own_ids(profiles: Iterable[str]) -> set[tuple[str, str]]:
    """The identifiers a profile's id may be (engine/runtime/unit.py identities_of)."""
    return {(kind, p) for p in profiles for kind in ("user_id", "anonymous_id")}


def own_and_had_ids(profiles: Iterable[str]) -> set[tuple[str, str]]:
    """`own_ids`, and whether each id is a `profile` identifier (chosen, or merged away:
    the inbox queues a new person's events under their id's text, and
    engine/values.py `id_taken` reads these)."""
    ids = own_ids(profiles)
    return ids | {(PROFILE_ID_KIND, p) for _, p in ids}


def timer_payload(timer: ScheduleTimer) -> dict[str, object]:
    return {"key": timer.key, "enrollment_id": timer.enrollment_id,
            "profile_id": timer.profile_id, "journey": timer.journey, "step": timer.step,
            "occurrence": timer.occurrence, "due_at": timer.due_at.isoformat()}
