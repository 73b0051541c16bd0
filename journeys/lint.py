"""Semantic checks the shape models cannot make: references, reachability, loops,
templates, weights, schedules and time zones. Every finding carries a position.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from journeys.errors import Problem
from journeys.graph import TERMINALS, edges
from journeys.loaded import LoadedJourney
from journeys.steps import (
    BranchCase,
    BranchElse,
    BranchStep,
    EmitStep,
    SendStep,
    SetDataStep,
    SplitStep,
    UpdateProfileStep,
    WaitStep,
    WaitUntil,
)
from journeys.template_shapes import attribute_problems
from journeys.templating import CHANNEL_KINDS, SCOPE, TemplateLibrary, undeclared
from rules import did_you_mean

PATH_ROOTS = ("event.", "trigger.", "profile.", "enrollment.")
_PARSER = jinja2.Environment()  # parsing only: the attributes an inline string reads


def lint(loaded: LoadedJourney, templates: TemplateLibrary | None) -> list[Problem]:
    """Semantic problems of a shape-valid journey (templates are checked when given)."""
    problems = [p for check in (_entry, _ids, _references, _branches, _splits, _waits,
                                _exits_and_goal, _migrate) for p in check(loaded)]
    ids = [s.id for s in loaded.model.steps]
    if len(set(ids)) == len(ids):  # the graph is ambiguous with duplicate ids
        problems += _reachability(loaded) + _loops(loaded)
    problems += _sends(loaded, templates)
    problems += _inline_templates(loaded)
    return problems


def _entry(loaded: LoadedJourney) -> list[Problem]:
    entry, src = loaded.model.entry, loaded.source
    kinds = [k for k in ("event", "segment", "schedule") if getattr(entry, k) is not None]
    if len(kinds) != 1:
        return [src.problem(("entry",), "entry needs exactly one of 'event', 'segment' or "
                            f"'schedule' (found {len(kinds)}: {', '.join(kinds) or 'none'})")]
    if entry.schedule is not None:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(entry.schedule, timezone="UTC")
        except ValueError as exc:
            return [src.problem(("entry", "schedule"), f"bad cron expression "
                                f"{entry.schedule!r}: {exc} (use 5 fields, like \"0 9 * * *\")")]
    return []


def _migrate(loaded: LoadedJourney) -> list[Problem]:
    """What a migration map can be checked for alone (its old steps are checked against
    the deployed version by `journeyman plan`)."""
    model, src = loaded.model, loaded.source
    if model.migrate is None:
        return []
    problems = []
    if model.migrate.from_version >= model.version:
        problems.append(src.problem(("migrate", "from_version"), (
            f"migrate.from_version {model.migrate.from_version} must be lower than this "
            f"journey's version {model.version}")))
    ids = [s.id for s in model.steps]
    for old, new in model.migrate.steps.items():
        if new not in ids:
            problems.append(src.problem(("migrate", "steps", old), (
                f"migrate: step {old!r} moves to {new!r}, which is not a step of this "
                "version" + did_you_mean(new, ids))))
    return problems


def _ids(loaded: LoadedJourney) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if step.id in seen:
            problems.append(loaded.source.problem(("steps", i, "id"),
                                                  f"duplicate step id {step.id!r}"))
        if step.id in TERMINALS or not re.fullmatch(r"[A-Za-z0-9_-]+", step.id):
            problems.append(loaded.source.problem(("steps", i, "id"), f"bad step id {step.id!r}: "
                                                  "use letters, digits, _ and -"))
        seen.add(step.id)
    return problems


def _references(loaded: LoadedJourney) -> list[Problem]:
    ids = {s.id for s in loaded.model.steps}
    problems = []
    for es in edges(loaded.model).values():
        for e in es:
            if e.target not in ids and e.target not in TERMINALS:
                problems.append(loaded.source.problem(
                    e.where, f"step {e.target!r} does not exist" + did_you_mean(e.target, ids)))
    return problems


def _branches(loaded: LoadedJourney) -> list[Problem]:
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if not isinstance(step, BranchStep):
            continue
        elses = [j for j, c in enumerate(step.branch) if isinstance(c, BranchElse)]
        last = len(step.branch) - 1
        if not elses or elses[-1] != last:
            problems.append(loaded.source.problem(("steps", i, "branch", last),
                                                  "a branch must end with {else: <step>}"))
        problems.extend(
            loaded.source.problem(("steps", i, "branch", j), "'else' must be the last item")
            for j in elses if j != last)
        if not any(isinstance(c, BranchCase) for c in step.branch):
            problems.append(loaded.source.problem(("steps", i, "branch"),
                                                  "a branch needs at least one {when, goto}"))
    return problems


def _splits(loaded: LoadedJourney) -> list[Problem]:
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if not isinstance(step, SplitStep):
            continue
        total = sum(v.weight for v in step.split.variants)
        if abs(total - 100) > 1e-9:
            problems.append(loaded.source.problem(
                ("steps", i, "split", "variants"),
                f"split weights must sum to 100, these sum to {total:g}"
                + (f" (the holdout is not one of them: {step.split.holdout:g}% of people exit "
                   "first, and the weights share the others)" if step.split.holdout else "")))
        names = [v.name for v in step.split.variants]
        for j, name in enumerate(names):
            if name in names[:j]:
                problems.append(loaded.source.problem(("steps", i, "split", "variants", j, "name"),
                                                      f"duplicate variant name {name!r}"))
    return problems


def _reachability(loaded: LoadedJourney) -> list[Problem]:
    graph = edges(loaded.model)
    first = loaded.model.steps[0].id
    seen, todo = {first}, [first]
    while todo:
        for e in graph.get(todo.pop(), []):
            if e.target not in seen:
                seen.add(e.target)
                todo.append(e.target)
    ids = [step.id for step in loaded.model.steps]
    # a goto/next to a misspelled step: the step it meant is unreachable because of it
    missing = sorted({e.target for src in seen for e in graph.get(src, [])
                      if e.target not in ids and e.target not in TERMINALS})
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if step.id not in seen:
            meant = [t for t in missing if did_you_mean(t, ids) == f" (did you mean {step.id!r}?)"]
            problems.append(loaded.source.problem(
                ("steps", i, "id"), f"step {step.id!r} is unreachable: no step leads to it"
                + (f" (is {' or '.join(map(repr, meant))}, which does not exist, a "
                   "misspelling of it?)" if meant else "")))
    return problems


def _loops(loaded: LoadedJourney) -> list[Problem]:
    """A cycle made only of instant steps would spin forever: each loop needs a wait.
    One loop is reported per strongly connected group of instant steps; the walks are
    iterative (a journey of thousands of steps would overflow Python's stack)."""
    model = loaded.model
    graph = edges(model)
    waiting = {s.id for s in model.steps if isinstance(s, WaitStep) or hasattr(s, "wait_for")}
    index = {s.id: i for i, s in reversed(list(enumerate(model.steps)))}
    instant = {node: [e.target for e in graph.get(node, [])
                      if e.target not in TERMINALS and e.target not in waiting
                      and e.target in graph]
               for node in graph if node not in waiting}
    problems = []
    for group in _strongly_connected(instant):
        members = set(group)
        start = group[0]
        if len(group) == 1 and start not in instant[start]:
            continue  # one step that does not lead to itself: no loop
        cycle = _cycle_through(start, instant, members)
        problems.append(loaded.source.problem(
            ("steps", index[start], "id"),
            "loop with no wait: " + " -> ".join(cycle)
            + " (add a wait or wait_for inside the loop)"))
    return problems


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively; each component's nodes in
    the graph's order, the components in the order of their first node."""
    order = {node: i for i, node in enumerate(graph)}
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in graph:
        if root in number:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, at = work.pop()
            if at == 0:
                number[node] = low[node] = len(number)
                stack.append(node)
                on_stack.add(node)
            targets = graph[node]
            if at < len(targets):
                work.append((node, at + 1))
                target = targets[at]
                if target not in number:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], number[target])
                continue
            if low[node] == number[node]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(sorted(group, key=order.__getitem__))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return sorted(groups, key=lambda g: order[g[0]])


