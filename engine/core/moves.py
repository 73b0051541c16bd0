"""How an enrollment moves to a step of a newer journey version (`migrate:` in a
journey file, carried out by `journeyman apply` through the store): the rule both
stores follow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.core.model import ScheduleTimer


def moved_occurrence(visits: Mapping[str, Any], from_step: str, to_step: str) -> int:
    """The visit count an enrollment moved to `to_step` gets: its count on the old step,
    but past any earlier visit of the new step, so no idempotency key is used twice."""
    return max(int(visits.get(from_step, 1)), int(visits.get(to_step, 0)) + 1)


def moved_timer(timer: ScheduleTimer, to_step: str, occurrence: int) -> ScheduleTimer:
    """The same timer (same due time, same attempts) for the enrollment's new step,
    keyed as the core keys that step's timer (so an exit or a match cancels it)."""
    return replace(timer, key=f"{timer.enrollment_id}:{to_step}:{occurrence}", step=to_step,
                   occurrence=occurrence)
