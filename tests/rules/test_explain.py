"""Why a condition is false, in words: the first comparison that failed, with its
value; and the values a condition reads (the decision log, `journeyman why`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rules import evaluate, parse_condition
from rules.explain import explain, values

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
FACTS: dict[str, Any] = {
    "event": {"event": "Product Viewed", "properties": {"price": 10, "source": "ads"}},
    "profile": {"id": "u1", "traits": {"plan": "basic", "vip": True}, "computed": {}},
}


@pytest.mark.parametrize(("raw", "why"), [
    ({"event.properties.price": {"gte": 20}}, "event.properties.price 10 is not >= 20"),
    ({"profile.traits.plan": "premium"}, "profile.traits.plan 'basic' is not = 'premium'"),
    ({"profile.traits.country": {"in": ["ES", "FR"]}},
     "profile.traits.country is missing (needs in ['ES', 'FR'])"),
    ({"profile.traits.email": {"exists": True}}, "profile.traits.email is missing"),
    ({"profile.traits.vip": {"exists": False}}, "profile.traits.vip is true, not missing"),
    ({"all": [{"event.properties.source": "ads"}, {"event.properties.price": {"gt": 50}}]},
     "event.properties.price 10 is not > 50"),
    ({"any": [{"event.properties.price": {"gt": 50}}, {"profile.traits.plan": "gold"}]},
     "none of: event.properties.price 10 is not > 50; profile.traits.plan 'basic' is not = "
     "'gold'"),
    ({"not": {"profile.traits.plan": "basic"}}, "not (profile.traits.plan is 'basic') is false"),
    # no double negative ("'basic' is not != 'basic'", "'ads' is not not in [...]")
    ({"profile.traits.plan": {"ne": "basic"}}, "profile.traits.plan is 'basic' (needs != 'basic')"),
    ({"event.properties.source": {"nin": ["ads", "mail"]}},
     "event.properties.source 'ads' is in ['ads', 'mail'] (needs not in)"),
])
def test_the_failing_comparison_is_named_with_its_value(raw: dict[str, Any], why: str) -> None:
    condition = parse_condition(raw)
    assert not evaluate(condition, FACTS, NOW)
    assert explain(condition, FACTS, NOW) == why


def test_an_operator_without_a_symbol_is_written_as_its_name_with_spaces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A new operator is one entry in rules/operators.py: explanations and diagrams write
    it as its name with spaces (`ends with`), not its key, with no entry in SYMBOLS."""
    from rules.explain import written
    from rules.operators import OPERATORS, Operator

    monkeypatch.setitem(OPERATORS, "ends_with", Operator(
        "ends_with", lambda fact, operand, now: isinstance(fact, str) and fact.endswith(operand)))
    condition = parse_condition({"profile.traits.plan": {"ends_with": "pro"}})
    assert explain(condition, FACTS, NOW) == "profile.traits.plan 'basic' is not ends with 'pro'"
    assert written(condition) == "profile.traits.plan ends with 'pro'"


def test_a_condition_that_holds_has_nothing_to_explain() -> None:
    condition = parse_condition({"event.properties.price": {"lt": 20},
                                 "not": {"profile.traits.plan": "gold"}})
    assert evaluate(condition, FACTS, NOW)
    assert explain(condition, FACTS, NOW) is None


def test_values_read_by_a_condition_are_bounded() -> None:
    facts = {**FACTS, "event": {"properties": {"price": 10, "note": "x" * 500}}}
    condition = parse_condition({"event.properties.price": {"gte": 20},
                                 "event.properties.note": {"contains": "y"},
                                 "profile.traits.country": "ES"})
    read = values(condition, facts)
    assert read["event.properties.price"] == 10
    assert read["profile.traits.country"] == "missing"
    assert len(read["event.properties.note"]) == 80


def test_written_says_a_whole_condition_in_words() -> None:
    """A diagram's branch edge says its condition (`journeyman graph`, the dashboard)."""
    from rules.conditions import parse_condition
    from rules.explain import written

    assert written(parse_condition({"profile.traits.vip": {"eq": True}})) == (
        "profile.traits.vip = true")
    both = parse_condition({"any": [{"event.properties.price": {"lt": 20}},
                                    {"all": [{"profile.traits.plan": {"in": ["a", "b"]}},
                                             {"not": {"profile.traits.email": {
                                                 "exists": True}}}]}]})
    assert written(both) == ("event.properties.price < 20 or (profile.traits.plan in "
                             "['a', 'b'] and not (profile.traits.email exists))")
    assert written(parse_condition({})) == "always"