def _cycle_through(start: str, graph: dict[str, list[str]], members: set[str]) -> list[str]:
    """The shortest path from `start` back to itself inside its component."""
    came_from: dict[str, str] = {}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for target in graph[node]:
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if target in members and target not in came_from:
                came_from[target] = node
                todo.append(target)
    return [start, start]  # unreachable: `start` is on a cycle of its component


def _waits(loaded: LoadedJourney) -> list[Problem]:
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if not isinstance(step, WaitStep):
            continue
        spec = step.wait
        if isinstance(spec, WaitUntil):
            where = ("steps", i, "wait")
            until: str = spec.until
            if spec.is_local_time:
                if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", until):
                    problems.append(loaded.source.problem(
                        (*where, "until"), f"bad time {until!r}: use 24-hour HH:MM, like 09:00"))
            elif not until.startswith(PATH_ROOTS):
                problems.append(loaded.source.problem(
                    (*where, "until"), f"'until' must be a local time like \"09:00\" or a path to "
                    f"a timestamp (event., profile., enrollment.), not {until!r}"))
            tz = spec.tz
            if tz not in (None, "profile"):
                try:
                    ZoneInfo(tz)
                except (ZoneInfoNotFoundError, ValueError):
                    problems.append(loaded.source.problem(
                        (*where, "tz"), f"unknown time zone {tz!r}: use 'profile' or an IANA "
                        "name like Europe/Madrid"))
    return problems


