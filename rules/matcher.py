"""What every rules backend is: a `Matcher` of named conditions, and the event-name
index both backends use to skip rules that another event name can never meet."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from rules.conditions import AllOf, Compare, Condition


class Matcher(Protocol):
    backend: str
    rule_ids: tuple[str, ...]

    def match(self, facts: Mapping[str, Any], now: datetime) -> frozenset[str]:
        """The ids of every rule whose condition holds for `facts` at `now`."""
        ...


def event_name(condition: Condition) -> str | None:
    """The event name a rule requires (`event.event eq X` at its top level), if any."""
    items = condition.items if isinstance(condition, AllOf) else (condition,)
    for item in items:
        if (isinstance(item, Compare) and item.path == ("event", "event") and item.op == "eq"
                and isinstance(item.value, str)):
            return item.value
    return None
