"""Attributes a template reads that the render context never has.

What a template sees is fixed (engine/core/steps/base.py `StepRun.context`):
`profile` is `{id, traits, computed}`, `journey` is `{id, version, name}`,
`enrollment` is `{id, state, status, data, entered_at, variants}`, and
`profile.computed` holds the computed traits of journeys/computed.py. A template that
reads anything else renders nothing (a `| default(...)` after a further read cannot
rescue it: `profile.trait` is read on to `.first_name`):

    {{ profile.trait.first_name | default('there') }}   -> 'profile.trait' (traits?)
    {{ journey.title }}                                 -> 'journey.title' (name?)
    {{ profile.computed.order_count }}                  -> (orders_count?)

Without this check `journeyman validate` passed such a template, and every send of it
was skipped as `template_error` at run time: a whole A/B variant silently got nothing.
`event` and `trigger` have the keys of an event (`EVENT_KEYS`): `event.property.name` and
`event.price` (for `event.properties.price`) are errors too.

A read that a fallback guards (`{{ journey.title | default('News') }}`, `{% if
journey.title is defined %}`: journeys/template_fallbacks.py) renders, always with its
fallback: it is a warning (`guarded=True`), printed by validate, which still passes. So
are the guarded reads of an undeclared trait or property (`trait_problems`,
journeys/declared.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes

from journeys import template_places as places
from journeys.computed import COMPUTED_TRAITS
from journeys.errors import Problem
from journeys.template_fallbacks import guarded_reads
from rules import did_you_mean

# An event as the engine hands it on (engine/runtime/events.py `normalize`; the
# synthetic entry events, `emit` and tracking events have no other keys): what the
# sender sent is under `properties` (`event.price` is `event.properties.price`).
EVENT_KEYS = ("type", "event", "userId", "anonymousId", "previousId", "properties", "traits",
              "timestamp", "messageId", "context")
SHAPES: dict[str, tuple[str, ...]] = {
    "profile": ("id", "traits", "computed"),
    "journey": ("id", "version", "name"),
    "enrollment": ("id", "state", "status", "data", "entered_at", "variants"),
    "event": EVENT_KEYS,
    "trigger": EVENT_KEYS,
}
DICT_METHODS = frozenset({"get", "items", "keys", "values"})  # {{ profile.get('id') }}
_PARSER = jinja2.Environment()  # parsing only


def parse(text: str, env: jinja2.Environment) -> nodes.Template:
    """`text` parsed by `env` (raises TemplateSyntaxError): once for the several checks
    that read each part (errors, then warnings; attributes, traits, properties), when
    `env` parses as plain Jinja2 does (every environment here: no extension, the
    default syntax); the tree is only read."""
    if env.extensions or env.block_start_string != "{%" or env.variable_start_string != "{{":
        return env.parse(text)
    return _parsed(text)


@lru_cache(maxsize=2048)
def _parsed(text: str) -> nodes.Template:
    return _PARSER.parse(text)


def unknown_attributes(parsed: nodes.Template, *, guarded: bool = False,
                       bound: frozenset[str] = frozenset(),
                       ) -> Iterator[tuple[str, str, int]]:
    """(the path as written, the message, the line of the text) of each attribute of a
    known shape that no context has, once per path, in order: those read unguarded
    (errors), or with `guarded` those read only where a fallback guards them (warnings:
    journeys/template_fallbacks.py)."""
    found = [(judged, node.lineno, safe) for node, safe in guarded_or_not(parsed, bound)
             if (judged := _judge(node)) is not None]
    for (path, message), line in _split(found, guarded):
        yield path, message, line


def guarded_or_not(parsed: nodes.Template, bound: frozenset[str] = frozenset(),
                   ) -> Iterator[tuple[nodes.Getattr | nodes.Getitem, bool]]:
    """`context_reads`, each with whether a fallback guards it."""
    safe = guarded_reads(parsed)
    for node in context_reads(parsed, bound):
        yield node, id(node) in safe


def _split(found: Sequence[tuple[tuple[str, str], int, bool]], guarded: bool,
           ) -> list[tuple[tuple[str, str], int]]:
    """Of (key, line, guarded) reads, the first of each key read unguarded, or with
    `guarded` the first of each key read only guarded."""
    bare = {key[0] for key, _, safe in found if not safe}
    seen: set[str] = set()
    chosen = []
    for key, line, safe in found:
        if safe == guarded and key[0] not in seen and (not guarded or key[0] not in bare):
            seen.add(key[0])
            chosen.append((key, line))
    return chosen


GUARDED = ("; it is read with a fallback (`default`, `is defined`), so the template "
           "renders, always with the fallback: the context never has it")


def warning(message: str, why: str = GUARDED) -> str:
    """The warning said for a guarded read whose error would be `message`."""
    return f"warning: {message}{why}"


# What gives a template variables of its own, in scopes Jinja2 ends with the tag: a
# `{% for %}`'s targets, a macro's or a `{% call %}`'s arguments, `{% with %}`'s
# names; a `{% block %}` keeps the `{% set %}` inside it to itself.
_SCOPES = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.With, nodes.Block)


def context_reads(parsed: nodes.Template, bound: frozenset[str] = frozenset(),
                  ) -> Iterator[nodes.Getattr | nodes.Getitem]:
    """Each attribute read (`a.b`, `a['b']`) in order, but those of a variable the
    template made itself under a context's name: `{% for event in
    profile.traits.upcoming_events %}{{ event.title }}` reads the loop's `event`, not the
    entry event. A `{% set %}` (or an import) counts for the whole scope it is in, before
    it too, which may let a read of the context's name go unchecked, never flag the
    template's own. `bound`: the names the template is given besides the context's (an
    included file's: those of the template that includes it, where it does)."""
    for node, names in scoped(parsed, bound):
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            root = node.node
            while isinstance(root, nodes.Getattr | nodes.Getitem):
                root = root.node
            if not (isinstance(root, nodes.Name) and root.name in names):
                yield node


def scoped(parsed: nodes.Template, bound: frozenset[str] = frozenset(),
           ) -> Iterator[tuple[nodes.Node, frozenset[str]]]:
    """Every node of `parsed`, in order, with the names the template itself gives where
    it stands (and `bound`)."""
    yield from _body(parsed.body, bound)


def _body(statements: list[nodes.Node], bound: frozenset[str],
          ) -> Iterator[tuple[nodes.Node, frozenset[str]]]:
    bound = bound | _assigned(statements)
    for statement in statements:
        yield from _visit(statement, bound)


def _visit(node: nodes.Node, bound: frozenset[str],
           ) -> Iterator[tuple[nodes.Node, frozenset[str]]]:
    yield node, bound
    if isinstance(node, nodes.For):
        inner = bound | _stored(node.target)
        yield from _visit(node.iter, bound)
        if node.test is not None:
            yield from _visit(node.test, inner)
        yield from _body(node.body, inner)
        yield from _body(node.else_, bound)
    elif isinstance(node, nodes.Macro | nodes.CallBlock):
        if isinstance(node, nodes.CallBlock):
            yield from _visit(node.call, bound)
        for default in node.defaults:
            yield from _visit(default, bound)
        yield from _body(node.body, bound | {arg.name for arg in node.args})
    elif isinstance(node, nodes.With):
        for value in node.values:
            yield from _visit(value, bound)
        yield from _body(node.body, bound.union(*map(_stored, node.targets)))
    elif isinstance(node, nodes.Block):
        yield from _body(node.body, bound)
    else:
        for child in node.iter_child_nodes():
            yield from _visit(child, bound)


def _stored(target: nodes.Node) -> frozenset[str]:
    names = [target, *target.find_all(nodes.Name)]
    return frozenset(n.name for n in names if isinstance(n, nodes.Name))


def _assigned(statements: list[nodes.Node]) -> frozenset[str]:
    """The names `{% set %}`, `{% import %}`, `{% from ... import %}` and `{% macro %}`
    give in the scope of `statements` (inside an `{% if %}` too, which has none)."""
    names: set[str] = set()
    todo = list(statements)
    while todo:
        node = todo.pop()
        if isinstance(node, nodes.Assign | nodes.AssignBlock):
            names |= _stored(node.target)
        elif isinstance(node, nodes.Import):
            names.add(node.target)
        elif isinstance(node, nodes.FromImport):
            names.update(n[1] if isinstance(n, tuple) else n for n in node.names)
        elif isinstance(node, nodes.Macro):
            names.add(node.name)
        if not isinstance(node, _SCOPES):
            todo.extend(node.iter_child_nodes())
    return frozenset(names)


def _name(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _judge(node: nodes.Getattr | nodes.Getitem) -> tuple[str, str] | None:
    name, inner = _name(node), node.node
    if name is None or name.startswith("_"):  # `__class__`: the sandbox's to refuse
        return None
    if isinstance(inner, nodes.Name) and inner.name in SHAPES:
        has = SHAPES[inner.name]
        if name in has or name in DICT_METHODS:
            return None
        path = f"{inner.name}.{name}"
        return path, (f"unknown attribute {path!r} in template" + _has(inner.name, name))
    if (isinstance(inner, nodes.Getattr) and inner.attr == "computed"
            and isinstance(inner.node, nodes.Name) and inner.node.name == "profile"
            and name not in COMPUTED_TRAITS and name not in DICT_METHODS):
        path = f"profile.computed.{name}"
        return path, (f"unknown computed trait {path!r} in template"
                      + did_you_mean(name, COMPUTED_TRAITS))
    return None


def pattern(path: str) -> str:
    """A pattern for `path` as written, in dotted or `['...']` spelling."""
    *head, last = path.split(".")
    base = r"\.".join(re.escape(p) for p in head)
    quoted = re.escape(last)
    return rf"(?<![\w.]){base}(?:\.{quoted}\b|\[\s*['\"]{quoted}['\"]\s*\])"


def attribute_problems(text: str, env: jinja2.Environment, *, guarded: bool = False,
                       ) -> list[tuple[str, int, str]]:
    """(pattern, line of `text`, message) for each unknown attribute `text` reads (with
    `guarded`, the warnings of those read only with a fallback); none for a text that
    does not parse (its syntax error is reported on its own)."""
    try:
        parsed = parse(text, env)
    except jinja2.TemplateSyntaxError:
        return []
    return [(pattern(path), line, warning(message) if guarded else message)
            for path, message, line in unknown_attributes(parsed, guarded=guarded)]


def shape_problems(text: str, env: jinja2.Environment, file: str, source: Any,
                   where: tuple[str | int, ...], *, raw: Sequence[str],
                   guarded: bool = False) -> list[Problem]:
    """The unknown attributes of a template part, each at the line and column that reads
    it in the template file."""
    start = source.position(where) if source is not None else (1, 1)
    return [Problem(file, *places.place(raw, start, text, line, found), message)
            for found, line, message in attribute_problems(text, env, guarded=guarded)]


def file_problems(text: str, env: jinja2.Environment, file: str, *,
                  guarded: bool = False) -> list[Problem]:
    """The same for a whole file (`html_file`), at the line that reads it."""
    lines = text.splitlines()
    problems = []
    for found, line, message in attribute_problems(text, env, guarded=guarded):
        hit = re.search(found, lines[line - 1]) if 0 < line <= len(lines) else None
        problems.append(Problem(file, line, hit.start() + 1 if hit else 1, message))
    return problems


def attribute_names(text: str, base: tuple[str, str], env: jinja2.Environment = _PARSER, *,
                    guarded: bool = False) -> list[str]:
    """The `<a>.<b>.<name>` (or `<a>.<b>['name']`) a template reads, for `base` = (a, b),
    once each, in order (raises TemplateSyntaxError): those it reads unguarded, or with
    `guarded` those it reads only with a fallback (`_split`); not those of a variable `a`
    of the template's own (`{% for event in profile.traits.upcoming %}`), nor a dict's
    method (`.get`, `.items`, `.keys`, `.values`: `a.b.get` is the method, never a key;
    `a.b['get']` is the key)."""
    found: list[tuple[tuple[str, str], int, bool]] = []
    for node, safe in guarded_or_not(parse(text, env)):
        inner = node.node
        if not (isinstance(inner, nodes.Getattr) and inner.attr == base[1]
                and isinstance(inner.node, nodes.Name) and inner.node.name == base[0]):
            continue
        if isinstance(node, nodes.Getattr):
            if node.attr not in DICT_METHODS:  # `profile.traits.get('plan')`: the method
                found.append(((node.attr, ""), node.lineno, safe))
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.append(((node.arg.value, ""), node.lineno, safe))
    return [name for (name, _), _ in _split(found, guarded)]


def trait_problems(text: str, env: jinja2.Environment, file: str, source: Any,
                   where: tuple[str | int, ...], *, raw: Sequence[str],
                   known: Collection[str], guarded: bool = False) -> list[Problem]:
    """`profile.traits.<name>` reads of a template part that traits.yaml does not
    declare (with `guarded`, the warnings of those read only with a fallback)."""
    line, col = source.position(where) if source is not None else (1, 1)
    try:
        names = attribute_names(text, ("profile", "traits"), env, guarded=guarded)
    except jinja2.TemplateSyntaxError:
        return []  # reported on its own
    problems = []
    for name in names:
        if name in known:
            continue
        message = (f"unknown trait 'profile.traits.{name}' in template (not in traits.yaml)"
                   + trait_hint(name, known))
        problems.append(Problem(file, *places.place(raw, (line, col), text,
                                                    places.first_line(text, places.trait(name)),
                                                    places.trait(name)),
                                warning(message, MAYBE) if guarded else message))
    return problems


MAYBE = ("; it is read with a fallback (`default`, `is defined`), so the template renders, "
         "with the fallback wherever it is missing")


def trait_hint(name: str, known: Collection[str]) -> str:
    """After `unknown trait '...' (not in traits.yaml)`: the nearest known trait, or, when
    none is near, what to do about a trait that is new."""
    return did_you_mean(name, known) or (
        f"; if identify calls set it, declare it: `{name}: {{type: string}}` under "
        "`traits:` in traits.yaml")


def _has(root: str, name: str) -> str:
    """What `root` has instead of `name`: the nearest key, or all of them."""
    has = SHAPES[root]
    if has is EVENT_KEYS:
        named = (f"a page or screen call's name, as a track's, is {root}.event; "
                 if name == "name" else "")  # Segment's `name` is the event's name here
        return (did_you_mean(name, has) or f" ({named}an event's own data is under "
                f"properties: {root}.properties.{name})")
    return f" ({root} has " + ", ".join(has) + ")" + did_you_mean(name, has)


def path_problem(path: str) -> str | None:
    """A condition path's second part that `profile.`, `event.` or `trigger.` never have,
    said as for a template (`event.property.price`: did you mean 'properties'?)."""
    parts = path.split(".")
    if len(parts) < 2 or parts[0] not in ("event", "trigger") or parts[1] in EVENT_KEYS:
        return None
    return f"unknown path {path!r}" + _has(parts[0], parts[1])