def _exits_and_goal(loaded: LoadedJourney) -> list[Problem]:
    model, src = loaded.model, loaded.source
    problems = [src.problem(("exit_when", i), "an exit_when item needs 'event' or 'when'")
                for i, item in enumerate(model.exit_when)
                if item.event is None and item.when is None]
    if model.goal is not None and model.goal.event is None and model.goal.when is None:
        problems.append(src.problem(("goal",), "a goal needs 'event' or 'when'"))
    return problems


def _sends(loaded: LoadedJourney, templates: TemplateLibrary | None) -> list[Problem]:
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if not isinstance(step, SendStep):
            continue
        send = step.send
        where = ("steps", i, "send")
        if send.channel not in CHANNEL_KINDS:
            problems.append(loaded.source.problem(
                (*where, "channel"), f"unknown channel {send.channel!r}"
                + did_you_mean(send.channel, CHANNEL_KINDS)))
        if templates is None:
            continue
        tpl = templates.templates.get(send.template)
        folder = templates.folder
        if tpl is None and folder is not None and (folder / f"{send.template}.yaml").is_file():
            problems.append(loaded.source.problem(  # its own problems are listed with its file
                (*where, "template"), f"template {send.template!r} cannot be used: "
                f"templates/{send.template}.yaml has problems (listed for that file)"))
        elif tpl is None:  # said beside an unknown channel too: one run shows both
            problems.append(loaded.source.problem(
                (*where, "template"), f"template {send.template!r} does not exist (looked for "
                f"templates/{send.template}.yaml)" + did_you_mean(send.template,
                                                                  templates.templates)))
        elif send.channel in CHANNEL_KINDS and tpl.channel != send.channel:
            problems.append(loaded.source.problem(
                (*where, "template"), f"template {send.template!r} is for channel "
                f"{tpl.channel!r}, this step sends by {send.channel!r}"))
    return problems


def inline_template_places(loaded: LoadedJourney) -> list[tuple[tuple[str | int, ...], object]]:
    """Where a journey holds Jinja2 strings: send.to, emit, update_profile and set_data."""
    places: list[tuple[tuple[str | int, ...], object]] = []
    for i, step in enumerate(loaded.model.steps):
        here = ("steps", i)
        if isinstance(step, SendStep) and step.send.to:
            places.append(((*here, "send", "to"), step.send.to))
        elif isinstance(step, EmitStep):
            if step.emit.to:
                places.append(((*here, "emit", "to"), step.emit.to))
            places += [((*here, "emit", "properties", k), v)
                       for k, v in step.emit.properties.items()]
        elif isinstance(step, UpdateProfileStep):
            places += [((*here, "update_profile", "set", k), v)
                       for k, v in step.update_profile.set.items()]
        elif isinstance(step, SetDataStep):
            places += [((*here, "set_data", k), v) for k, v in step.set_data.items()]
    return places


def nested_strings(places: list[tuple[tuple[str | int, ...], object]],
                   ) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string of `places`, those nested in dicts and lists too (the runner renders
    each: journeys/templating.py `render_value`), each at its own place."""
    todo = list(reversed(places))
    while todo:
        where, value = todo.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            todo.extend(reversed([((*where, k), v) for k, v in value.items()]))
        elif isinstance(value, list):
            todo.extend(reversed([((*where, i), v) for i, v in enumerate(value)]))


def _inline_templates(loaded: LoadedJourney) -> list[Problem]:
    """Jinja2 strings in send.to, emit and update_profile/set_data values."""
    problems = []
    for where, value in nested_strings(inline_template_places(loaded)):
        if "{" not in value:
            continue
        try:
            names = undeclared(value)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(loaded.source.problem(where, f"template syntax error: {exc.message}"))
            continue
        problems.extend(loaded.source.problem(where, f"unknown variable {n!r} in template; in "
                                              "scope: " + ", ".join(sorted(SCOPE)))
                        for n in sorted(names - SCOPE))
        problems.extend(loaded.source.problem(where, message)
                        for _, _, message in attribute_problems(value, _PARSER))
    return problems
