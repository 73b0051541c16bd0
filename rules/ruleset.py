"""Rulesets: many named conditions compiled once, matched per event.

Backends: `python` (conditions compiled to closures) and `durable` (durable-rules used as
a stateless matcher; see rules/durable_backend.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from rules.conditions import AllOf, AnyOf, Compare, Condition, Not
from rules.evaluate import compare

BACKENDS = ("durable", "python")
Check = Callable[[Mapping[str, Any], datetime], bool]


class Matcher(Protocol):
    backend: str
    rule_ids: tuple[str, ...]

    def match(self, facts: Mapping[str, Any], now: datetime) -> frozenset[str]:
        """The ids of every rule whose condition holds for `facts` at `now`."""
        ...


def to_closure(condition: Condition) -> Check:
    if isinstance(condition, Compare):
        return lambda facts, now: compare(condition, facts, now)
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
        self._checks = [(rid, to_closure(c)) for rid, c in rules.items()]

    def match(self, facts: Mapping[str, Any], now: datetime) -> frozenset[str]:
        return frozenset(rid for rid, check in self._checks if check(facts, now))


def compile_ruleset(rules: Mapping[str, Condition], *, backend: str = "python",
                    name: str = "ruleset") -> Matcher:
    if backend == "python":
        return PythonMatcher(rules)
    if backend == "python":
        from rules.durable_backend import DurableMatcher

        return DurableMatcher(rules, name)
    raise ValueError(f"unknown rules backend {backend!r}: use one of {', '.join(BACKENDS)}")
