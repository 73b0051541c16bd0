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
from rules.regex_guard import exponential_risk

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


# Each is exponential in CPython's `re` or one step from it: `^(a?a?)+$` takes 10 s on
# "a" * 20 + "b", `(a?){26}a{26}` 2.6 s on "a" * 26, `^(a*)+$` 0.45 s on "a" * 22 + "!"
# (x4 every 2 characters). A repeated body that can match nothing is refused even when
# CPython happens to stop its empty turns (`(?:a?)+b`, `(a|)+` stay fast): `(a?){25}` is not.
REFUSED = [
    "^(a+)+$", "(a*)*", r"(\w+\s?)+", "(a+){20}b", "((a+b)+)+", "(?:a+)+b", r"(\d+)*x",
    "(a{1,3}){10}b",
    "(a|a)+", "(a|aa)+", "(.|x)*", "(x(a|a)y)+", "(foo|)+",
    # `?` bodies and bodies that can match nothing
    "^(a?a?)+$", "(a?){25}a{25}", "(?:a?)+b", "(a|)+", "(a*)+", "(?:a+|b)*a?$",
    r"^(\w+\s?)*$", r"^(\d+-?)+$", "^(ab?b?)+$", "(a(-{0,2})?)*",
    # a leading character fixes where a turn starts, not how its inside splits
    "(x[a-c]+[a-c]*z)+", "(x[a-c]+a[a-c]*z)+", r"(\.(ab|a)[b-c]*z)+", r"(\.[\w.]+)*$",
    r"(_\w+)*$", "(?i)^[A-Z][a-z]+( [A-Z][a-z]+a?)*$",
    # OWASP's examples
    "^(([a-z])+.)+[A-Z]([a-z])+$",
    r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|"
    r"([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
]
ACCEPTED = [
    r"^[^@]+@example\.com$", "(foo|bar)+", r"\d{3}-\d{4}", "^utm_",
    r"^(\d{1,3}\.){3}\d{1,3}$", r"^([a-z0-9-]+\.)+[a-z]{2,}$",
    r"^[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}$", r"(\w+\s)+", "(ab)+", "a+b+",
    "(?:foo|bar)*baz", r"^(\d{3}-){2}\d{4}$", ".*gmail.*", r"^\+34\d{9}$", "(?i)(a|A)+",
    # a required character before the inner repeat, that it cannot take, starts each turn
    r"^\w+(\.\w+)*$", r"^[a-z]+(-[a-z]+)*$", r"^[A-Z][a-z]+( [A-Z][a-z]+)*$",
    r"^/products(/[a-z0-9-]+)*/?$", r"^[a-z0-9]+([._-][a-z0-9]+)*@",
    r"^(?:[a-z0-9]+(?:-[a-z0-9]+)*\.)+[a-z]{2,}$", r"(\.(jpg|jpeg|png))+$",
    "(a|ab)+", "(ab?)+", r"^\w+(,\s*\w+)*$", r"(?i)^[a-z]+(-[a-z]+)*$",
    # everyday: emails, UTM parameters, URLs, SKUs, phones, codes
    r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$",
    r"^[a-z0-9]+([._-][a-z0-9]+)*@[a-z0-9]+(-[a-z0-9]+)*(\.[a-z]{2,})+$",
    r"[?&]utm_source=([^&#]+)", r"^utm_(source|medium|campaign|term|content)$",
    r"utm_campaign=(spring|summer)_sale(_[a-z0-9]+)?",
    r"^https?://[a-z0-9.-]+(/[\w.-]+)*/?(\?.*)?$", r"^https://(www\.)?example\.com/",
    r"^SKU-\d{4,8}$", r"^[A-Z0-9]{4}(-[A-Z0-9]{4}){2,3}$", r"^\+?[0-9 ()-]{7,20}$",
    r"^(?:\+34)?[67]\d{8}$", r"^[A-Z]{2}\d{2}( ?\d{4}){4,7}$", r"^\d{5}(-\d{4})?$",
    r"^(?:[A-Z][a-z]+ )+[A-Z][a-z]+$", r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
]
# Long runs of what the patterns repeat, each ended by a character that makes them fail.
HOSTILE_UNITS = ["a", "A", "1", "a.", ".a", "a-", "-a", "a ", " Aa", "/a", "ab", ".jpg", "a_",
                 "a,", "1 ", "1-", "a1", "A1-"]


@pytest.mark.parametrize("pattern", REFUSED)
def test_exponential_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition({"event.properties.q": {"matches": pattern}})
    message = str(info.value)
    assert message.startswith("'matches' pattern can take exponential time on some inputs "
                              "(a repeated group that can match the same text in more than "
                              "one way: ")
    assert "rewrite it" in message


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_ordinary_pattern_is_accepted(pattern: str) -> None:
    parse_condition({"event.properties.q": {"matches": pattern}})


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_an_accepted_pattern_is_fast_on_hostile_values(pattern: str) -> None:
    """The property the guard is for: bounded time on the worst values it lets through."""
    cond = parse_condition({"event.properties.q": {"matches": pattern}})
    for unit in HOSTILE_UNITS:
        for end in "!@":
            value = (unit * MATCH_LIMIT)[:MATCH_LIMIT - 1] + end
            started = time.perf_counter()
            evaluate(cond, {"event": {"event": "Search", "properties": {"q": value}}}, NOW)
            assert time.perf_counter() - started < 1, (pattern, unit, end)


def test_both_lists_are_told_apart_by_the_guard() -> None:
    for pattern in REFUSED:
        assert exponential_risk(pattern), pattern
    for pattern in ACCEPTED:
        assert exponential_risk(pattern) is None, pattern


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
