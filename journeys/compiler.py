"""Compile a loaded journey into what the engine runs.

(a) One `transitions` state machine per journey version, built once and shared by every
    enrollment (`Machine(model=None)`; the engine drives plain rows through it — see
    design.md: `add_model` per enrollment costs ~13 µs and ~13 KB each).
(b) Two rulesets for `rules/`: `events` (entry, exit_when, goal, wait_for — matched
    against the incoming event) and `branches` (branch cases — matched against the
    enrolling event, when the branch step runs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from journeys.graph import COMPLETED, EXITED, START, Edge, edges
from journeys.loaded import Library, LoadedJourney
from journeys.machine import JourneyMachine
from journeys.model import Journey, Policy
from journeys.steps import AnyStep, BranchCase, BranchStep, WaitForStep, kind_of
from journeys.templating import TemplateLibrary
from rules import TRUE, AllOf, Compare, Condition, Matcher, compile_ruleset

ENTRY = "entry"
GOAL = "goal"


def exit_rule(index: int) -> str:
    return f"exit_when:{index}"


def wait_for_rule(step_id: str) -> str:
    return f"wait_for:{step_id}"


def branch_rule(step_id: str, case: int) -> str:
    return f"branch:{step_id}:{case}"


@dataclass(frozen=True)
class CompiledJourney:
    loaded: LoadedJourney
    machine: JourneyMachine
    events: Matcher
    branches: Matcher
    edges: Mapping[str, list[Edge]]
    steps: Mapping[str, AnyStep]
    templates: TemplateLibrary
    policy: Policy
    exit_rules: tuple[str, ...] = field(default=())
    # The event names this journey's event rules can match; None when some rule can
    # match any event (a condition on the profile alone). The runtime skips matching the
    # journey against other events: most events concern a few journeys of many.
    interest: frozenset[str] | None = None

    @property
    def model(self) -> Journey:
        return self.loaded.model

    # Read ~18 times an event (matching, enrolling, advancing, every decision): kept in
    # the instance once read, not looked up through the model on every read
    @cached_property
    def id(self) -> str:
        return self.loaded.model.journey

    @cached_property
    def version(self) -> int:
        return self.loaded.model.version

    @property
    def first_step(self) -> str:
        return self.loaded.model.steps[0].id

    def target(self, step_id: str, trigger: str) -> str:
        return next(e.target for e in self.edges[step_id] if e.trigger == trigger)


def _event_is(name: str) -> Compare:
    return Compare(("event", "event"), "eq", name)


def _and(*items: Condition | None) -> Condition:
    real = tuple(i for i in items if i is not None)
    if not real:
        return TRUE
    return real[0] if len(real) == 1 else AllOf(real)


def _state_is(step_id: str) -> Compare:
    return Compare(("enrollment", "state"), "eq", step_id)


def event_rules(loaded: LoadedJourney) -> dict[str, Condition]:
    model, cond = loaded.model, loaded.conditions
    rules: dict[str, Condition] = {}
    entry = model.entry
    if entry.kind == "event":
        assert entry.event is not None
        rules[ENTRY] = _and(_event_is(entry.event), cond.get(("entry", "when")))
    elif entry.kind == "segment":
        rules[ENTRY] = cond[("entry", "segment", "when")]
    else:
        rules[ENTRY] = cond.get(("entry", "when")) or TRUE
    for i, item in enumerate(model.exit_when):
        rules[exit_rule(i)] = _and(_event_is(item.event) if item.event else None,
                                   cond.get(("exit_when", i, "when")))
    if model.goal is not None:
        rules[GOAL] = _and(_event_is(model.goal.event) if model.goal.event else None,
                           cond.get(("goal", "when")))
    for i, step in enumerate(model.steps):
        if isinstance(step, WaitForStep):
            rules[wait_for_rule(step.id)] = _and(
                _state_is(step.id), _event_is(step.wait_for.event),
                cond.get(("steps", i, "wait_for", "when")))
    return rules


def _required_event(condition: Condition) -> str | None:
    """The event name `condition` requires (an `event.event == NAME` it cannot match
    without), or None."""
    if isinstance(condition, Compare):
        if condition.path == ("event", "event") and condition.op == "eq":
            return str(condition.value)
        return None
    if isinstance(condition, AllOf):
        return next((name for name in map(_required_event, condition.items) if name), None)
    return None


def interest(rules: Mapping[str, Condition], entry_kind: str) -> frozenset[str] | None:
    """The event names any of `rules` can match, or None when one of them can match any
    event. A schedule entry is never matched against events (its cron timers enter)."""
    names: set[str] = set()
    for rule_id, condition in rules.items():
        if rule_id == ENTRY and entry_kind == "schedule":
            continue
        name = _required_event(condition)
        if name is None:
            return None
        names.add(name)
    return frozenset(names)


def branch_rules(loaded: LoadedJourney) -> dict[str, Condition]:
    rules: dict[str, Condition] = {}
    for i, step in enumerate(loaded.model.steps):
        if isinstance(step, BranchStep):
            for j, case in enumerate(step.branch):
                if isinstance(case, BranchCase):
                    rules[branch_rule(step.id, j)] = loaded.conditions[("steps", i, "branch", j,
                                                                        "when")]
    return rules


def build_machine(model: Journey, graph: Mapping[str, list[Edge]]) -> JourneyMachine:
    step_ids = list(graph)
    transitions: list[dict[str, Any]] = [{"trigger": "enter", "source": START,
                                          "dest": model.steps[0].id}]
    for source, out in graph.items():
        transitions += [{"trigger": e.trigger, "source": source, "dest": e.target} for e in out]
        transitions.append({"trigger": "exit", "source": source, "dest": EXITED})
    return JourneyMachine(
        model=None,
        states=[START, *step_ids, COMPLETED, EXITED],
        transitions=transitions,
        initial=START,
        auto_transitions=False,
        send_event=False,
    )


def compile_journey(loaded: LoadedJourney, *, templates: TemplateLibrary | None = None,
                    policy: Policy | None = None, backend: str = "durable") -> CompiledJourney:
    model = loaded.model
    graph = edges(model)
    name = f"{model.journey}@v{model.version}"
    ev = event_rules(loaded)
    return CompiledJourney(
        loaded=loaded,
        machine=build_machine(model, graph),
        events=compile_ruleset(ev, backend=backend, name=f"{name}:events"),
        branches=compile_ruleset(branch_rules(loaded), backend=backend, name=f"{name}:branches"),
        edges=graph,
        steps={s.id: s for s in reversed(model.steps)},
        templates=templates or TemplateLibrary(None),
        policy=policy or Policy(),
        exit_rules=tuple(r for r in ev if r.startswith("exit_when:")),
        interest=interest(ev, model.entry.kind),
    )


def compile_library(library: Library, *, backend: str = "durable") -> dict[str, CompiledJourney]:
    return {jid: compile_journey(loaded, templates=library.templates, policy=library.policy,
                                 backend=backend)
            for jid, loaded in library.journeys.items()}


def mermaid(compiled: CompiledJourney | Journey) -> str:
    """The journey as a Mermaid `stateDiagram-v2` (paste into Markdown, or render to SVG)."""
    model = compiled.model if isinstance(compiled, CompiledJourney) else compiled
    graph = compiled.edges if isinstance(compiled, CompiledJourney) else edges(model)
    lines = ["stateDiagram-v2", f"    %% {model.title} (v{model.version})"]
    for step in model.steps:
        lines.append(f'    state "{_describe(step)}" as {step.id}')
    entry = model.entry
    trigger = (entry.event if entry.kind == "event" else
               "segment" if entry.kind == "segment" else f"cron {entry.schedule}")
    lines.append(f"    [*] --> {model.steps[0].id}: {trigger}")
    for source, out in graph.items():
        for e in out:
            dest = "[*]" if e.target in (COMPLETED, EXITED) else e.target
            label = e.label or ("" if e.trigger == "next" else e.trigger)
            lines.append(f"    {source} --> {dest}" + (f": {_esc(label)}" if label else ""))
    if model.exit_when:
        names = ", ".join(item.event or "condition" for item in model.exit_when)
        lines.append(f"    note right of {model.steps[0].id}: exits on {_esc(names)}")
    return "\n".join(lines) + "\n"


# What Mermaid would read as its own syntax in a label, as its entity codes (`#` first:
# the codes start with it); a line break would end the statement.
_MERMAID_CODES = {"#": "#35;", ":": "#58;", '"': "#34;", "<": "#60;", ">": "#62;",
                  "|": "#124;", "[": "#91;", "]": "#93;", "{": "#123;", "}": "#125;",
                  ";": "#59;", "\n": " ", "\r": " "}
_MERMAID_SPECIAL = re.compile("[" + re.escape("".join(_MERMAID_CODES)) + "]")


def _esc(text: str) -> str:
    """A label as Mermaid text: its special characters as entity codes."""
    return _MERMAID_SPECIAL.sub(lambda m: _MERMAID_CODES[m.group()], text)


def _describe(step: AnyStep) -> str:
    kind = kind_of(step)
    detail = ""
    spec = getattr(step, kind)
    if kind == "wait":
        detail = (f"until {spec.until}" if hasattr(spec, "until") else _fmt_td(spec))
    elif kind == "wait_for":
        detail = f"{spec.event} ≤ {_fmt_td(spec.timeout)}"
    elif kind == "send":
        detail = f"{spec.channel} {spec.template}"
    elif kind == "emit":
        detail = spec.event
    elif kind == "exit":
        detail = spec
    text = f"{step.id} — {kind}" + (f" {detail}" if detail else "")
    return _esc(text)


def _fmt_td(td: Any) -> str:
    secs = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0 and secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"
