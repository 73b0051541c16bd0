"""`set_data` (an extension): write `enrollment.data.<key>` for later steps and templates."""

from __future__ import annotations

from engine.core.steps.base import Go, Outcome, StepRun
from journeys.steps import SetDataStep
from journeys.templating import render_value


def run(run: StepRun, step: SetDataStep) -> Outcome:
    run.data.update(render_value(dict(step.set_data), run.context()))
    return Go("next")
