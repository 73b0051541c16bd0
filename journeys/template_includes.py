"""Attributes read in the files a template pulls in (`{% include %}`, `{% extends %}`,
`{% import %}`, `{% from ... import %}`), checked as the template's own are
(journeys/template_shapes.py), in the context of the template that pulls them in.

An included file renders with the context of the template that includes it, where it
includes it: `{% for event in profile.traits.upcoming %}{% include 'card.html' %}` gives
`card.html` the loop's `event`, so its `{{ event.title }}` is not the entry event's. A
layout (`extends`) sees the names its child template gives. An import sees only the
context (`with context`) or nothing: its own names. Each problem is reported at the
pulled-in file's line, naming who pulled it in (`(footer.html is included by
templates/welcome.yaml:7)`), and a file is read once for each set of names it is given,
so a cycle (`a.html` includes `b.html`, which includes `a.html`) ends.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
from jinja2 import nodes

from journeys.errors import Problem
from journeys.template_files import IMPORTS, constant_names
from journeys.template_shapes import pattern, scoped, unknown_attributes, warning

VERBS: dict[type, str] = {nodes.Include: "included", nodes.Extends: "extended",
                          nodes.Import: "imported", nodes.FromImport: "imported"}
MAX_DEPTH = 20  # files pulled in by files pulled in...: deeper is not followed


def included_problems(env: jinja2.Environment, folder: Path | None, text: str, *,
                      file: str, start: int, seen: set[tuple[object, ...]],
                      ) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) for the unknown attributes read in the files `text` pulls in,
    and in theirs; `text` begins on line `start` of `file`. `seen`: shared by the calls
    for one templates folder, so each file is read once per set of names it is given,
    and each problem said once."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    if folder is None or env.loader is None:
        return errors, warnings
    try:
        parsed = env.parse(text)
    except jinja2.TemplateSyntaxError:
        return errors, warnings  # reported as such
    _follow(env, folder, parsed, (file, start, frozenset()), seen=seen,
            sinks=(errors, warnings), depth=0)
    return errors, warnings


def _follow(env: jinja2.Environment, folder: Path, parsed: nodes.Template,
            where: tuple[str, int, frozenset[str]], *, seen: set[tuple[object, ...]],
            sinks: tuple[list[Problem], list[Problem]], depth: int) -> None:
    file, start, bound = where
    if depth >= MAX_DEPTH:
        return
    for node, names in scoped(parsed, bound):
        if not isinstance(node, IMPORTS):
            continue
        name = _first(env, constant_names(node.template) or [])
        if name is None:
            continue  # computed at render, or missing: said elsewhere
        # `extends` always passes the context; `include` unless `without context`;
        # `import` only `with context`
        given = names if getattr(node, "with_context", True) else frozenset()
        if ("file", name, given) in seen:
            continue
        seen.add(("file", name, given))
        try:
            assert env.loader is not None
            source = env.loader.get_source(env, name)[0]
            child = env.parse(source)
        except (jinja2.TemplateError, OSError, UnicodeError):
            continue  # not this check's to report
        shown = str(folder / name)
        by = f" ({name} is {VERBS[type(node)]} by {file}:{start + node.lineno - 1})"
        lines = source.splitlines()
        for guarded, sink in zip((False, True), sinks, strict=True):
            for path, message, line in unknown_attributes(child, guarded=guarded, bound=given):
                hit = (re.search(pattern(path), lines[line - 1])
                       if 0 < line <= len(lines) else None)
                column = hit.start() + 1 if hit else 1
                if ("said", shown, line, column, message) in seen:
                    continue
                seen.add(("said", shown, line, column, message))
                sink.append(Problem(shown, line, column,
                                    (warning(message) if guarded else message) + by))
        _follow(env, folder, child, (shown, 1, given), seen=seen, sinks=sinks,
                depth=depth + 1)


def _first(env: jinja2.Environment, names: list[str]) -> str | None:
    """The first of `names` the templates folder has (what Jinja2 renders)."""
    for name in names:
        try:
            assert env.loader is not None
            env.loader.get_source(env, name)
            return name
        except (jinja2.TemplateNotFound, OSError, UnicodeError):
            continue
    return None
