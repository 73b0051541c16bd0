"""`branch`: the first case whose condition holds wins, else the `else` step."""

from __future__ import annotations

from engine.core.steps.base import Go, Outcome, StepRun
from journeys.compiler import branch_rule
from journeys.steps import BranchCase, BranchStep


def run(run: StepRun, step: BranchStep) -> Outcome:
    matched = run.journey.branches.match(run.context(), run.now)
    for j, case in enumerate(step.branch):
        if isinstance(case, BranchCase) and branch_rule(step.id, j) in matched:
            return Go(f"case_{j}")
    return Go("else")
