"""Segment-spec events at the edge: validation and normalization to the core's dict shape.

Normalized event: `{"type", "event", "userId", "anonymousId", "properties", "traits",
"timestamp" (ISO 8601 UTC), "messageId", "context"}`; `event` is the track name (for
identify it is "identify", and so on), so conditions can always say `event.event`.

What an event may hold is one table, `FIELDS` (the API's OpenAPI document is made from
it too, so the two cannot drift apart), plus rules on every value in it (`check_values`):
nesting at most `MAX_DEPTH` deep, finite numbers only, no NUL character and no lone
surrogate in any string. Each rule stops something that would fail later, far from the
client: PostgreSQL refuses NUL in JSONB and ids longer than its columns, a non-finite or
absurd number breaks computed traits, a timestamp near the ends of the calendar
overflows the clock-skew arithmetic, deep nesting overflows the JSON encoders.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from engine.core.times import iso
from rules.errors import JourneymanError
from rules.operators import timestamp as parse_iso

EVENT_TYPES = ("track", "identify", "alias", "page", "screen", "group")
MAX_EVENT_BYTES = 32 * 1024  # an event as JSON (Segment's limit)
MAX_DEPTH = 64  # objects and arrays within an event, the event itself being level 1
MAX_ID_CHARS = 255  # the id columns of the store (PostgreSQL enforces it)
ID_INT_RANGE = (-(2**63), 2**63 - 1)  # integer ids: signed 64-bit, as most JSON libraries
# and databases read them
YEARS = (1900, 2999)  # a timestamp's year as written; keeps all time arithmetic in range


class BadEvent(JourneymanError):  # noqa: N818
    """An event that cannot be accepted; the message says what to fix."""


# --- the fields ------------------------------------------------------------------------

ID = "id"  # null, a string (<= 255 characters; blank counts as absent) or a 64-bit integer
NAME = "name"  # null or a string
OBJECT = "object"  # null or a JSON object
TIMESTAMP = "timestamp"  # null or an ISO 8601 date and time, year 1900-2999


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str
    about: str
    calls: tuple[str, ...] = EVENT_TYPES  # the calls it means something for


FIELDS: tuple[Field, ...] = (
    Field("userId", ID, "The user's id in your system. An event needs a userId or an "
          "anonymousId (a blank string counts as none)."),
    Field("anonymousId", ID, "An id for a visitor not known yet (a device or cookie id)."),
    Field("previousId", ID, "alias: the id the user had before; its profile is merged "
          "into the userId's.", ("alias",)),
    Field("groupId", ID, "group: the account or company the user belongs to.", ("group",)),
    Field("messageId", ID, "Deduplicates retries: a messageId seen before (for the same key) "
          "is accepted and ignored. Made up when missing."),
    Field("event", NAME, "track: the name of the action (required, not blank).", ("track",)),
    Field("name", NAME, "page/screen: the name of the page or screen; it becomes the event "
          "name (else the call's type).", ("page", "screen", "identify", "alias", "group")),
    Field("properties", OBJECT, "What describes the event (track, page, screen)."),
    Field("traits", OBJECT, "identify/group: what describes the user (identify merges them "
          "into the profile). An identify without traits takes context.traits."),
    Field("context", OBJECT, "Extra information about the call (library, device, ip, ...)."),
    Field("integrations", OBJECT, "Segment's destination switches (not used here)."),
    Field("timestamp", TIMESTAMP, "When the event happened (client clock); default: when it "
          "was received. Corrected for clock skew when sentAt is given."),
    Field("originalTimestamp", TIMESTAMP, "When the event happened, by the client clock "
          "(used instead of timestamp for the clock-skew correction)."),
    Field("sentAt", TIMESTAMP, "When the client sent the event (client clock): with it, "
          "timestamp = receivedAt - (sentAt - originalTimestamp)."),
)
_FIELDS_OF = {call: {f.name: f.kind for f in FIELDS if call in f.calls} for call in EVENT_TYPES}


def _check_field(name: str, kind: str, value: Any) -> None:
    if value is None:
        return
    if kind == ID:
        if isinstance(value, str):
            if len(value) > MAX_ID_CHARS:
                raise BadEvent(f"'{name}' is longer than {MAX_ID_CHARS} characters")
            return
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 42.0 is the integer 42 to JSON Schema, so to us too
        if isinstance(value, int) and not isinstance(value, bool):
            if not ID_INT_RANGE[0] <= value <= ID_INT_RANGE[1]:
                raise BadEvent(f"'{name}' is an integer beyond 64 bits: send it as a string")
            return
        raise BadEvent(f"'{name}' must be a string or an integer")
    if kind == NAME and not isinstance(value, str):
        raise BadEvent(f"'{name}' must be a string")
    if kind == OBJECT and not isinstance(value, Mapping):
        raise BadEvent(f"'{name}' must be an object")
    if kind == TIMESTAMP:
        instant(value, name)


def instant(value: Any, name: str = "timestamp") -> datetime:
    """The aware UTC instant of an ISO 8601 timestamp whose year is within `YEARS`."""
    found = _instant(value) if isinstance(value, str | datetime) else None
    if found is None:
        raise BadEvent(f"bad {name} {shown(value)}: use ISO 8601, like 2026-03-02T09:00:00Z")
    if isinstance(found, int):
        raise BadEvent(f"{name} {shown(value)} is out of range: the year must be between "
                       f"{YEARS[0]} and {YEARS[1]}")
    return found


@lru_cache(maxsize=4096)
def _instant(value: str | datetime) -> datetime | int | None:
    """The UTC instant, the year as written when it is out of range, or None. Cached: an
    event's timestamp is read by the checks, the normalizing and the clock-skew
    correction, and a batch's events often share their `sentAt`."""
    parsed = parse_iso(value)
    if parsed is None:
        return None
    if not YEARS[0] <= parsed.year <= YEARS[1]:
        return parsed.year
    return parsed.astimezone(UTC)


