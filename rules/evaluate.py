"""The reference evaluator: walk the condition tree against nested fact dicts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rules.conditions import AllOf, AnyOf, Compare, Condition, Not
from rules.operators import MISSING, OPERATORS


def lookup(facts: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = facts
    for part in path:
        # facts are plain dicts: `type() is dict` first spares the ABC check (called
        # ~40 times per event)
        if type(node) is not dict and not isinstance(node, Mapping):
            return MISSING
        node = node.get(part, MISSING)
        if node is MISSING:
            return MISSING
    return MISSING if node is None else node


def compare(cond: Compare, facts: Mapping[str, Any], now: datetime) -> bool:
    value = lookup(facts, cond.path)
    if cond.op == "exists":
        return (value is not MISSING) == bool(cond.value)
    spec = OPERATORS[cond.op]
    if value is MISSING:
        return spec.on_missing
    try:
        return bool(spec.evaluate(value, cond.value, now))
    except TypeError:
        return False


def evaluate(condition: Condition, facts: Mapping[str, Any], now: datetime) -> bool:
    if isinstance(condition, Compare):
        return compare(condition, facts, now)
    if isinstance(condition, AllOf):
        return all(evaluate(i, facts, now) for i in condition.items)
    if isinstance(condition, AnyOf):
        return any(evaluate(i, facts, now) for i in condition.items)
    return not evaluate(condition.item, facts, now)


__all__ = ["Not", "evaluate", "lookup"]
