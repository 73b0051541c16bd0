"""What a journeys folder reads of the events and profiles it is given: the event names
its journeys and computed traits listen to, and the profile traits they, the templates
and the engine read. The testing kit and scenario files use it to tell a typo
(`Checkout Startd`, `plna: premium`) from an event or trait meant to do nothing: a
misspelled name would otherwise do nothing, and a test would pass for nothing.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from difflib import SequenceMatcher
from typing import Any

from journeys.computed import NPS_EVENT, VISIT_EVENT, ComputedTraitsConfig
from journeys.loaded import Library

TYPO_RATIO = 0.85  # a name this close (case aside) to one the folder reads: a typo


def events_read(library: Library) -> set[str]:
    """Every event name the folder's journeys and computed traits read (entry, exit_when,
    wait_for, goal, emit; `order_events`, ...)."""
    names: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and (key == "event" or key.endswith("_events")):
            names.add(value)

    for journey in library.journeys.values():
        walk(journey.model.model_dump())
    # the computed traits: computed_traits.yaml's events, else their defaults, and the
    # ones they always read
    walk(library.computed_config or ComputedTraitsConfig().model_dump())
    return names | {VISIT_EVENT, NPS_EVENT}


def any_event_read(library: Library) -> bool:
    """Whether any event may enter someone: a segment entry is evaluated on each of a
    profile's events (docs/language.md), and a track sets computed traits it may read
    (`last_seen_at`, `identified`) or makes the profile."""
    return any(j.model.entry.segment is not None for j in library.journeys.values())


def near_miss(name: str, read: Collection[str]) -> str | None:
    """The name of `read` that `name` is a typo of (case aside, `TYPO_RATIO`), the
    closest; None when `name` is read itself or far from all of them."""
    if name in read:
        return None
    close = [r for r in read
             if SequenceMatcher(None, name.lower(), r.lower()).ratio() >= TYPO_RATIO]
    if not close:
        return None
    return max(close, key=lambda r: SequenceMatcher(None, name, r).ratio())


# Traits the engine reads itself, whatever the journeys say: the channels' addresses
# (engine/runtime/rendering.py), consent (the policy), the time zone (quiet hours,
# waits) and the birthday (schedules).
ENGINE_TRAITS = frozenset({"email", "phone", "device_token", "consent", "timezone",
                           "birthday"})
# `profile.traits.get('x')`, `profile.traits.x`, `profile.traits['x']`: in conditions
# (keys), inline strings and templates
_TRAIT_READ = re.compile(r"profile\.traits(?:\.get\(\s*['\"]([^'\"]+)['\"]|\.(\w+)"
                         r"|\[\s*['\"]([^'\"]+)['\"]\s*\])")


def traits_read(library: Library) -> set[str]:
    """Every profile trait the folder's journeys (conditions, inline strings), templates
    and computed traits' lifecycle stages read, and those the engine reads itself."""
    names = set(ENGINE_TRAITS)

    def scan(text: str) -> None:
        for found in _TRAIT_READ.finditer(text):
            names.add(next(group for group in found.groups() if group))

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                scan(str(key))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            scan(value)

    for journey in library.journeys.values():
        walk(journey.model.model_dump())
    for texts in library.templates.texts.values():
        for text in texts:
            scan(text)
    walk(library.computed_config or {})
    return names


__all__ = ["ENGINE_TRAITS", "TYPO_RATIO", "events_read", "near_miss", "traits_read"]
