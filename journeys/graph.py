"""The step graph of a journey: which step follows which, on which trigger.

Shared by the linter (references, reachability, loops) and the compiler (the state
machine), so both agree on what a journey means.
"""

from __future__ import annotations

from dataclasses import dataclass

from journeys.model import Journey
from journeys.steps import (
    BranchCase,
    BranchElse,
    BranchStep,
    ExitStep,
    SplitStep,
    WaitForStep,
    WaitStep,
)
from journeys.yamlsrc import Where
from rules.conditions import parse_condition
from rules.errors import JourneymanError
from rules.explain import written

MAX_LABEL = 60  # a branch case's condition on a diagram's edge, cut to a readable length
START = "__start__"
COMPLETED = "__completed__"
EXITED = "__exited__"
TERMINALS = (COMPLETED, EXITED)


@dataclass(frozen=True, slots=True)
class Edge:
    trigger: str
    target: str
    where: Where  # where the reference is written, for error messages
    label: str = ""


def fallthrough(model: Journey, index: int) -> str:
    step = model.steps[index]
    if step.next is not None:
        return step.next
    return model.steps[index + 1].id if index + 1 < len(model.steps) else COMPLETED


def edges(model: Journey) -> dict[str, list[Edge]]:
    """For every step id, its outgoing edges (first occurrence wins on duplicate ids)."""
    out: dict[str, list[Edge]] = {}
    for i, step in enumerate(model.steps):
        if step.id in out:
            continue
        here: Where = ("steps", i)
        nxt = fallthrough(model, i)
        nxt_where: Where = (*here, "next") if step.next is not None else here
        if isinstance(step, WaitStep):
            es = [Edge("resume", nxt, nxt_where, "after wait")]
        elif isinstance(step, WaitForStep):
            wf = step.wait_for
            es = [
                Edge("matched", wf.on_event or nxt,
                     (*here, "wait_for", "on_event") if wf.on_event else nxt_where, wf.event),
                Edge("timeout", wf.on_timeout or nxt,
                     (*here, "wait_for", "on_timeout") if wf.on_timeout else nxt_where,
                     "timeout"),
            ]
        elif isinstance(step, BranchStep):
            es = []
            for j, case in enumerate(step.branch):
                if isinstance(case, BranchCase):
                    es.append(Edge(f"case_{j}", case.goto, (*here, "branch", j, "goto"),
                                   case_label(case.when, j)))
                elif isinstance(case, BranchElse):
                    es.append(Edge("else", case.else_, (*here, "branch", j, "else"), "else"))
        elif isinstance(step, SplitStep):
            es = [Edge(f"variant_{v.name}", v.goto, (*here, "split", "variants", j, "goto"),
                       variant_label(v.name, v.weight, step.split.holdout))
                  for j, v in enumerate(step.split.variants)]
            if step.split.holdout:
                es.append(Edge("holdout", EXITED, (*here, "split", "holdout"),
                               f"holdout {step.split.holdout:g}%"))
        elif isinstance(step, ExitStep):
            es = [Edge("exit_step", EXITED, here, step.exit)]
        else:
            es = [Edge("next", nxt, nxt_where)]
        out[step.id] = es
    return out


def variant_label(name: str, weight: float, holdout: float) -> str:
    """A split edge's share of everyone: the weights share those the holdout leaves, so
    with a 10% holdout a weight of 50 is 45% (`plain 45% (weight 50)`), and the edges
    of a split, holdout included, add up to 100%."""
    if not holdout:
        return f"{name} {weight:g}%"
    return f"{name} {round(weight * (100 - holdout) / 100, 2):g}% (weight {weight:g})"


def case_label(when: object, index: int) -> str:
    """A branch case's edge label: its condition in words (`profile.traits.vip = true`),
    cut to MAX_LABEL; `case N` when the condition does not parse (the linter says why)."""
    try:
        text = written(parse_condition(when))
    except (JourneymanError, ValueError, TypeError):
        return f"case {index + 1}"
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"
