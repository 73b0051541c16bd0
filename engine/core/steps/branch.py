"""`branch`: the first case whose condition holds wins, else the `else` step."""

from __future__ import annotations

from typing import Any

from engine.core.steps.base import Go, Outcome, StepRun
from journeys.compiler import branch_rule
from journeys.steps import BranchCase, BranchElse, BranchStep
from rules import TRUE
from rules.explain import explain, show, values


def run(run: StepRun, step: BranchStep) -> Outcome:
    context = run.context()
    matched = run.journey.branches.match(context, run.now)
    for j, case in enumerate(step.branch):
        if isinstance(case, BranchCase) and branch_rule(step.id, j) in matched:
            if run.explain:
                _note(run, step, context, j, case.goto)
            return Go(f"case_{j}")
    if run.explain:
        target = next((c.else_ for c in step.branch if isinstance(c, BranchElse)), None)
        _note(run, step, context, None, target)
    return Go("else")


def _note(run: StepRun, step: BranchStep, context: dict[str, Any], taken: int | None,
          target: str | None) -> None:
    """The case taken (or `else`), why each earlier case was not, and the values every
    case read."""
    conditions = run.journey.loaded.conditions
    index = next(i for i, s in enumerate(run.journey.model.steps) if s.id == step.id)
    seen: dict[str, Any] = {}
    taken_values: dict[str, Any] = {}
    not_taken: list[str] = []
    for j, case in enumerate(step.branch):
        if not isinstance(case, BranchCase) or (taken is not None and j > taken):
            continue
        condition = conditions.get(("steps", index, "branch", j, "when")) or TRUE
        read = values(condition, context)
        seen.update(read)
        if j == taken:
            taken_values = read
        else:
            not_taken.append(f"case {j + 1}: {explain(condition, context, run.now)}")
    arrow = f" -> {target}" if target else ""
    if taken is None:
        reason = f"else{arrow}" + (f" ({'; '.join(not_taken)})" if not_taken else "")
    else:
        shown = ", ".join(f"{path} {show(value)}" for path, value in taken_values.items())
        reason = f"case {taken + 1}{arrow}" + (f" ({shown})" if shown else "")
    run.note(step.id, "branch", reason, case=taken + 1 if taken is not None else "else",
             to=target, values=seen, not_taken=not_taken)
