"""`send`: ask the runtime to deliver a template through a channel.

Consent, quiet hours and frequency caps are applied by the dispatcher (the global
policy), not here: the core only says what should be sent, with its idempotency key.
"""

from __future__ import annotations

from engine.core.model import Send
from engine.core.steps.base import Go, Outcome, StepRun
from journeys.steps import SendStep
from journeys.templating import render_string


def run(run: StepRun, step: SendStep) -> Outcome:
    context = run.context()
    to = render_string(step.send.to, context) if step.send.to else None
    run.commands.append(Send(
        key=run.key(step.id), enrollment_id=run.enrollment.id, profile_id=run.profile.id,
        journey=run.journey.id, step=step.id, channel=step.send.channel,
        template=step.send.template, to=to, context=context, at=run.now))
    return Go("next")
