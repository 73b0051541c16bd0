"""The traits a scenario file sets (its `profiles` and `identify` lines), checked against
what the journeys read: a misspelled trait (`plna: premium`) set nothing any journey
or template looks at, so a test of the premium branch ran the basic one, or passed
for nothing. As `journeyman validate` tells a journey's own reads: with a traits.yaml,
a trait it does not declare (nor the engine reads) is an error, with "did you mean" or
how to declare it; without one, a trait a typo away from one the journeys, templates or
computed traits read (a trait far from all of them is the application's own: fine).
An identify line with `unread: true` sets its traits on purpose.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from journeys.errors import Problem
from journeys.loaded import Library
from journeys.reads import ENGINE_TRAITS, traits_read
from journeys.template_shapes import trait_hint
from journeys.yamlsrc import Source, Where
from rules import did_you_mean


def trait_problems(profiles: Mapping[str, Mapping[str, Any] | None],
                   identifies: Iterable[tuple[int, Mapping[str, Any]]], source: Source,
                   library: Library, journeys: str) -> list[Problem]:
    """A problem at each trait of `profiles` (user -> traits) and of the identify lines
    (their index among the event lines, and traits; those with `unread: true` left out)
    that no journey of the folder `journeys` reads (see the module's docstring)."""
    declared = library.known_traits
    read = traits_read(library)
    places: list[tuple[Where, str, str]] = [
        (("profiles", user, name), name, "profiles")
        for user, traits in profiles.items() for name in traits or {}]
    places += [(("events", i, "identify", name), name, "identify")
               for i, traits in identifies for name in traits]
    problems = []
    for where, name, label in places:
        message = _unread(name, declared, read, journeys)
        if message is not None:
            problems.append(source.problem(where, f"{label}: {message}", key=True))
    return problems


def _unread(name: str, declared: Collection[str] | None, read: Collection[str],
            journeys: str) -> str | None:
    if name in read or (declared is not None and name in declared):
        return None
    if declared is not None:  # as validate tells an undeclared trait a journey reads
        return (f"unknown trait {name!r} (not in traits.yaml)"
                + trait_hint(name, {*declared, *ENGINE_TRAITS}))
    hint = did_you_mean(name, read)
    if not hint:  # far from every trait read: the application's own
        return None
    return (f"no journey or template of {journeys} reads the trait {name!r}"
            + hint.removesuffix(")") + " `unread: true` on an identify line sets it on "
            "purpose)")


__all__ = ["trait_problems"]
