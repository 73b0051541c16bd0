"""The condition AST and its parser (contract: shared/journey-language.md, "Conditions").

Raw form: `{path: {operator: value}, ...}` (all must hold), `all: [...]`, `any: [...]`,
`not: {...}`; a bare value is `eq`. Every problem is collected with its location so the
loader can report `file:line:column`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rules.errors import JourneymanError, did_you_mean
from rules.operators import OPERATORS

Where = tuple[str | int, ...]
ROOTS = ("event.", "trigger.", "profile.traits.", "profile.computed.", "enrollment.")
EXACT_ROOTS = ("profile.id",)


@dataclass(frozen=True, slots=True)
class Compare:
    path: tuple[str, ...]
    op: str
    value: Any

    def paths(self) -> frozenset[tuple[str, ...]]:
        return frozenset({self.path})


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]

    def paths(self) -> frozenset[tuple[str, ...]]:
        return frozenset().union(*(i.paths() for i in self.items))


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    def paths(self) -> frozenset[tuple[str, ...]]:
        return frozenset().union(*(i.paths() for i in self.items))


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def paths(self) -> frozenset[tuple[str, ...]]:
        return self.item.paths()


Condition = Compare | AllOf | AnyOf | Not
TRUE: Condition = AllOf(())


@dataclass(frozen=True, slots=True)
class ConditionProblem:
    where: Where
    message: str


class ConditionError(JourneymanError, ValueError):
    def __init__(self, problems: list[ConditionProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


def parse_condition(raw: object, *, where: Where = ()) -> Condition:
    problems: list[ConditionProblem] = []
    condition = _parse(raw, tuple(where), problems)
    if problems:
        raise ConditionError(problems)
    return condition


def _parse(raw: object, where: Where, problems: list[ConditionProblem], *,
           nested: bool = False) -> Condition:
    if raw is None:
        if nested:  # `any: [null]`, `not: null`, a YAML alias to the condition itself
            problems.append(ConditionProblem(where, "empty condition (null, or a YAML alias "
                                             "to a mapping that holds it): write a "
                                             "condition here, or remove it"))
        return TRUE
    if not isinstance(raw, dict):
        problems.append(ConditionProblem(where, "a condition must be a mapping of "
                                         "path: {operator: value}, or all/any/not"))
        return TRUE
    items: list[Condition] = []
    for key, value in raw.items():
        here = (*where, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                problems.append(ConditionProblem(here, f"'{key}' needs a non-empty list of "
                                                 "conditions"))
                continue
            parts = tuple(_parse(v, (*here, i), problems, nested=True)
                          for i, v in enumerate(value))
            items.append(AllOf(parts) if key == "all" else AnyOf(parts))
        elif key == "not":
            items.append(Not(_parse(value, here, problems, nested=True)))
        else:
            items.extend(_compare(str(key), value, here, problems))
    return items[0] if len(items) == 1 else AllOf(tuple(items))


def _meant(key: str) -> str:
    """` (did you mean 'profile.traits.vip'?)` for `profile.trait.vip` or `profle.traits.vip`:
    the path with its start (one or two parts) spelled as a root."""
    parts = key.split(".")
    for n in (2, 1):
        if len(parts) > n:
            start = ".".join(parts[:n]) + "."
            near = did_you_mean(start, [r for r in ROOTS if r.count(".") == n])
            if near:
                root = near.split("'")[1]  # ` (did you mean 'profile.traits.'?)`
                return f" (did you mean {root + '.'.join(parts[n:])!r}?)"
    return ""


def _compare(key: str, value: object, here: Where,
             problems: list[ConditionProblem]) -> list[Condition]:
    if not (key.startswith(ROOTS) or key in EXACT_ROOTS) or ".." in key or key.endswith("."):
        problems.append(ConditionProblem(here, f"path {key!r} must start with event., trigger., "
                                         "profile.traits., profile.computed., profile.id or "
                                         "enrollment." + _meant(key)))
        return []
    path = tuple(key.split("."))
    ops = value if isinstance(value, dict) else {"eq": value}
    if not ops:
        problems.append(ConditionProblem(here, f"{key!r} needs an operator, like {{eq: ...}}"))
    out: list[Condition] = []
    for op, operand in ops.items():
        spec = OPERATORS.get(str(op))
        if spec is None:
            problems.append(ConditionProblem((*here, op), f"unknown operator {op!r}"
                                             + did_you_mean(str(op), OPERATORS)))
            continue
        error = spec.check(operand) or _not_finite(operand)
        if error:
            problems.append(ConditionProblem((*here, op), f"{op!r} {error}"))
            continue
        out.append(Compare(path, str(op), spec.prepare(operand)))
    return out


def _not_finite(operand: object) -> str | None:
    """`eq: .nan` or `gt: 1e999` can never match (or `gt: -.inf` always does)."""
    values = operand if isinstance(operand, list) else [operand]
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            return f"needs a finite number, not {value!r}"
    return None
