"""Checks against what a journeys folder declares: the computed traits the engine
keeps, and — when the folder has a `traits.yaml` — its profile traits and the
properties of its events. A path that names nothing declared can never match (a
condition) or renders nothing (a template): each is a positioned problem with
"did you mean".

What is checked where:
- `profile.computed.<name>`, in conditions (journeys and lifecycle stages): a computed
  trait the engine keeps;
- `profile.traits.<name>`, in conditions and templates (files and inline strings): a
  trait of traits.yaml;
- `event.properties.<name>`, where `event` is the journey's entry event (its
  `entry.when`, its branch cases, its inline strings and the templates it sends) and
  traits.yaml declares that event: one of its properties.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

import jinja2

from journeys.computed import COMPUTED_TRAITS
from journeys.errors import Problem
from journeys.lint import inline_template_places, nested_strings
from journeys.loaded import Library, LoadedJourney
from journeys.model import Journey
from journeys.steps import BranchCase, BranchStep, SendStep
from journeys.template_shapes import (
    MAYBE,
    attribute_names,
    attribute_problems,
    path_problem,
    trait_hint,
    warning,
)
from journeys.templating import TemplateLibrary
from journeys.yamlsrc import Source, Where
from rules import did_you_mean

_PARSER = jinja2.Environment()  # parsing only


def condition_paths(raw: Any, where: Where) -> Iterator[tuple[str, Where]]:
    """Every `path: {operator: value}` key in a raw condition, with its location."""
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        if key in ("all", "any") and isinstance(value, list):
            for i, item in enumerate(value):
                yield from condition_paths(item, (*where, key, i))
        elif key == "not":
            yield from condition_paths(value, (*where, key))
        else:
            yield str(key), (*where, key)


def path_problems(raw: Any, where: Where, source: Source, known_traits: Collection[str] | None,
                  event: tuple[str, Collection[str]] | None = None) -> list[Problem]:
    """Paths of a raw condition that cannot match. `event` is (name, its declared
    properties) when the condition sees a declared event as `event`."""
    problems = []
    for path, at in condition_paths(raw, where):
        parts = path.split(".")
        unknown = path_problem(path)
        if unknown is not None:
            problems.append(source.problem(at, unknown, key=True))
            continue
        if len(parts) < 3:
            continue
        root, name = tuple(parts[:2]), parts[2]
        if root == ("profile", "computed") and name not in COMPUTED_TRAITS:
            problems.append(source.problem(at, f"unknown computed trait {path!r}"
                                           + did_you_mean(name, COMPUTED_TRAITS), key=True))
        elif (root == ("profile", "traits") and known_traits is not None
              and name not in known_traits):
            problems.append(source.problem(at, f"unknown trait {path!r} (not in traits.yaml)"
                                           + trait_hint(name, known_traits), key=True))
        elif root == ("event", "properties") and event is not None and name not in event[1]:
            problems.append(source.problem(at, _property_message(path, event), key=True))
    return problems


def _property_message(path: str, event: tuple[str, Collection[str]]) -> str:
    name = path.split(".")[2]
    return (f"unknown property {path!r}: traits.yaml declares {event[0]!r} with "
            + (", ".join(sorted(event[1])) or "no properties") + did_you_mean(name, event[1]))


def condition_places(model: Journey) -> Iterator[tuple[Where, Any]]:
    """Every place in a journey that holds a condition, with its location."""
    # A `when` written as null is yielded (None) for the loader to refuse; one left out is not.
    entry = model.entry
    if entry.when is not None or "when" in entry.model_fields_set:
        yield ("entry", "when"), entry.when
    if entry.segment is not None:
        yield ("entry", "segment", "when"), entry.segment.when
    for i, item in enumerate(model.exit_when):
        if item.when is not None or "when" in item.model_fields_set:
            yield ("exit_when", i, "when"), item.when
    if model.goal is not None and (model.goal.when is not None
                                   or "when" in model.goal.model_fields_set):
        yield ("goal", "when"), model.goal.when
    for i, step in enumerate(model.steps):
        wait_for = getattr(step, "wait_for", None)
        if wait_for is not None and (wait_for.when is not None
                                     or "when" in wait_for.model_fields_set):
            yield ("steps", i, "wait_for", "when"), wait_for.when
        for j, case in enumerate(getattr(step, "branch", None) or []):
            when = getattr(case, "when", None)
            if when is not None:
                yield ("steps", i, "branch", j, "when"), when


def journey_problems(loaded: LoadedJourney, known_traits: Collection[str] | None,
                     known_events: Mapping[str, Collection[str]] | None,
                     templates: TemplateLibrary | None) -> list[Problem]:
    """Everything in one journey that names an undeclared trait or property."""
    model, source = loaded.model, loaded.source
    entry_event = _entry_event(model, known_events)
    sees_entry = {("entry", "when")} | {
        ("steps", i, "branch", j, "when") for i, step in enumerate(model.steps)
        if isinstance(step, BranchStep)
        for j, case in enumerate(step.branch) if isinstance(case, BranchCase)}
    problems = [p for where, raw in condition_places(model)
                for p in path_problems(raw, where, source, known_traits,
                                       entry_event if where in sees_entry else None)]
    for where, text in nested_strings(inline_template_places(loaded)):
        problems += _template_text(text, source, where, known_traits, entry_event)
    problems += _sent(loaded, entry_event, templates)
    return sorted(set(problems))


def journey_warnings(loaded: LoadedJourney, known_traits: Collection[str] | None,
                     known_events: Mapping[str, Collection[str]] | None,
                     templates: TemplateLibrary | None) -> list[Problem]:
    """What `journey_problems` and the linter would say of a journey's inline strings and
    of the properties its templates read, for the reads a fallback guards (`| default`,
    `is defined`: journeys/template_fallbacks.py): they render, so each is a warning."""
    source = loaded.source
    entry_event = _entry_event(loaded.model, known_events)
    warnings = []
    for where, text in nested_strings(inline_template_places(loaded)):
        if "{" in text:
            warnings += [source.problem(where, message) for _, _, message in
                         attribute_problems(text, _PARSER, guarded=True)]
        warnings += _template_text(text, source, where, known_traits, entry_event,
                                   guarded=True)
    warnings += _sent(loaded, entry_event, templates, guarded=True)
    return sorted(set(warnings))


def _entry_event(model: Journey, known_events: Mapping[str, Collection[str]] | None,
                 ) -> tuple[str, Collection[str]] | None:
    """(name, declared properties) of the journey's entry event, if traits.yaml declares it."""
    name = model.entry.event
    if model.entry.kind == "event" and known_events and name is not None and name in known_events:
        return name, known_events[name]
    return None


