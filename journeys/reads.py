"""What a journeys folder reads of the events and profiles it is given: the event names
its journeys and computed traits listen to. The testing kit and scenario files use it to
tell a typo (`Checkout Startd`) from an event meant to enter nobody: a misspelled name
would otherwise do nothing, and a test of what does not happen would pass for nothing.
"""

from __future__ import annotations

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


__all__ = ["TYPO_RATIO", "events_read", "near_miss"]
