"""Pydantic's validation errors as positioned, readable problems (`file:line:column:
message`, with "did you mean" for unknown keys), for journeys, policies and templates."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from journeys.errors import Problem
from journeys.model import language_keys
from journeys.steps import STEP_KINDS, step_kinds_in
from journeys.yamlsrc import Source
from rules import did_you_mean


def pydantic_problems(exc: ValidationError, source: Source) -> list[Problem]:
    """Translate pydantic errors to positioned, readable problems."""
    problems: list[Problem] = []
    keys = language_keys()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ":" in p))  # union tags
        kind = err["type"]
        field_name = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if kind == "extra_forbidden":
            problems.append(source.problem(loc, f"unknown key {field_name!r}"
                                           + did_you_mean(field_name, keys), key=True))
        elif kind == "missing":
            problems.append(source.problem(loc[:-1], f"missing required key {field_name!r}"))
        elif kind == "step_kind":
            problems.append(source.problem(loc, _step_kind_message(err["input"])))
        else:
            msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
            if _unquoted_braces(err.get("input")):
                msg += ("; a value that starts with '{' is read as a YAML mapping: put a "
                        "template in quotes, \"{{ ... }}\"")
            problems.append(source.problem(loc, f"{field_name}: {msg}" if field_name else msg))
    return problems


def _step_kind_message(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "a step must be a mapping with an 'id' and one kind key: " + ", ".join(STEP_KINDS)
    kinds = step_kinds_in(raw)
    if len(kinds) > 1:
        return f"a step has exactly one kind, this one has {len(kinds)}: " + ", ".join(kinds)
    unknown = [k for k in raw if k not in {"id", "next", "name", "description"}]
    hints = "; ".join(f"unknown key {k!r}" + did_you_mean(k, STEP_KINDS) for k in unknown)
    kinds_list = ", ".join(STEP_KINDS)
    return f"step has no kind (one of: {kinds_list})" + (f"; {hints}" if hints else "")


def _unquoted_braces(raw: Any) -> bool:
    """`subject: {{ profile.traits.first_name }}` unquoted: YAML reads a mapping whose
    one key is a mapping (kept as its text, `ordereddict([...])`), with no value."""
    if not isinstance(raw, dict) or len(raw) != 1:
        return False
    key, value = next(iter(raw.items()))
    return value is None and (not isinstance(key, str) or key.startswith("ordereddict("))
