"""`wait`: a duration, a local time of day (DST-correct) or a timestamp path."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from engine.core.model import ScheduleTimer
from engine.core.steps.base import SUSPEND, Go, Outcome, StepRun
from engine.core.times import FAR_FUTURE, iso, next_local_time, parse_timestamp, span
from journeys.steps import WaitStep


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
        run.note(step.id, "resumed", "no wait: the time to wait for is missing"
                 if due is None else f"no wait: {iso(due)} is already past",
                 wait=describe(step), until=iso(due) if due is not None else None)
        return Go("resume")
    run.commands.append(ScheduleTimer(
        key=run.key(step.id), enrollment_id=run.enrollment.id, profile_id=run.profile.id,
        journey=run.journey.id, step=step.id, occurrence=run.visits[step.id],
        due_at=min(due, FAR_FUTURE)))
    until = iso(due)
    run.note(step.id, "waiting", f"until {until}", until=until, wait=describe(step))
    return SUSPEND


def describe(step: WaitStep) -> str:
    """The wait as written: `3d`, `until 09:00 (profile)`, `until event.properties.at`."""
    spec = step.wait
    if isinstance(spec, timedelta):
        return span(spec)
    return f"until {spec.until}" + (f" ({spec.tz})" if spec.tz else "")
