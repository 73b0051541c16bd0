"""`wait`: a duration, a local time of day (DST-correct) or a timestamp path."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.events import parse_timestamp
from engine.model import ScheduleTimer
from engine.steps.base import SUSPEND, Go, Outcome, StepRun
from journeys.steps import WaitStep


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


def resolve_path(context: dict[str, Any], path: str) -> Any:
    node: Any = context
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def due_at(run: StepRun, step: WaitStep) -> datetime | None:
    spec = step.wait
    if isinstance(spec, timedelta):
        return run.now + spec
    if spec.is_local_time:
        return next_local_time(run.now, spec.until, run.timezone(spec.tz))
    value = resolve_path(run.context(), spec.until)
    return parse_timestamp(value) if value is not None else None


def run(run: StepRun, step: WaitStep) -> Outcome:
    due = due_at(run, step)
    if due is None or due <= run.now:
        # A missing or past timestamp does not hold the profile forever: go on at once.
        return Go("resume")
    run.commands.append(ScheduleTimer(
        key=run.key(step.id), enrollment_id=run.enrollment.id, profile_id=run.profile.id,
        journey=run.journey.id, step=step.id, occurrence=run.visits[step.id], due_at=due))
    return SUSPEND
