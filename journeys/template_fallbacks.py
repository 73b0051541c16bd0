"""Which reads of a template are guarded: they render even when what they read is not
there, so `journeyman validate` warns about an unknown attribute, trait or property
read there instead of failing (journeys/template_shapes.py).

Templates render with `StrictUndefined`: a missing key is an `Undefined` that fails as
soon as it is printed, compared, iterated, tested for truth or read further. It does not
fail where it is only handed to

    {{ journey.title | default('x') }}           the `default` (or `d`) filter: 'x'
    {{ journey.title is defined }}               a `defined` / `undefined` test
    {% if journey.title is defined %}{{ journey.title }}{% endif %}
                                                 a read where such a test has just said
                                                 it is there: never run without it
    {{ journey.title is defined and journey.title }}

and those reads are guarded. Not guarded (they fail at render, as an unknown read
anywhere else): `{% if journey.title %}` (truth), `journey.title | upper | default('x')`
(`upper` reads it first), `profile.trait.first_name | default('x')` (`profile.trait` is
read further: only the last read is the filter's), `x | default(journey.title)` (the
fallback itself is printed when `x` is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from jinja2 import nodes

FALLBACK_FILTERS = frozenset({"default", "d"})  # Jinja2's own, and its short name
PRESENCE_TESTS = frozenset({"defined", "undefined"})
K = TypeVar("K")

Path = tuple[str, ...]


def guarded_reads(parsed: nodes.Template) -> frozenset[int]:
    """The `id()` of every attribute read (`a.b`, `a['b']`) of `parsed` that is guarded."""
    found: set[int] = set()
    _walk(parsed, frozenset(), found)
    return frozenset(found)


def path_of(node: nodes.Node) -> Path | None:
    """`a.b['c']` as ('a', 'b', 'c'); None for anything else (a call, a computed key)."""
    parts: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            parts.append(node.arg.value)
        else:
            return None
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return (node.name, *reversed(parts))


def defined_by(test: nodes.Node, key: Callable[[nodes.Node], K | None]
               ) -> tuple[frozenset[K], frozenset[K]]:
    """What is known to be there where `test` is true, and where it is false (`is
    defined` the first, `is undefined` the second, `not` swaps them; with `and` and `or`
    only what holds whichever side decided), each tested node named by `key` (a path
    here, a trait in template_guards.py; None: not one of those)."""
    if isinstance(test, nodes.Test) and test.name in PRESENCE_TESTS:
        name = key(test.node)
        found = frozenset() if name is None else frozenset({name})
        return (found, frozenset()) if test.name == "defined" else (frozenset(), found)
    if isinstance(test, nodes.Not):
        true, false = defined_by(test.node, key)
        return false, true
    if isinstance(test, nodes.And):
        (ltrue, lfalse), (rtrue, rfalse) = defined_by(test.left, key), defined_by(test.right, key)
        return ltrue | rtrue, lfalse & (ltrue | rfalse)
    if isinstance(test, nodes.Or):
        (ltrue, lfalse), (rtrue, rfalse) = defined_by(test.left, key), defined_by(test.right, key)
        return ltrue & (lfalse | rtrue), lfalse | rfalse
    return frozenset(), frozenset()


def _defined(test: nodes.Node) -> tuple[frozenset[Path], frozenset[Path]]:
    return defined_by(test, path_of)


def _mark(node: nodes.Node | None, found: set[int]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        found.add(id(node))


def _walk(node: nodes.Node, there: frozenset[Path], found: set[int]) -> None:
    if isinstance(node, nodes.Filter | nodes.Test) and node.name in (
            FALLBACK_FILTERS if isinstance(node, nodes.Filter) else PRESENCE_TESTS):
        _mark(node.node, found)  # a Filter of `{% filter %}` has none
    if isinstance(node, nodes.Getattr | nodes.Getitem) and path_of(node) in there:
        found.add(id(node))
    if isinstance(node, nodes.If):
        # {% if %} ... {% elif %} ... {% else %}: each branch knows what its own test
        # says is there, and what the tests before it (all false there) say
        _walk(node.test, there, found)
        true, after = _defined(node.test)
        _body(node.body, there | true, found)
        after = there | after
        for branch in node.elif_:
            _walk(branch.test, after, found)
            true, false = _defined(branch.test)
            _body(branch.body, after | true, found)
            after |= false
        _body(node.else_, after, found)
        return
    if isinstance(node, nodes.CondExpr):  # `a if test else b`
        _walk(node.test, there, found)
        true, false = _defined(node.test)
        _walk(node.expr1, there | true, found)
        if node.expr2 is not None:
            _walk(node.expr2, there | false, found)
        return
    if isinstance(node, nodes.And | nodes.Or):  # the right side runs only as the left says
        _walk(node.left, there, found)
        true, false = _defined(node.left)
        _walk(node.right, there | (true if isinstance(node, nodes.And) else false), found)
        return
    for child in node.iter_child_nodes():
        _walk(child, there, found)


def _body(statements: list[nodes.Node], there: frozenset[Path], found: set[int]) -> None:
    for statement in statements:
        _walk(statement, there, found)
