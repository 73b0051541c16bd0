"""Say why a condition is false, in words a marketer reads: the first comparison that
failed, with the value it saw (`event.properties.price 10 is not >= 20`).

Used by the decision log (`journeyman why`) on the paths that decide something: an
entry that did not happen, a branch case not taken. It walks the tree with the
reference evaluator (rules/evaluate.py), which both backends agree with, and only runs
when something is to be explained, never on the hot path of matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from rules.conditions import AllOf, AnyOf, Compare, Condition, Not
from rules.evaluate import compare, evaluate, lookup
from rules.operators import MISSING

SYMBOLS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
           "in": "in", "nin": "not in", "contains": "contains", "matches": "matches",
           "before": "before", "after": "after"}
# An operator not named here is written as its name with spaces (`starts_with`: "starts
# with"), so a new operator in rules/operators.py needs no entry here.
MAX_VALUE_CHARS = 80  # a value in an explanation is shown, never a whole document


def symbol(op: str) -> str:
    """How a comparison's operator is written: `>=`, `not in`, `starts with`."""
    return SYMBOLS.get(op, op.replace("_", " "))


def show(value: Any) -> str:
    """A value as a journey's author would write it, cut to a readable length."""
    if value is MISSING:
        return "missing"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, timedelta):
        text = f"{value.total_seconds():g}s ago"
    elif isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 1] + "…"


def describe(cond: Compare) -> str:
    """The comparison as written: `event.properties.price >= 20`."""
    path = ".".join(cond.path)
    if cond.op == "exists":
        return f"{path} exists" if cond.value else f"{path} is missing"
    return f"{path} {symbol(cond.op)} {show(cond.value)}"


def written(condition: Condition) -> str:
    """The whole condition as written, in words: `profile.traits.vip = true and not
    (event.properties.price < 20)`; `always` for the empty condition."""
    if isinstance(condition, Compare):
        return describe(condition)
    if isinstance(condition, Not):
        return f"not ({written(condition.item)})"
    if not condition.items:
        return "always" if isinstance(condition, AllOf) else "never"
    joiner = " and " if isinstance(condition, AllOf) else " or "
    return joiner.join(_part(item, condition) for item in condition.items)


def _part(item: Condition, within: AllOf | AnyOf) -> str:
    """An item of an `all`/`any`, in brackets when it is the other kind with two or more."""
    text = written(item)
    other = AnyOf if isinstance(within, AllOf) else AllOf
    return f"({text})" if isinstance(item, other) and len(item.items) > 1 else text


def _failed_compare(cond: Compare, facts: Mapping[str, Any]) -> str:
    path, value = ".".join(cond.path), lookup(facts, cond.path)
    if cond.op == "exists":
        return f"{path} is missing" if cond.value else f"{path} is {show(value)}, not missing"
    if value is MISSING:
        return f"{path} is missing (needs {symbol(cond.op)} {show(cond.value)})"
    if cond.op == "ne":  # "'moved' is not != 'moved'" read as a double negative
        return f"{path} is {show(value)} (needs != {show(cond.value)})"
    if cond.op == "nin":
        return f"{path} {show(value)} is in {show(cond.value)} (needs not in)"
    return f"{path} {show(value)} is not {symbol(cond.op)} {show(cond.value)}"


def explain(condition: Condition, facts: Mapping[str, Any], now: datetime) -> str | None:
    """Why `condition` is false for `facts` (None: it holds)."""
    if isinstance(condition, Compare):
        return None if compare(condition, facts, now) else _failed_compare(condition, facts)
    if isinstance(condition, AllOf):
        for item in condition.items:
            why = explain(item, facts, now)
            if why is not None:
                return why
        return None
    if isinstance(condition, AnyOf):
        reasons = [explain(item, facts, now) for item in condition.items]
        if any(r is None for r in reasons):
            return None
        return "none of: " + "; ".join(r for r in reasons if r is not None)
    if not evaluate(condition.item, facts, now):
        return None
    return f"not ({_holds(condition.item, facts)}) is false"


def _holds(condition: Condition, facts: Mapping[str, Any]) -> str:
    """What holds, for a `not:` that failed: its comparisons with their values."""
    if isinstance(condition, Compare):
        return f"{'.'.join(condition.path)} is {show(lookup(facts, condition.path))}"
    if isinstance(condition, Not):
        return f"not {_holds(condition.item, facts)}"
    joiner = " and " if isinstance(condition, AllOf) else " or "
    return joiner.join(_holds(i, facts) for i in condition.items)


def values(condition: Condition, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The value of every path the condition reads (`missing` when absent), for the
    record of a decision: `{"event.properties.price": 50}`."""
    out: dict[str, Any] = {}
    for path in sorted(condition.paths()):
        value = lookup(facts, path)
        out[".".join(path)] = "missing" if value is MISSING else _plain(value)
    return out


def _plain(value: Any) -> Any:
    """A JSON-friendly, bounded copy of a fact value."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS - 1] + "…"
    return show(value)


__all__ = ["describe", "explain", "show", "values"]
