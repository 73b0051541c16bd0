"""`exit`: end the enrollment with a reason."""

from __future__ import annotations

from engine.core.steps.base import Go, Outcome, StepRun
from journeys.steps import ExitStep


def run(run: StepRun, step: ExitStep) -> Outcome:
    return Go("exit_step", exit_reason=step.exit)
