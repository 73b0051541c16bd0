"""The testing kit: fakes for every port and an in-memory engine on a fake clock.

    eng = InMemoryEngine.from_folder("journeys/library", start=datetime(2026, 3, 2, 9, tzinfo=UTC))
    eng.identify("u1", traits={"email": "ana@example.com"})
    eng.track("u1", "Signed Up", properties={"source": "site"})
    eng.advance(timedelta(days=7))      # weeks pass in milliseconds
    assert [m.template for m in eng.sent] == [...]

The project's own tests use it; so can yours. `InMemoryStore` (engine/store/memory.py)
is re-exported here.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.core.model import Enrollment, Profile
from engine.core.times import iso, parse_timestamp
from engine.jsonfast import dumps_bytes
from engine.ports import Decision, Failure, Message, WallPaced
from engine.runtime.events import MAX_EVENT_BYTES, BadEvent, check_values, instant, normalize
from engine.runtime.identity import profile_named
from engine.runtime.time_entries import arm_time_entries
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.runtime.why import Why
from engine.runtime.why import why as explain
from engine.service import wire
from engine.store.memory import InMemoryStore
from journeys.loaded import Library
from journeys.loader import load_path
from journeys.reads import any_event_read, events_read, near_miss
from journeys.templating import CHANNEL_KINDS
from rules.durations import parse_duration


def refused(event: Mapping[str, Any]) -> None:
    """Raise BadEvent for an event the API refuses before normalizing it (its
    `checked_event`, engine/api/ingest.py, without importing the API): a value that is
    not finite (NaN, 1e999), a NUL or a lone surrogate, nesting deeper than the API
    takes, more than MAX_EVENT_BYTES. Without it a replay (or a scenario) counted what
    production refuses: a cart of Infinity entered a journey, and a timestamp in the
    year 9999 moved the fake clock out of the calendar (an OverflowError)."""
    check_values(event)
    try:
        size = len(dumps_bytes(event))
    except TypeError:  # a Python value JSON has no form for: a test's, not an API's
        return
    if size > MAX_EVENT_BYTES:
        raise BadEvent(f"event larger than {MAX_EVENT_BYTES} bytes ({size})")


def start_instant(start: datetime | str) -> datetime:
    """A fake clock's start: an aware datetime, or an ISO 8601 string with a time zone.
    Without one (a naive datetime, `2026-03-02T09:00:00`) it is a ValueError: which
    instant was meant is not known, and a test's times would be off by hours."""
    when = parse_timestamp(start) if isinstance(start, str) else start
    if when is None:
        raise ValueError(f"start={start!r} is not an ISO 8601 time, like "
                         "2026-03-02T09:00:00Z")
    if isinstance(start, datetime) and start.utcoffset() is None:
        raise ValueError(f"start={start!r} has no time zone: give tzinfo=UTC (or a zone)")
    if isinstance(start, str) and not _has_zone(start):
        raise ValueError(f"start={start!r} has no time zone: write {start.strip()}Z (UTC) "
                         "or give its offset (+01:00)")
    return when.astimezone(UTC)


def _has_zone(text: str) -> bool:
    """Whether an ISO 8601 time says its offset (`Z`, `+01:00`)."""
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")
                                      .replace("z", "+00:00")).utcoffset() is not None
    except ValueError:
        return False


# Signs the unsubscribe links of the in-memory engine and of tests: a secret for tests
# only, spelled so that nobody mistakes it for a production one. Production processes
# get theirs from the configuration (engine/runtime/signing.py), never from code.
TEST_SECRET = "journeyman-test-secret-not-for-production"


