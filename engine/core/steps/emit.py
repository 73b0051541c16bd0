"""`emit`: a track event for this profile or another, which may drive other journeys."""

from __future__ import annotations

from engine.core.model import Emit
from engine.core.steps.base import Go, Outcome, StepRun
from journeys.steps import EmitStep
from journeys.templating import render_string, render_value


def run(run: StepRun, step: EmitStep) -> Outcome:
    context = run.context()
    target = render_string(step.emit.to, context).strip() if step.emit.to else run.profile.id
    key = run.key(step.id)
    event = {
        "type": "track",
        "event": step.emit.event,
        "userId": target,
        "properties": render_value(dict(step.emit.properties), context),
        "timestamp": run.now.isoformat(),
        "messageId": f"emit:{key}",
        "context": {"journey": run.journey.id, "step": step.id, "from_profile": run.profile.id},
    }
    run.commands.append(Emit(key=key, profile_id=target, event=event,
                             source_enrollment=run.enrollment.id))
    return Go("next")