def shown(value: Any) -> str:
    """A value for an error message: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _id(value: Any) -> str | None:
    """An id as text, or None for a missing or blank one."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


# --- the values ------------------------------------------------------------------------

def check_values(value: Any) -> None:
    """Raise BadEvent if anything in `value` (an event) is nested deeper than `MAX_DEPTH`,
    is a number that is not finite (NaN, an infinity, an integer beyond a double's
    range), or is a string or key holding a NUL character or a lone surrogate.
    Iterative, so no nesting can overflow the stack."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping | list):
            if depth > MAX_DEPTH:
                raise BadEvent(f"objects and arrays nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, Mapping):
                for key in item:
                    _check_text(key)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadEvent("numbers must be finite (no NaN or Infinity)")
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                raise BadEvent("a number is too large (beyond ±1.8e308)") from None


def _check_text(text: Any) -> None:
    if not isinstance(text, str):
        raise BadEvent("object keys must be strings")
    if "\x00" in text:
        raise BadEvent("strings may not contain the NUL character (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadEvent("strings may not contain a lone surrogate (\\ud800-\\udfff)") from None


# --- normalizing -----------------------------------------------------------------------

E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def e164(value: Any) -> str:
    """A `phone` trait as E.164 (`+` country code and number, 7 to 15 digits), or
    BadEvent: an SMS goes only to a number that says which country it is in."""
    if not isinstance(value, str) or not E164.fullmatch(value.strip()):
        raise BadEvent(f"traits.phone {shown(value)} is not an E.164 number (like "
                       "+34600000000: '+', the country code and the number, 7 to 15 "
                       "digits, no spaces)")
    return value.strip()


def normalize(raw: Mapping[str, Any], *, now: datetime,
              message_id: str | Callable[[], str]) -> dict[str, Any]:
    """Check a Segment-format event and return the normalized dict (raises BadEvent).
    `message_id` is used when the event has none (a callable is called only then).
    The values inside (`check_values`) are the caller's to check: the API does it on
    the encoded bytes first, which is cheaper for the events that pass."""
    if not isinstance(raw, Mapping):
        raise BadEvent("an event must be a JSON object")
    kind = raw.get("type", "track")
    if kind not in EVENT_TYPES:
        raise BadEvent(f"unknown event type {shown(kind)}: use one of {', '.join(EVENT_TYPES)}")
    checks = _FIELDS_OF[kind]
    for field, value in raw.items():  # the fields it has, usually fewer than it may have
        if value is not None and field in checks:
            _check_field(field, checks[field], value)
    context = raw.get("context")
    if isinstance(context, Mapping):
        _check_field("context.traits", OBJECT, context.get("traits"))
    user, anonymous = _id(raw.get("userId")), _id(raw.get("anonymousId"))
    if user is None and anonymous is None:
        raise BadEvent("an event needs a userId or an anonymousId")
    previous = _id(raw.get("previousId"))
    if kind == "alias" and (user is None or (previous is None and anonymous is None)):
        # Segment's browser library sends `alias(newId)` without a previousId: its userId
        # and anonymousId link as in any event (the anonymous profile merged in, never a
        # known one: not copied into previousId, whose rename would join two people on
        # one laptop). With neither, or no userId, an alias merges nothing: a client's
        # bug worth hearing of (it was answered 200)
        raise BadEvent("an alias needs a userId (the id the user has now) and a "
                       "previousId or an anonymousId (the id they had before)")
    name = raw.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise BadEvent("a track event needs an 'event' name")
    else:
        name = raw.get("name") or kind
    stamp = raw.get("timestamp")
    when = instant(stamp) if stamp is not None else now
    traits = dict(raw.get("traits") or {})
    if kind == "identify" and not traits and isinstance(context, Mapping):
        traits = dict(context.get("traits") or {})
    if traits.get("phone") is not None:
        traits["phone"] = e164(traits["phone"])
    return {
        "type": kind,
        "event": name,
        # ids as identity resolution reads them (stripped text, a blank one is none), so
        # the inbox queues the event for the same profile it is then resolved to
        "userId": user,
        "anonymousId": anonymous,
        "previousId": previous,
        "properties": dict(raw.get("properties") or {}),
        "traits": traits,
        "timestamp": iso(when),
        "messageId": _id(raw.get("messageId")) or (
            message_id() if callable(message_id) else message_id),
        "context": dict(raw.get("context") or {}),
    }
