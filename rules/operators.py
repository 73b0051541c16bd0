"""Every condition operator, defined once: operand check, Python evaluation, and what a
missing value means. Adding an operator = one `Operator(...)` entry here, its cases and
operands in tests/rules/test_rules.py, and its bullet in docs/language.md (the README's
"Where to add things").

Semantics (both backends): a missing path or `None` satisfies `exists: false`, `ne` and
`nin` and nothing else; `true` is not `1`; a type mismatch is false, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.durations import TOO_LONG, DurationError, parse_duration
from rules.regex_guard import exponential_risk

MISSING: Any = object()
# The calendar's ends in UTC: a date-time beyond them compares as one of them.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
# `matches` reads at most this many characters of a value: validation refuses patterns
# that can take exponential time (rules/regex_guard.py), and this bounds what is left, a
# polynomial pattern (`\d*\d*x`) on a long value. A longer value is matched on its first
# MATCH_LIMIT characters (its end, for `$`, is there).
MATCH_LIMIT = 1_000


def timestamp(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string or datetime (naive means UTC), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if not parsed.tzinfo:
        return parsed.replace(tzinfo=UTC)
    if parsed.year in (1, 9999):  # only there can an offset cross the calendar's ends
        try:
            parsed.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:00-05:00 is past the calendar's end in UTC
            return EARLIEST if parsed.year == 1 else LATEST
    return parsed


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(a: Any, b: Any) -> bool:
    """Equality where True != 1 (a marketer's `true` is not a count)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _order(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any, datetime], bool]:
    def evaluate(fact: Any, operand: Any, now: datetime) -> bool:
        if isinstance(operand, datetime):
            instant = timestamp(fact)
            return instant is not None and op(instant, operand)
        return _number(fact) and op(fact, operand)

    return evaluate


def _relative(before: bool) -> Callable[[Any, Any, datetime], bool]:
    def evaluate(fact: Any, operand: Any, now: datetime) -> bool:
        instant = timestamp(fact)
        if instant is None:
            return False
        if isinstance(operand, timedelta):
            try:
                ref = now - operand
            except OverflowError:  # before the calendar's start: every date is after it
                return not before
        else:
            ref = operand
        return instant < ref if before else instant > ref

    return evaluate


def _check_order(value: Any) -> str | None:
    if _number(value) or timestamp(value) is not None:
        return None
    return "needs a number or an ISO date-time"


def _prepare_order(value: Any) -> Any:
    return value if _number(value) else timestamp(value)


def _check_relative(value: Any) -> str | None:
    if timestamp(value) is not None:
        return None
    try:
        parse_duration(value)
    except DurationError as exc:
        too_long = f": {TOO_LONG}" if TOO_LONG in str(exc) else ""
        return "needs an ISO date-time or a duration like 90d" + too_long
    return None


def _prepare_relative(value: Any) -> Any:
    return timestamp(value) or parse_duration(value)


def _check_list(value: Any) -> str | None:
    return None if isinstance(value, list) else "needs a list"


def _check_regex(value: Any) -> str | None:
    if not isinstance(value, str):
        return "needs a regular expression string"
    try:
        re.compile(value)
    except re.error as exc:
        return f"has a bad regular expression: {exc}"
    risk = exponential_risk(value)
    if risk:
        return (f"pattern can take exponential time on some inputs ({risk}); rewrite it, "
                "e.g. (a+)+ as a+, (\\w+\\s?)+ as \\w+(\\s\\w+)*\\s?")
    return None


def _matches(fact: Any, operand: Any, now: datetime) -> bool:
    return isinstance(fact, str) and re.search(operand, fact[:MATCH_LIMIT]) is not None


def _contains(fact: Any, operand: Any, now: datetime) -> bool:
    if isinstance(fact, str):
        return isinstance(operand, str) and operand in fact
    if isinstance(fact, list):
        return any(same(item, operand) for item in fact)
    return False


def _no_check(value: Any) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    evaluate: Callable[[Any, Any, datetime], bool]
    check: Callable[[Any], str | None] = _no_check
    prepare: Callable[[Any], Any] = lambda v: v
    on_missing: bool = False  # the result when the path is missing or None


OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Operator("eq", lambda f, v, n: same(f, v)),
    Operator("ne", lambda f, v, n: not same(f, v), on_missing=True),
    Operator("gt", _order(lambda a, b: a > b), _check_order, _prepare_order),
    Operator("gte", _order(lambda a, b: a >= b), _check_order, _prepare_order),
    Operator("lt", _order(lambda a, b: a < b), _check_order, _prepare_order),
    Operator("lte", _order(lambda a, b: a <= b), _check_order, _prepare_order),
    Operator("in", lambda f, v, n: any(same(f, x) for x in v), _check_list, tuple),
    Operator("nin", lambda f, v, n: not any(same(f, x) for x in v), _check_list, tuple,
             on_missing=True),
    Operator("exists", lambda f, v, n: bool(v),
             lambda v: None if isinstance(v, bool) else "needs true or false"),
    Operator("contains", _contains),
    Operator("matches", _matches, _check_regex),
    Operator("before", _relative(before=True), _check_relative, _prepare_relative),
    Operator("after", _relative(before=False), _check_relative, _prepare_relative),
)}
# `exists: false` holds exactly when the value is missing.
OPERATORS["exists"] = Operator("exists", lambda f, v, n: bool(v),
                               OPERATORS["exists"].check, on_missing=False)
