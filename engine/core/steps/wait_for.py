"""`wait_for`: resume on a matching event (`matched`) or after the timeout (`timeout`).

The event side is matched by the journey's ruleset (`wait_for:<step>` rule); here we only
arm the timeout timer.
"""

from __future__ import annotations

from engine.core.model import ScheduleTimer
from engine.core.steps.base import SUSPEND, Outcome, StepRun
from engine.core.times import iso
from journeys.steps import WaitForStep


def run(run: StepRun, step: WaitForStep) -> Outcome:
    timeout_at = run.now + step.wait_for.timeout
    run.commands.append(ScheduleTimer(
        key=run.key(step.id), enrollment_id=run.enrollment.id, profile_id=run.profile.id,
        journey=run.journey.id, step=step.id, occurrence=run.visits[step.id],
        due_at=timeout_at))
    run.note(step.id, "waiting", f"for {step.wait_for.event} until {iso(timeout_at)}",
             event=step.wait_for.event, timeout_at=iso(timeout_at))
    return SUSPEND