class FakeClock(WallPaced):
    """A clock that moves only when told to (trio's MockClock, minus the event loop).
    A span of the wall is the same span of its time (`from_wall`, `to_wall`: WallPaced):
    what waits for one of its times waits that long on the wall, unless woken."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime (UTC)")
        self._now = start.astimezone(UTC)
        self._watchers: list[Callable[[datetime], None]] = []

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        if when < self._now:
            raise ValueError(f"time cannot go backwards ({iso(when)} < {iso(self._now)})")
        moved = when != self._now
        self._now = when.astimezone(UTC)
        if moved:
            for watcher in self._watchers:
                watcher(self._now)

    def watch(self, callback: Callable[[datetime], None]) -> None:
        """Call `callback(now)` each time the clock moves (the pytest plugin keeps a
        freezegun or time-machine clock in step this way)."""
        self._watchers.append(callback)

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


@dataclass(frozen=True, slots=True)
class SkipRecord:
    """A send that did not go out: the policy skipped it (`no_consent`, `frequency_cap`)
    or its template failed to render (`template_error`, the error in `details`)."""

    profile: str
    journey: str
    step: str
    reason: str
    at: datetime
    channel: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeferRecord:
    """A send the policy held back (quiet hours) until `until`; it is tried again then."""

    profile: str
    journey: str
    step: str
    reason: str
    at: datetime
    until: datetime | None = None
    channel: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def _channel_of(decision: Decision) -> str | None:
    channel = decision.details.get("channel")
    return str(channel) if channel is not None else None


@dataclass
class RecordingChannel:
    """A channel that keeps what it was asked to send (one instance can serve all channels)."""

    name: str = "recording"
    messages: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.messages.append(message)


class UnreadEventError(ValueError):
    """A track event whose name is a typo away from one the journeys (or computed traits)
    read: it would enter, resume and exit nothing, and a test pass for nothing."""


class UnreadEventWarning(UserWarning):
    """A track event whose name no journey (nor computed trait) reads; an error under
    `pytest -W error`. `unread=True` on `track`/`post` sends one on purpose."""


class InMemoryEngine:
    """The runtime on an InMemoryStore, a FakeClock and a RecordingChannel, driven by the
    same worker and dispatcher as production: an event is accepted into the inbox and
    handled in a batch; timers fire through the worker; sends go through the outbox."""

    def __init__(self, library: Library, *, start: datetime, backend: str = "durable",
                 decision_log: bool = True) -> None:
        self.clock = FakeClock(start)
        self.store = InMemoryStore(self.clock)
        self.channel = RecordingChannel()
        self.library = library
        self.ids = SequentialIds("msg")
        channels = dict.fromkeys(CHANNEL_KINDS, self.channel)  # every channel journeys use
        self.unsubscribe = UnsubscribeLinks(TEST_SECRET, "https://journeyman.invalid")
        wiring = wire(library, store=self.store, clock=self.clock, channels=channels,
                      unsubscribe=self.unsubscribe, backend=backend, name="in-memory",
                      decision_log=decision_log)
        self.runner = wiring.runner
        self.dispatcher = wiring.dispatcher
        self.worker = wiring.worker
        self._events_read: set[str] | None = None  # what the journeys listen to, once asked

    @classmethod
    def from_folder(cls, folder: str | Path, *, start: datetime | str,
                    only: list[str] | None = None, backend: str = "durable"
                    ) -> InMemoryEngine:
        """The journeys of `folder` (a journeys folder or one journey file) on a fake
        clock at `start`: an aware datetime or an ISO 8601 string with a time zone
        (`2026-03-02T09:00:00Z`, any offset), as scenario files write it."""
        when = start_instant(start)
        library = load_path(folder)
        if only is not None:
            missing = set(only) - set(library.journeys)
            if missing:
                raise KeyError(f"no such journeys: {', '.join(sorted(missing))}")
            library.journeys = {k: v for k, v in library.journeys.items() if k in only}
        return cls(library, start=when, backend=backend)

    def use_store(self, store: Any) -> None:
        """Run on another Store (a SqlStore, say) with the same clock and channel; the
        journeys are deployed on it (`deploy`)."""
        self.store = store
        self.worker.store = store
        # SQLite on a file: batches handled outside the write lock, as `serve` does
        self.worker.snapshots = store if getattr(store, "snapshots_work", False) else None
        self.dispatcher.store = store
        self.deploy()

    def deploy(self) -> int:
        """What `serve` does on start: the time-driven entries (schedules, segments that
        change with time) of journeys new to this store reach its existing profiles.
        Returns how many timers were armed."""
        return arm_time_entries(self.runner, self.store, self.clock.now())

    # --- time ----------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, delta: timedelta | str) -> None:
        """Move the clock by `delta` (a timedelta, or a duration such as "3d" or "1h30m"),
        firing every timer that comes due on the way, in order."""
        step = parse_duration(delta) if isinstance(delta, str) else delta
        if step < timedelta():  # it did nothing, and the test read on as if it had
            raise ValueError(f"advance({step!r}): the fake clock only moves forward")
        self.advance_to(self.now + step)

    def advance_to(self, when: datetime) -> None:
        """Fire timers, retry held events and deliver (or retry) sends in time order up
        to `when` (a time already past moves nothing)."""
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise ValueError(f"advance_to({when!r}): give a datetime with a time zone, "
                             "like datetime(2026, 3, 2, 9, tzinfo=UTC)")
        self._drain()  # what is ready now (an operator's retry, say)
        while (due := self._next_due()) is not None and due <= when:
            self.clock.set(max(due, self.now))
            self.worker.fire_timers()
            self._drain()
        self.clock.set(max(when, self.now))

    def _move_to(self, at: datetime | None) -> None:
        """An event method's `at=`: the clock moves there first. A time before the clock
        is an error: the event was recorded now, not then, and the test never knew."""
        if at is None:
            return
        if isinstance(at, datetime) and at.utcoffset() is not None and at < self.now:
            raise ValueError(f"at={iso(at)} is before the engine's clock, {iso(self.now)}: "
                             "the fake clock only moves forward")
        self.advance_to(at)

    def _next_due(self) -> datetime | None:
        return self._earliest(self.store.next_timer_at())

    def _earliest(self, timer: datetime | None) -> datetime | None:
        """The earliest of `timer`, the next send and the next held event, the worker's
        wait after a transient database error taken into account."""
        waits = self.worker.transients
        due = [d for d in (waits.not_before("timers", timer), self.store.next_outbox_at(),
                           waits.not_before("events", self.store.next_inbox_at())) if d]
        return min(due, default=None)

    def run_until_idle(self, limit: timedelta = timedelta(days=400)) -> None:
        """Autojump to each next journey timer until none is pending (cron excluded)."""
        deadline = self.now + limit
        while (due := self._next_work()) is not None and due <= deadline:
            self.advance_to(due)

    def _next_work(self) -> datetime | None:
        """The next journey timer, held event or send (deferred by quiet hours, or
        retried)."""
        return self._earliest(self.store.next_timer_at(include_cron=False))

    def run_until(self, predicate: Callable[[InMemoryEngine], bool],
                  limit: timedelta = timedelta(days=400)) -> bool:
        """Autojump timer by timer until `predicate(self)` holds; False if the limit came first."""
        deadline = self.now + limit
        while not predicate(self):
            due = self._next_due()
            if due is None or due > deadline:
                return False
            self.advance_to(due)
        return True

    def _drain(self) -> None:
        """Handle what the inbox holds (events emitted on the way too), then deliver."""
        while self.worker.handle_events():
            pass
        self.dispatcher.dispatch_due()

    # --- events --------------------------------------------------------------------

    def post(self, event: Mapping[str, Any], *, unread: bool = False) -> dict[str, Any]:
        """A Segment-format event, accepted and handled at once; a future `timestamp`
        moves the clock there first. What the API answers 400 raises BadEvent, before
        the clock moves (`refused`). A track whose name no journey reads is told
        (`check_read`) unless `unread`."""
        refused(event)
        if not unread and event.get("type") == "track":
            self.check_read(event.get("event"), stacklevel=3)
        stamp = event.get("timestamp")
        if isinstance(stamp, str):
            when = instant(stamp)
            if when > self.now:
                self.advance_to(when)
        accepted = normalize(event, now=self.now, message_id=self.ids.new_id)
        self.store.accept_events([accepted])
        self._drain()
        return accepted

    def track(self, user_id: str, event: str, properties: Mapping[str, Any] | None = None,
              at: datetime | None = None, *, unread: bool = False) -> dict[str, Any]:
        """Segment `track`. An `event` no journey (nor computed trait) reads is told, as
        in scenario files: a typo away from one they read (`Checkout Startd`) raises
        UnreadEventError with "did you mean", before anything happens; any other name
        warns (UnreadEventWarning). `unread=True` sends it on purpose, without a word."""
        if not unread:
            self.check_read(event, stacklevel=3)
        self._move_to(at)
        return self.post({"type": "track", "userId": user_id, "event": event,
                          "properties": dict(properties or {}), "timestamp": iso(self.now)},
                         unread=True)

    def check_read(self, name: Any, *, stacklevel: int = 2) -> None:
        """Raise UnreadEventError for a track name a typo away from one the journeys or
        computed traits read; warn UnreadEventWarning for another name they do not read
        (it would enter, resume and exit nothing)."""
        if not isinstance(name, str):  # no name: `refused` / normalize say why
            return
        if self._events_read is None:
            self._events_read = events_read(self.library)
        if name in self._events_read:
            return
        best = near_miss(name, self._events_read)
        if best is not None:
            raise UnreadEventError(f"no journey reads the event {name!r} (did you mean "
                                   f"{best!r}? unread=True if the name is meant)")
        if any_event_read(self.library):  # a segment entry: any event may enter someone
            return
        warnings.warn(UnreadEventWarning(
            f"no journey reads the event {name!r}: it enters, resumes and exits nothing "
            "(unread=True if that is meant)"), stacklevel=stacklevel)

    def identify(self, user_id: str, traits: Mapping[str, Any] | None = None,
                 at: datetime | None = None) -> dict[str, Any]:
        self._move_to(at)
        return self.post({"type": "identify", "userId": user_id, "traits": dict(traits or {}),
                          "timestamp": iso(self.now)})

    def alias(self, user_id: str, previous_id: str, at: datetime | None = None
              ) -> dict[str, Any]:
        """Segment `alias`: `previous_id` (an anonymous id or an old user id) is `user_id`
        from now on; the two profiles merge (engine/runtime/identity.py)."""
        self._move_to(at)
        return self.post({"type": "alias", "userId": user_id, "previousId": previous_id,
                          "timestamp": iso(self.now)})

    def page(self, user_id: str, name: str | None = None,
             properties: Mapping[str, Any] | None = None, at: datetime | None = None
             ) -> dict[str, Any]:
        """Segment `page`: a page view (conditions see `event.event == "page"` unless
        it has a name)."""
        self._move_to(at)
        event: dict[str, Any] = {"type": "page", "userId": user_id,
                                 "properties": dict(properties or {}),
                                 "timestamp": iso(self.now)}
        if name:
            event["name"] = name
        return self.post(event)

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
        """Events emitted by `emit` steps, in order."""
        return [dict(e) for (source, _), e in self.store.events.items() if source == "emit"]

    @property
    def decisions(self) -> list[Decision]:
        """The whole decision log, oldest first: entries and refusals, waits, resumes,
        branches, splits, sends, skips, deferrals, failures, goals and exits (`what` is
        the kind; `details` holds the values that decided it)."""
        return list(self.store.decisions)

    def why(self, user: str, journey: str | None = None) -> list[Why]:
        """Every decision made for `user` (`journeyman why`), oldest first; [] for a
        stranger."""
        return explain(self.store, user, journey=journey) or []

    @property
    def failures(self) -> list[Failure]:
        """Parked events, timers and sends (they failed too often), with their errors."""
        return self.store.failures()

    @property
    def skipped(self) -> list[SkipRecord]:
        """Sends that did not go out, oldest first (policy skips and render errors)."""
        return [SkipRecord(d.profile_id, d.journey, d.step, d.reason, d.at, _channel_of(d),
                           dict(d.details))
                for d in self.store.decisions if d.what == "skipped"]

    @property
    def deferred(self) -> list[DeferRecord]:
        """Sends the policy held back for later (quiet hours), oldest first."""
        return [DeferRecord(d.profile_id, d.journey, d.step, d.reason, d.at,
                            parse_timestamp(d.details.get("until")), _channel_of(d),
                            dict(d.details))
                for d in self.store.decisions if d.what == "deferred"]

    def profile(self, profile_id: str) -> Profile:
        """The profile a userId, anonymousId or profile id names (its computed view)."""
        stored = self.store.get_profile(profile_named(self.store, profile_id) or profile_id)
        if stored is None:
            raise KeyError(f"no profile {profile_id!r}")
        return self.runner.computed.view(stored, self.now, self.library.policy.timezone)

    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        return self.store.enrollments(profile_id, journey)


__all__ = ["TEST_SECRET", "DeferRecord", "ExitRecord", "FakeClock", "InMemoryEngine",
           "InMemoryStore", "RecordingChannel", "SentMessage", "SequentialIds", "SkipRecord",
           "UnreadEventError", "UnreadEventWarning", "start_instant"]
