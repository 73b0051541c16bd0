"""Hostile input to the rules layer: patterns that take exponential time, values too
long to match in bounded time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from rules import (
    BACKENDS,
    ConditionError,
    DurationError,
    compile_ruleset,
    evaluate,
    parse_condition,
    parse_duration,
)
from rules.operators import MATCH_LIMIT

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.mark.parametrize("pattern", [
    "^(a+)+$", "(a*)*", r"(\w+\s?)+", "(a+){20}b", "((a+b)+)+", "(?:a+)+b", r"(\d+)*x",
    "(a{1,3}){10}b",
    "(a|a)+", "(a|ab)+", "(.|x)*", "(x(a|a)y)+", "(foo|)+",
])
def test_exponential_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition({"event.properties.q": {"matches": pattern}})
    message = str(info.value)
    assert message.startswith("'matches' pattern can take exponential time on some inputs "
                              "(a repeated group that can match the same text in more than "
                              "one way: ")
    assert "rewrite it" in message


@pytest.mark.parametrize("pattern", [
    r"^[^@]+@example\.com$", "(foo|bar)+", r"\d{3}-\d{4}", "^utm_",
    r"^(\d{1,3}\.){3}\d{1,3}$", r"^([a-z0-9-]+\.)+[a-z]{2,}$",
    r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", r"(\w+\s)+", "(ab)+", "a+b+",
    "(?:foo|bar)*baz", r"^(\d{3}-){2}\d{4}$", ".*gmail.*", r"^\+34\d{9}$", "(?i)(a|A)+",
])
def test_ordinary_pattern_is_accepted(pattern: str) -> None:
    parse_condition({"event.properties.q": {"matches": pattern}})


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reads_a_bounded_prefix_of_the_value(backend: str) -> None:
    """A polynomial pattern that validation accepts, on a 32 KB value: bounded work."""
    cond = parse_condition({"event.properties.q": {"matches": r"\d*x"}})
    facts = {"event": {"event": "Search", "properties": {"q": "1" * 32_000}}}
    matcher = compile_ruleset({"r": cond}, backend=backend, name="hostile_regex")
    started = time.perf_counter()
    assert not matcher.match(facts, NOW)
    assert time.perf_counter() - started < 2
    # past the limit is not read: a value whose `x` comes after it does not match
    late = {"event": {"event": "Search", "properties": {"q": "1" * MATCH_LIMIT + "x"}}}
    assert not evaluate(cond, late, NOW)
    early = {"event": {"event": "Search", "properties": {"q": "1" * (MATCH_LIMIT - 1) + "x"}}}
    assert evaluate(cond, early, NOW)


@pytest.mark.parametrize("text", [
    "36526d", "3000000d", "99999999999d", "P3000000D", "PT999999999999S", "5218w",
    "1" * 5000 + "s", "9" * 30 + "d",
])
def test_a_duration_over_100_years_is_refused_with_its_own_error(text: str) -> None:
    with pytest.raises(DurationError, match=r"longer than the maximum of 36525d \(100 years\)"):
        parse_duration(text)


def test_the_longest_duration_is_100_years() -> None:
    assert parse_duration("36525d") == timedelta(days=36525)
    assert parse_duration("P5217W") == timedelta(weeks=5217)
