"""When a segment condition can next change by time alone (no event).

Time-dependent computed traits (engine/core/profiles.py) are derived from `now`: a
profile that does nothing still ages. Their values change only at instants known from
the stored profile: `days_since_last_order` (and the RFM recency built on it) at
`last_order_at` + a whole number of days, `birthday_today` at local midnight on and after
the birthday; a profile date compared with a duration (`profile.traits.signed_up_at:
{before: 365d}`, a signup anniversary) at that date + the duration. A condition compares
them with constants, so it can only change truth at `last_order_at` + one of those
constants (in days), at a birthday's local midnights, or at a date + its duration.
`next_change` returns the earliest such instant after `now`; the runtime keeps one timer
per (journey, profile) there and re-evaluates the condition when it fires (ADR 0009).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from engine.core.model import Profile
from engine.core.times import local_zone, parse_timestamp
from rules.conditions import AllOf, AnyOf, Compare, Condition, Not

RECENCY_TRAITS = ("rfm_recency", "rfm_recency_name")
TIME_TRAITS = frozenset({"days_since_last_order", "birthday_today", *RECENCY_TRAITS})


RELATIVE_OPS = ("before", "after")  # `profile.traits.signed_up_at: {before: 365d}`


def time_dependent(condition: Condition) -> bool:
    """True if time alone can change the condition: it reads a time-dependent computed
    trait, or compares a profile's date with a duration before now."""
    return any(_reads_time(leaf) for leaf in _leaves(condition))


def _reads_time(leaf: Compare) -> bool:
    path = leaf.path
    if len(path) > 2 and path[:2] == ("profile", "computed") and path[2] in TIME_TRAITS:
        return True
    return leaf.op in RELATIVE_OPS and isinstance(leaf.value, timedelta) and (
        path[0] == "profile")


def next_change(condition: Condition, profile: Profile, now: datetime, *,
                default_tz: str = "UTC",
                recency: Mapping[str, Any] | None = None) -> datetime | None:
    """The earliest instant after `now` at which `condition` may change truth for
    `profile` with no event in between; None if time alone never changes it."""
    candidates: set[datetime | None] = set()
    last_order = parse_timestamp(profile.computed.get("last_order_at"))
    for leaf in _leaves(condition):
        path = leaf.path
        if leaf.op in RELATIVE_OPS and isinstance(leaf.value, timedelta):
            instant = parse_timestamp(_fact(profile, path))
            # `before: 90d` turns true just after instant + 90d
            candidates.add(_later(instant, leaf.value + timedelta(seconds=1)))
            continue
        if len(path) < 3 or path[:2] != ("profile", "computed"):
            continue
        trait = path[2]
        if trait == "days_since_last_order" and last_order is not None:
            candidates.update(_later(last_order, timedelta(days=d))
                              for d in _day_marks(leaf.op, leaf.value))
        elif trait in RECENCY_TRAITS and last_order is not None:
            bounds = recency or {"short": 30, "medium": 90}
            candidates.update(_later(last_order, timedelta(days=int(b) + 1))
                              for b in bounds.values() if 0 <= int(b) <= 100 * 366)
        elif trait == "birthday_today":
            candidates.update(_birthday_edges(profile.traits, now, default_tz))
    future = [c for c in candidates if c is not None and c > now]
    return min(future, default=None)


def _later(instant: datetime | None, delta: timedelta) -> datetime | None:
    """`instant + delta`, or None when there is no instant or the sum is past the
    calendar's end (year 9999): such a change never comes."""
    if instant is None:
        return None
    try:
        return instant + delta
    except OverflowError:
        return None


def time_inputs(condition: Condition, profile: Profile) -> tuple[Any, ...]:
    """What `next_change` reads of `profile` for `condition`: when these are the same
    before and after an event, the profile's timer for the condition stays right (the
    runtime re-arms it only when they change)."""
    found: list[Any] = []
    for leaf in _leaves(condition):
        path = leaf.path
        if leaf.op in RELATIVE_OPS and isinstance(leaf.value, timedelta):
            found.append(_fact(profile, path))
        elif len(path) >= 3 and path[:2] == ("profile", "computed"):
            if path[2] == "days_since_last_order" or path[2] in RECENCY_TRAITS:
                found.append(profile.computed.get("last_order_at"))
            elif path[2] == "birthday_today":
                found.append((profile.traits.get("birthday"), profile.traits.get("timezone")))
    return tuple(found)


