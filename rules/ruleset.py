"""Rulesets: many named conditions compiled once, matched per event.

Backends: `python` (conditions compiled to closures) and `durable` (durable-rules used as
a stateless matcher; see rules/durable_backend.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from rules.conditions import AllOf, AnyOf, Compare, Condition, Not
from rules.errors import RulesBackendError
from rules.evaluate import lookup
from rules.matcher import Matcher, event_name
from rules.operators import MISSING, OPERATORS

BACKENDS = ("durable", "python")
Check = Callable[[Mapping[str, Any], datetime], bool]


def _compare_closure(cond: Compare) -> Check:
    path, operand = cond.path, cond.value
    spec = OPERATORS[cond.op]
    evaluate, on_missing = spec.evaluate, spec.on_missing
    if cond.op == "exists":
        want = bool(operand)

        def exists(facts: Mapping[str, Any], now: datetime) -> bool:
            return (lookup(facts, path) is not MISSING) == want

        return exists
    if cond.op == "eq" and isinstance(operand, str):
        def eq_str(facts: Mapping[str, Any], now: datetime) -> bool:
            node: Any = facts
            for part in path:
                # as `lookup` reads: any mapping (a profile's traits may be one), a dict first
                if type(node) is not dict and not isinstance(node, Mapping):
                    return False
                node = node.get(part)
            return isinstance(node, str) and node == operand

        return eq_str

    def check(facts: Mapping[str, Any], now: datetime) -> bool:
        value = lookup(facts, path)
        if value is MISSING:
            return on_missing
        try:
            return bool(evaluate(value, operand, now))
        except TypeError:
            return False

    return check


def to_closure(condition: Condition) -> Check:
    if isinstance(condition, Compare):
        return _compare_closure(condition)
    if isinstance(condition, AllOf):
        parts = [to_closure(i) for i in condition.items]
        return lambda facts, now: all(p(facts, now) for p in parts)
    if isinstance(condition, AnyOf):
        parts = [to_closure(i) for i in condition.items]
        return lambda facts, now: any(p(facts, now) for p in parts)
    assert isinstance(condition, Not)
    inner = to_closure(condition.item)
    return lambda facts, now: not inner(facts, now)


class PythonMatcher:
    backend = "python"

    def __init__(self, rules: Mapping[str, Condition]) -> None:
        self.rule_ids = tuple(rules)
        # Index by the event name a rule requires: an event only meets its own rules.
        self._any: list[tuple[str, Check]] = []
        self._by_event: dict[str, list[tuple[str, Check]]] = {}
        for rid, condition in rules.items():
            name = event_name(condition)
            bucket = self._any if name is None else self._by_event.setdefault(name, [])
            bucket.append((rid, to_closure(condition)))

    def match(self, facts: Mapping[str, Any], now: datetime) -> frozenset[str]:
        event = facts.get("event")
        name = event.get("event") if isinstance(event, dict) else None
        candidates = self._by_event.get(name, ()) if isinstance(name, str) else ()
        return frozenset([rid for rid, check in self._any if check(facts, now)]
                         + [rid for rid, check in candidates if check(facts, now)])


def _durable_matcher() -> Callable[[Mapping[str, Condition], str], Matcher]:
    """The durable backend's class, or a clear error where durable-rules does not load
    (an ImportError deep in compiling a journey says nothing of what to do)."""
    try:
        from rules.durable_backend import DurableMatcher
    except ImportError as exc:
        version = ".".join(map(str, sys.version_info[:3]))
        raise RulesBackendError(
            f"the durable rules backend does not load on Python {version} ({exc}): "
            "durable-rules 2.0.28 runs on Python 3.11 and 3.12 (its C extension calls "
            "a function Python 3.13 removed); run journeyman on Python 3.11 or 3.12, or "
            "with the python backend where a command offers it (--backend python)"
        ) from exc
    return DurableMatcher


def compile_ruleset(rules: Mapping[str, Condition], *, backend: str = "durable",
                    name: str = "ruleset") -> Matcher:
    if backend == "python":
        return PythonMatcher(rules)
    if backend == "durable":
        return _durable_matcher()(rules, name)
    raise ValueError(f"unknown rules backend {backend!r}: use one of {', '.join(BACKENDS)}")
