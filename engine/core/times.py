"""Time helpers of the core: parsing and printing instants, local times of day in a
profile's zone (DST-correct), and which zone a profile lives in. Pure: `now` always
comes in as an argument (design.md: time comes through the Clock port)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.operators import timestamp

# A timer due later than this is due then: never, in practice (year 9000), and what the
# runtime adds to a due time (a timer slack, a window) stays inside the calendar. A wait
# until 9999-12-31 made the timer loop fail on every run (`earliest + slack` overflowed),
# holding every profile's timers.
FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


def plus(at: datetime, delta: timedelta) -> datetime:
    """`at + delta`, held at the calendar's ends instead of overflowing."""
    try:
        return at + delta
    except OverflowError:
        if delta > timedelta(0):
            return datetime.max.replace(tzinfo=at.tzinfo)
        return datetime.min.replace(tzinfo=at.tzinfo)


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string or datetime; None if it is not one."""
    instant = timestamp(value)
    return instant.astimezone(UTC) if instant is not None else None


def iso(value: datetime) -> str:
    """`2026-03-02T09:00:00Z`: an instant as the events and the reports print it."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def span(value: timedelta) -> str:
    """`30d`, `12h`, `90m`, `45s`: a duration as journeys write it. Kept once made: a
    journey's waits are a few durations, described in every wait's decision."""
    return _span(value)


@lru_cache(maxsize=1024)
def _span(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def next_local_time(now: datetime, hhmm: str, tz: ZoneInfo) -> datetime:
    """The first instant strictly after `now` whose wall clock in `tz` reads `hhmm`.

    On a spring-forward day a time inside the gap resolves to the instant just after the
    gap (fold=0 gives the pre-transition offset); on a fall-back day the first of the two
    readings wins.
    """
    hour, minute = (int(p) for p in hhmm.split(":"))
    local_today = now.astimezone(tz).date()
    for days in range(3):
        naive = datetime.combine(local_today + timedelta(days=days), time(hour, minute))
        candidate = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: a local time recurs within two days")


def local_zone(traits: Mapping[str, Any], default_tz: str) -> ZoneInfo:
    """The profile's zone: its `timezone` trait, else `default_tz`, else UTC."""
    for name in (traits.get("timezone"), default_tz, "UTC"):
        if isinstance(name, str):
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


class WallPaced:
    """`from_wall` and `to_wall` (the Clock port, engine/ports.py) of a clock whose time
    runs at the wall's pace: a span is the same span on both. A clock's time may run at
    another pace (the demo's time-lapse clock, `speed` times faster): what waits on the
    wall for a clock time (the service's loops, engine/runtime/loops.py) or says a wall
    wait as a clock time (engine/runtime/schema_gate.py) asks the clock. WallPaced: the
    wall clock, and a fake clock that moves only when told (engine.testing.FakeClock),
    whose times a loop waits for as if it ran at the wall's pace (a test that moves it
    wakes the loops: `wakeup()`)."""

    __slots__ = ()

    def from_wall(self, seconds: float) -> timedelta:
        return timedelta(seconds=seconds)

    def to_wall(self, span: timedelta) -> float:
        return span.total_seconds()
