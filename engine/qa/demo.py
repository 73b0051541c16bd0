"""`journeyman demo`: the real service (API, worker, timers, outbox) on a time-lapse
clock, fed a demo event stream over HTTP, with messages going to the console.

Nothing is faked but time: events go through the Segment API with a write key, into
SQLite, through the worker and the outbox to the console channel. The clock runs
`speed` times faster than real time (a day in half a second by default), so the
journeys' waits of days and weeks play out in about a minute.

Event timestamps are honoured: the clock stops at each event's time until the worker
has handled it, so a wait starts when the event happened, not a tick later (at the
default speed one tick of the worker is hours of simulated time). Sends the policy
skipped or deferred, and sends whose template failed, are printed as they happen.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from engine.api.ingest import checked_event
from engine.core.times import iso, parse_timestamp
from engine.ports import Channel, Decision, Message
from engine.qa.inputs import InputFileError, read_event_lines
from engine.qa.simulate import locate_render_errors, place_of
from engine.runtime.events import BadEvent
from engine.runtime.lease import DEFAULT_SEND_SECONDS
from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service, SigtermStop
from engine.testing import SkipRecord
from journeys.loaded import Library


def bundled_demo_events() -> Path:
    """The demo event stream shipped in the package (`journeyman demo`'s default)."""
    return Path(str(files("engine.qa").joinpath("data", "demo-events.jsonl")))


class TimeLapseClock:
    """Time that starts at `start` and runs `speed` times faster than the wall clock;
    `hold_at(when)` makes it stop when it gets to `when`, `release()` lets it run on
    from there (threads read it: the anchor and the hold change in one assignment)."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.start = start
        self.speed = speed
        self._anchor = (start, time.monotonic())
        self._hold: datetime | None = None

    def now(self) -> datetime:
        start, origin = self._anchor
        running = start + timedelta(seconds=(time.monotonic() - origin) * self.speed)
        hold = self._hold
        return min(running, hold) if hold is not None else running

    def restart(self) -> None:
        """Back to `start`: called once the service is up, before anything happened, so
        the seconds spent starting do not count as days at a high speed."""
        self._anchor = (self.start, time.monotonic())

    def hold_at(self, when: datetime) -> None:
        self._hold = when

    def release(self) -> None:
        """Run on from the current time (no jump for the time spent held)."""
        self._anchor = (self.now(), time.monotonic())
        self._hold = None

    def from_wall(self, seconds: float) -> timedelta:
        return timedelta(seconds=seconds * self.speed)

    def to_wall(self, span: timedelta) -> float:
        return span.total_seconds() / self.speed

    def sleep_until(self, when: datetime, stop: threading.Event) -> None:
        while (wait := self.to_wall(when - self.now())) > 0:
            if stop.wait(wait):
                return


@dataclass
class DemoSummary:
    events: int
    profiles: int
    enrollments: Counter[str]
    messages: Counter[str]
    outbox: dict[str, int]
    simulated: timedelta

    def lines(self) -> Iterator[str]:
        yield (f"{self.events} events, {self.profiles} profiles, "
               f"{sum(self.enrollments.values())} enrollments, "
               f"{sum(self.messages.values())} messages in {self.simulated.days} simulated days")
        for journey, n in sorted(self.enrollments.items()):
            yield f"  {journey:<20} {n:>4} enrolled"
        yield "  outbox: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outbox.items()))


def when(event: dict[str, Any]) -> datetime:
    stamp = parse_timestamp(event.get("timestamp"))
    if stamp is None:
        raise ValueError(f"demo events need a timestamp: {json.dumps(event)[:120]}")
    return stamp


def load_events(path: Path) -> list[dict[str, Any]]:
    """The events of a JSON-lines file, in time order. A line that is not JSON, not an
    object, without a timestamp or that the API would refuse is an InputFileError naming
    `file:line:column` (the API's refusal was an HTTP error from inside the demo)."""
    events = read_event_lines(path, purpose="to be played in the demo")
    for number, event in events:
        try:
            checked_event(event, now=when(event), message_id="demo")
        except BadEvent as exc:
            raise InputFileError(f"{path}:{number}:1: {exc}") from None
    return sorted((event for _, event in events), key=when)


def synthetic_events(count: int, start: datetime) -> list[dict[str, Any]]:
    """`count` made-up visitors over two weeks: sign-ups, browsing, carts, orders.
    Deterministic (choices come from a hash), so two runs show the same story."""

    def pick(user: str, what: str, n: int) -> int:
        return hashlib.blake2b(f"{user}:{what}".encode(), digest_size=4).digest()[0] % n

    zones = ["Europe/Madrid", "America/New_York", "Asia/Tokyo", "Europe/London"]
    events: list[dict[str, Any]] = []
    for i in range(count):
        user = f"visitor{i:03d}"
        at = start + timedelta(hours=3 * i + pick(user, "t", 3))

        def add(event: dict[str, Any], after: timedelta, user: str = user,
                at: datetime = at) -> None:
            events.append({**event, "userId": user, "timestamp": iso(at + after)})

        add({"type": "identify", "traits": {
            "email": f"{user}@example.com", "first_name": user.capitalize(),
            "timezone": zones[pick(user, "tz", len(zones))], "consent": {"email": True}}},
            timedelta())
        source = ["site", "newsletter", "registered_buyer"][pick(user, "src", 3)]
        add({"type": "track", "event": "Signed Up", "properties": {"source": source}},
            timedelta(minutes=1))
        if pick(user, "browse", 2):
            add({"type": "track", "event": "Product Viewed", "properties": {
                "product_id": f"p-{pick(user, 'p', 90)}", "name": "Trail Runner 2",
                "category": "shoes"}}, timedelta(hours=5))
        if pick(user, "cart", 3):
            add({"type": "track", "event": "Checkout Started",
                 "properties": {"cart_value": 40 + pick(user, "v", 120)}}, timedelta(days=1))
            if pick(user, "buy", 2):
                add({"type": "track", "event": "Order Completed", "properties": {
                    "order_id": f"o-{user}", "revenue": 40 + pick(user, "v", 120)}},
                    timedelta(days=1, hours=3))
    return sorted(events, key=when)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Progress = Callable[[datetime, int, int, int], None]


def run_demo(journeys: Path, events: list[dict[str, Any]], *, db: str,
             channels: dict[str, Channel], speed: float, run_on: timedelta,
             progress: Progress | None = None,
             show: Callable[[str], None] | None = None,
             secrets: Sequence[SigningSecret] | None = None,
             bundled_default: bool = False) -> DemoSummary:
    """`bundled_default`: `journeys` is the bundled library because none was given, which
    is refused on a store running journeys of its own (as `serve` refuses it)."""
    import httpx
    import uvicorn

    first, last = when(events[0]), when(events[-1])
    clock = TimeLapseClock(first - timedelta(minutes=1), speed)
    entries = Entries(first - timedelta(days=1), show) if show is not None else None
    if entries is not None:  # what led to a send is printed before it (`StoryFirst`)
        channels = {name: StoryFirst(channel, lambda: entries(service))
                    for name, channel in channels.items()}
    # events_first=0: a second of the wall clock (EVENTS_FIRST) is hours of the demo's
    # time
    service = Service(journeys, db, channels=channels, clock=clock, tick=0.05, lease=5,
                      events_first=0, secrets=secrets, bundled_default=bundled_default)
    key = service.store.create_key(f"demo-{time.monotonic_ns()}")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service.app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    # SIGTERM ends the demo as the end of its stream does: the summary, the temporary
    # folder removed (it killed the process, leaving the folder behind)
    sigterm = SigtermStop()
    sigterm.server = server
    stop = sigterm.asked
    thread.start()
    service.start()
    posted = 0
    try:
        while not server.started and not stop.is_set():
            time.sleep(0.01)
        clock.restart()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(key, "")) as client:
            while posted < len(events) and not stop.is_set():
                due = when(events[posted])
                clock.hold_at(due)  # stop there: the events are handled at their own time
                clock.sleep_until(due, stop)
                batch = [e for e in events[posted:] if when(e) <= due]
                client.post("/v1/batch", json={"batch": batch}).raise_for_status()
                posted += len(batch)
                _wait_handled(service, stop)
                clock.release()
                _report(progress, clock, service, posted, entries)
        deadline = last + run_on
        while clock.now() < deadline and not _idle(service) and not stop.is_set():
            stop.wait(0.1)
            _report(progress, clock, service, posted, entries)
        server.should_exit = True
        service.stop_loops()  # then count: nothing is sent after the summary
        if entries is not None:
            entries(service)
        return _summary(service, posted, clock.now() - clock.start)
    finally:
        server.should_exit = True
        thread.join(10)
        service.stop()
        sigterm.restore()


def _wait_handled(service: Service, stop: threading.Event, limit: float = 30.0) -> None:
    """Until the worker has handled every accepted event (or `limit` seconds)."""
    deadline = time.monotonic() + limit
    while (service.store.inbox_counts().get("pending", 0) and time.monotonic() < deadline
           and not stop.is_set()):
        stop.wait(0.005)


def _idle(service: Service) -> bool:
    store = service.store
    return (store.inbox_counts().get("pending", 0) == 0
            and store.next_timer_at(include_cron=False) is None
            and store.outbox_counts().get("pending", 0) == 0)


SHOWN_DECISIONS = ("skipped", "deferred", "failed")


class Entries:
    """Prints each enrollment once, as profiles enter journeys, and each send that was
    skipped (no consent, a cap, a template error), deferred (quiet hours) or failed.
    Called by the demo's loop and by the dispatcher's thread before each send
    (`StoryFirst`): one at a time, so no line is printed twice."""

    def __init__(self, since: datetime, show: Callable[[str], None]) -> None:
        self.since = since
        self.seen: set[str] = set()
        self.decisions = 0  # how many decisions were shown already
        self.show = show
        self._lock = threading.Lock()

    def __call__(self, service: Service) -> None:
        with self._lock:
            self._show_new(service)

    def _show_new(self, service: Service) -> None:
        for e in service.store.entered_since(self.since):
            if e.id not in self.seen:
                self.seen.add(e.id)
                self.show(f"[  enter] {e.entered_at:%Y-%m-%d %H:%M} {e.profile_id}"
                          f"  -> {e.journey}")
                self.since = max(self.since, e.entered_at)
        # Only these kinds are read: the whole log (entries, waits, sends) is much longer.
        decisions = service.store.recorded_decisions(kinds=SHOWN_DECISIONS)
        for d in decisions[self.decisions:]:
            self.show(describe_decision(d, service.library))
        self.decisions = len(decisions)


class StoryFirst:
    """A channel that first prints the entries and decisions not shown yet, then sends:
    a send deferred to the morning went out while the demo's loop slept until the next
    event, before the loop's next look printed its deferral, so the deferral's line came
    after the send it deferred. Every decision that led to a send is written before the
    send is claimed, so printing them first keeps the story in order."""

    def __init__(self, channel: Channel, before: Callable[[], None]) -> None:
        self.name = channel.name
        self.channel = channel
        self.before = before

    def longest_send(self, count: int) -> float:
        stated = getattr(self.channel, "longest_send", None)
        return float(stated(count)) if callable(stated) else DEFAULT_SEND_SECONDS

    def send(self, message: Message) -> None:
        self.before()
        self.channel.send(message)


def describe_decision(d: Decision, library: Library) -> str:
    """`[   skip] 2026-03-02 09:00 ana  welcome/welcome_site: no_consent`, with the until
    of a deferral and the template file of a render error."""
    label = {"skipped": "   skip", "deferred": "  defer", "failed": "   fail"}[d.what]
    text = f"[{label}] {d.at:%Y-%m-%d %H:%M} {d.profile_id}  {d.journey}/{d.step}: {d.reason}"
    if d.what == "deferred" and "until" in d.details:
        text += f" until {d.details['until']}"
    if "error" in d.details:
        text += f": {d.details['error']}"
    if d.reason == "template_error":
        skipped = SkipRecord(d.profile_id, d.journey, d.step, d.reason, d.at, None,
                             dict(d.details))
        [located] = locate_render_errors([skipped], library)
        text += place_of(located.details)
    return text


def _report(progress: Progress | None, clock: TimeLapseClock, service: Service,
            posted: int, entries: Entries | None) -> None:
    if entries is not None:
        entries(service)
    if progress is not None:
        counts = service.store.outbox_counts()
        progress(clock.now(), posted, service.worker.stats.events, counts.get("sent", 0))


def _summary(service: Service, events: int, simulated: timedelta) -> DemoSummary:
    store = service.store
    profiles = list(store.profile_ids())
    enrollments: Counter[str] = Counter()
    for pid in profiles:
        enrollments.update(e.journey for e in store.profile_enrollments(pid))
    messages = Counter(r.entry.channel for r in store.outbox_records(status="sent"))
    return DemoSummary(events, len(profiles), enrollments, messages, store.outbox_counts(),
                       simulated)