def _sent(loaded: LoadedJourney, entry_event: tuple[str, Collection[str]] | None,
          templates: TemplateLibrary | None, *, guarded: bool = False) -> list[Problem]:
    """The undeclared properties of the entry event the templates of its sends read."""
    if entry_event is None or templates is None:
        return []
    problems = []
    for i, step in enumerate(loaded.model.steps):
        if isinstance(step, SendStep):
            for text in templates.texts.get(step.send.template, []):
                problems += [
                    loaded.source.problem(("steps", i, "send", "template"), _maybe(
                        f"template {step.send.template!r} reads "
                        + _property_message(f"event.properties.{name}", entry_event), guarded))
                    for name in _names(text, ("event", "properties"), guarded)
                    if name not in entry_event[1]]
    return problems


def _maybe(message: str, guarded: bool) -> str:
    return warning(message, MAYBE) if guarded else message


def _template_text(text: str, source: Source, where: Where,
                   known_traits: Collection[str] | None,
                   entry_event: tuple[str, Collection[str]] | None, *,
                   guarded: bool = False) -> list[Problem]:
    problems = []
    if known_traits is not None:
        problems += [source.problem(where, _maybe(
            f"unknown trait 'profile.traits.{name}' in template (not in traits.yaml)"
            + trait_hint(name, known_traits), guarded))
            for name in _names(text, ("profile", "traits"), guarded) if name not in known_traits]
    if entry_event is not None:
        problems += [source.problem(where, _maybe(
            _property_message(f"event.properties.{name}", entry_event), guarded))
            for name in _names(text, ("event", "properties"), guarded)
            if name not in entry_event[1]]
    return problems


def _names(text: str, base: tuple[str, str], guarded: bool = False) -> list[str]:
    if "{" not in text:
        return []
    try:
        return attribute_names(text, base, guarded=guarded)
    except jinja2.TemplateSyntaxError:
        return []  # reported by the linter



def library_warnings(library: Library) -> list[Problem]:
    """The guarded reads of unknown attributes, traits and properties in a loaded
    library: its templates' (`TemplateLibrary.check`) and its journeys' inline strings'."""
    return sorted(set(library.templates.warnings) | {
        w for loaded in library.journeys.values()
        for w in journey_warnings(loaded, library.known_traits, library.known_events,
                                  library.templates)})