def birthday_only(condition: Condition | None) -> bool:
    """True if `condition` can only hold on a birthday: it is, or requires among all its
    parts, `profile.computed.birthday_today: {eq: true}`. A schedule entry with such a
    `when` need not fire on the other 364 days."""
    wanted = Compare(("profile", "computed", "birthday_today"), "eq", True)
    if condition == wanted:
        return True
    return isinstance(condition, AllOf) and wanted in condition.items


def birthday_windows(traits: Mapping[str, Any], now: datetime,
                     default_tz: str) -> list[tuple[datetime, datetime]]:
    """The profile's next birthdays (this year's and next year's) as [start, end) in
    UTC, local midnight to local midnight; [] without a usable `birthday` trait."""
    edges = _birthday_edges(traits, now, default_tz)
    return [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]


def _fact(profile: Profile, path: tuple[str, ...]) -> Any:
    """The stored value at `profile.traits...` or `profile.computed...`, or None."""
    if len(path) < 3 or path[1] not in ("traits", "computed"):
        return None
    value: Any = profile.traits if path[1] == "traits" else profile.computed
    for key in path[2:]:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _leaves(condition: Condition) -> Iterator[Compare]:
    if isinstance(condition, Compare):
        yield condition
    elif isinstance(condition, AllOf | AnyOf):
        for item in condition.items:
            yield from _leaves(item)
    elif isinstance(condition, Not):
        yield from _leaves(condition.item)


def _day_marks(op: str, value: Any) -> set[int]:
    """Whole days at which a comparison with `value` (a number, or numbers in a list) can
    flip: the one day a bound is crossed for the ordering operators, both sides of each
    bound for the others."""
    marks: set[int] = set()
    if isinstance(value, bool):
        return marks
    if isinstance(value, int | float) and math.isfinite(value):
        if op in ("gte", "lt"):  # days >= v turns true on day ceil(v)
            marks.add(math.ceil(value))
        elif op in ("gt", "lte"):  # days > v turns true on day floor(v) + 1
            marks.add(math.floor(value) + 1)
        else:
            low = math.floor(value)
            marks.update({low, low + 1, math.ceil(value)})
    elif isinstance(value, list | tuple):
        for item in value:
            marks |= _day_marks("", item)
    return {m for m in marks if 0 <= m <= 100 * 366}


def _birthday_edges(traits: Mapping[str, Any], now: datetime,
                    default_tz: str) -> list[datetime]:
    """Local midnight at the start and the end of the next birthdays (this year's and
    next year's), in the profile's time zone."""
    birthday = traits.get("birthday")
    if not isinstance(birthday, str) or len(birthday) < 10:
        return []
    try:
        month, day = int(birthday[5:7]), int(birthday[8:10])
    except ValueError:
        return []
    tz = local_zone(traits, default_tz)
    year = now.astimezone(tz).year
    edges: list[datetime] = []
    for y in (year, year + 1):
        try:
            when = date(y, month, day)
        except ValueError:  # Feb 29 in a common year: celebrated on Feb 28
            if (month, day) != (2, 29):
                return []
            when = date(y, 2, 28)
        for d in (when, when + timedelta(days=1)):
            edges.append(datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC))
    return edges


__all__ = ["TIME_TRAITS", "birthday_only", "birthday_windows", "next_change",
           "time_dependent", "time_inputs"]


TIME_ENTRY_STEP = timedelta(hours=1)  # how late a time-driven segment entry may be


def next_hour(due: datetime) -> datetime:
    """`due` rounded up to the hour: the checks of everyone whose condition changes
    within the same hour come due together and are handled in batches (an entry at most
    an hour late, ADR 0009)."""
    floor = due.replace(minute=0, second=0, microsecond=0)
    try:
        return floor if floor == due else floor + TIME_ENTRY_STEP
    except OverflowError:  # the calendar's last hour: its start is as good
        return floor


def daily_time(schedule: str) -> time | None:
    """The local time of a crontab that fires once every day at a fixed time."""
    fields = schedule.split()
    if (len(fields) == 5 and fields[2:] == ["*", "*", "*"] and fields[0].isdigit()
            and fields[1].isdigit() and int(fields[0]) < 60 and int(fields[1]) < 24):
        return time(int(fields[1]), int(fields[0]))
    return None
