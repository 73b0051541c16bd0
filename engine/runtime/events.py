"""Segment-spec events at the edge: validation and normalization to the core's dict shape.

Normalized event: `{"type", "event", "userId", "anonymousId", "properties", "traits",
"timestamp" (ISO 8601 UTC), "messageId", "context"}`; `event` is the track name (for
identify it is "identify", and so on), so conditions can always say `event.event`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from engine.core.times import iso, parse_timestamp
from rules.errors import JourneymanError

EVENT_TYPES = ("track", "identify", "alias", "page", "screen", "group")


class BadEvent(JourneymanError):  # noqa: N818
    """An event that cannot be accepted; the message says what to fix."""


def profile_key(raw: Mapping[str, Any]) -> str:
    user, anon = raw.get("userId"), raw.get("anonymousId")
    for value in (user, anon):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    raise BadEvent("an event needs a userId or an anonymousId")


def normalize(raw: Mapping[str, Any], *, now: datetime,
              message_id: str | Callable[[], str]) -> dict[str, Any]:
    """Check a Segment-format event and return the normalized dict (raises BadEvent).
    `message_id` is used when the event has none (a callable is called only then)."""
    if not isinstance(raw, Mapping):
        raise BadEvent("an event must be a JSON object")
    kind = raw.get("type", "track")
    if kind not in EVENT_TYPES:
        raise BadEvent(f"unknown event type {kind!r}: use one of {', '.join(EVENT_TYPES)}")
    profile_key(raw)
    name = raw.get("event")
    if kind == "track":
        if not isinstance(name, str) or not name.strip():
            raise BadEvent("a track event needs an 'event' name")
    else:
        name = raw.get("name") or kind
    for key in ("properties", "traits", "context"):
        if raw.get(key) is not None and not isinstance(raw.get(key), Mapping):
            raise BadEvent(f"'{key}' must be an object")
    stamp = raw.get("timestamp")
    when = parse_timestamp(stamp) if stamp is not None else now
    if when is None:
        raise BadEvent(f"bad timestamp {stamp!r}: use ISO 8601, like 2026-03-02T09:00:00Z")
    traits = dict(raw.get("traits") or {})
    if kind == "identify" and not traits and isinstance(raw.get("context"), Mapping):
        traits = dict(raw["context"].get("traits") or {})
    return {
        "type": kind,
        "event": name,
        "userId": raw.get("userId"),
        "anonymousId": raw.get("anonymousId"),
        "previousId": raw.get("previousId"),
        "properties": dict(raw.get("properties") or {}),
        "traits": traits,
        "timestamp": iso(when),
        "messageId": str(raw.get("messageId") or (
            message_id() if callable(message_id) else message_id)),
        "context": dict(raw.get("context") or {}),
    }
