"""Operators on both backends, parse errors, durations, and a property test that the
durable and python backends agree with the reference evaluator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import (
    BACKENDS,
    ConditionError,
    DurationError,
    compile_ruleset,
    evaluate,
    parse_condition,
    parse_duration,
)

NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
FACTS: dict[str, Any] = {
    "event": {"event": "Order Completed", "properties": {
        "total": 120, "source": "web", "tags": ["sale", "new"], "flag": True,
        "at": "2026-01-01T00:00:00Z", "recent": "2026-03-01T00:00:00Z", "none": None}},
    "profile": {"id": "u1", "traits": {"email": "ana@example.com", "vip": True, "n": 1},
                "computed": {"orders_count": 0}},
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("raw", "expected"), [
    ({"event.event": "Order Completed"}, True),
    ({"event.properties.total": {"gt": 100}}, True),
    ({"event.properties.total": {"lte": 100}}, False),
    ({"event.properties.source": {"in": ["web", "app"]}}, True),
    ({"event.properties.source": {"nin": ["web"]}}, False),
    ({"event.properties.missing": {"nin": ["web"]}}, True),
    ({"event.properties.missing": {"ne": "x"}}, True),
    ({"event.properties.missing": {"eq": "x"}}, False),
    ({"event.properties.missing": {"gt": 1}}, False),
    ({"event.properties.none": {"exists": False}}, True),
    ({"profile.traits.email": {"exists": True}}, True),
    ({"event.properties.tags": {"contains": "sale"}}, True),
    ({"profile.traits.email": {"contains": "@example"}}, True),
    ({"profile.traits.email": {"matches": r"^ana@"}}, True),
    ({"event.properties.at": {"before": "90d"}}, False),
    ({"event.properties.at": {"before": "30d"}}, True),
    ({"event.properties.recent": {"after": "7d"}}, True),
    ({"event.properties.recent": {"after": "2026-03-02T00:00:00Z"}}, False),
    ({"profile.traits.vip": True}, True),
    ({"profile.traits.n": {"eq": True}}, False),  # true is not 1
    ({"event.properties.source": {"gt": 3}}, False),  # type mismatch: false, no error
    ({"any": [{"profile.traits.vip": False}, {"profile.id": "u1"}]}, True),
    ({"not": {"profile.id": "u1"}}, False),
    ({"all": [{"profile.computed.orders_count": 0}, {"event.properties.total": {"gte": 120}}]},
     True),
])
def test_operators(backend: str, raw: dict[str, Any], expected: bool) -> None:
    condition = parse_condition(raw)
    assert evaluate(condition, FACTS, NOW) is expected
    matcher = compile_ruleset({"r": condition}, backend=backend, name="ops")
    assert (matcher.match(FACTS, NOW) == {"r"}) is expected


def test_parse_errors_say_where_and_what() -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition({"all": [{"event.properties.total": {"gtt": 1}},
                                 {"profle.x": {"eq": 1}}, {"event.x": {"in": 3}}]},
                        where=("when",))
    assert [(p.where, p.message) for p in info.value.problems] == [
        (("when", "all", 0, "event.properties.total", "gtt"),
         "unknown operator 'gtt' (did you mean 'gt'?)"),
        (("when", "all", 1, "profle.x"), "path 'profle.x' must start with event., trigger., "
         "profile.traits., profile.computed., profile.id or enrollment."),
        (("when", "all", 2, "event.x", "in"), "'in' needs a list"),
    ]


@pytest.mark.parametrize(("path", "meant"), [
    ("profile.trait.vip", "profile.traits.vip"),
    ("profle.traits.vip", "profile.traits.vip"),
    ("profile.computd.orders_count", "profile.computed.orders_count"),
    ("evnt.properties.price", "event.properties.price"),
    ("enrolment.data.step", "enrollment.data.step"),
])
def test_a_misspelled_path_start_says_the_path_meant(path: str, meant: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse_condition({path: {"eq": 1}})
    [problem] = info.value.problems
    assert problem.message.endswith(f"enrollment. (did you mean {meant!r}?)")


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1w", 604800),
    ("1h30m", 5400), ("P1DT2H", 93600), ("PT15M", 900), ("P2W", 1209600)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "message"), [
    ("3 days", "bad duration '3 days': use 30s, 15m, 1h, 2d, 1w or ISO 8601 like P1DT2H"),
    ("P1M", "bad duration 'P1M': months and years vary in length; use days (like 30d) or a "
     "calendar wait with `until`"),
    ("0s", "bad duration '0s': must be longer than zero"),
])
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message


PATHS = ["event.properties.a", "event.properties.b", "profile.traits.c"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-3, 3) | st.sampled_from([1e-09, -2.5e-12, 1e20]),
                   st.sampled_from(["x", "y", "", "2026-03-01T00:00:00Z"]),
                   st.lists(st.sampled_from(["x", 1, True]), max_size=3))
OPERANDS = {
    "eq": st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "y"])),
    "ne": st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from(["x", "y"])),
    "gt": st.integers(-3, 3), "gte": st.floats(-3, 3) | st.sampled_from([1e-09, -2.5e-12, 1e20]), "lt": st.integers(-3, 3),
    "lte": st.integers(-3, 3), "in": st.lists(st.sampled_from(["x", 1, True]), max_size=3),
    "nin": st.lists(st.sampled_from(["x", 1, True]), max_size=3), "exists": st.booleans(),
    "contains": st.sampled_from(["x", 1]), "matches": st.sampled_from(["^x", "y$", "."]),
    "before": st.sampled_from(["1d", "2026-02-01T00:00:00Z"]),
    "after": st.sampled_from(["10d", "2026-02-01T00:00:00Z"]),
}


def test_the_property_test_draws_every_operator() -> None:
    """A new operator in rules/operators.py gets operands here, so both backends are
    checked against the reference evaluator on it too."""
    from rules import OPERATORS

    assert sorted(OPERANDS) == sorted(OPERATORS)


@st.composite
def leaves(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(sorted(OPERANDS)))
    return {draw(st.sampled_from(PATHS)): {op: draw(OPERANDS[op])}}


CONDITIONS = st.recursive(leaves(), lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
    st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
    inner.map(lambda x: {"not": x})), max_leaves=6)
FACT_DICTS = st.fixed_dictionaries({}, optional={"a": VALUES, "b": VALUES})


@settings(max_examples=200, deadline=None)
@given(raws=st.lists(CONDITIONS, min_size=1, max_size=4), props=FACT_DICTS,
       traits=st.fixed_dictionaries({}, optional={"c": VALUES}))
def test_backends_agree(raws: list[dict[str, Any]], props: dict[str, Any],
                        traits: dict[str, Any]) -> None:
    rules = {f"r{i}": parse_condition(raw) for i, raw in enumerate(raws)}
    facts = {"event": {"event": "E", "properties": props}, "profile": {"traits": traits}}
    expected = frozenset(rid for rid, c in rules.items() if evaluate(c, facts, NOW))
    for backend in BACKENDS:
        ruleset = compile_ruleset(rules, backend=backend)
        assert ruleset.match(facts, NOW) == expected, backend
        assert ruleset.match(facts, NOW) == expected, backend  # durable: from its memory


def test_durable_answers_a_repeated_fact_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A match is a pure function of the flattened fact, so durable is asked once per
    distinct fact; the answers kept are bounded (the oldest goes first), and a fact that
    depends on the time (`before`, pre-evaluated against `now`) is a new fact at
    another time, never an old answer."""
    import rules.durable_backend as durable

    asserted: list[str] = []
    real = durable.engine.assert_fact

    def counting(handle: int, text: str) -> Any:
        asserted.append(text)
        return real(handle, text)

    monkeypatch.setattr(durable.engine, "assert_fact", counting)
    monkeypatch.setattr(durable, "ANSWERS_KEPT", 3)
    rules = {"big": parse_condition({"event.properties.total": {"gt": 100}}),
             "vip": parse_condition({"profile.traits.tier": {"eq": "vip"}}),
             "recent": parse_condition({"event.properties.at": {"after": "1d"}})}
    ruleset = compile_ruleset(rules, backend="durable", name="memory")

    def facts(total: int, tier: str = "vip") -> dict[str, Any]:
        return {"event": {"event": "E", "properties": {"total": total,
                                                       "at": "2026-03-01T12:00:00Z"}},
                "profile": {"traits": {"tier": tier}}}

    assert ruleset.match(facts(150), NOW) == {"big", "vip", "recent"}
    assert ruleset.match(facts(150), NOW) == {"big", "vip", "recent"}
    assert ruleset.match(facts(50, "gold"), NOW) == {"recent"}
    assert len(asserted) == 2  # the repeat was answered from memory
    # a day later the same event is no longer recent: a new fact, asked of durable
    assert ruleset.match(facts(150), NOW + timedelta(days=2)) == {"big", "vip"}
    assert len(asserted) == 3
    # bounded: a fourth distinct fact pushes the oldest out, which is asked again
    assert ruleset.match(facts(7), NOW) == {"vip", "recent"}
    assert len(asserted) == 4
    assert ruleset.match(facts(150), NOW) == {"big", "vip", "recent"}
    assert len(asserted) == 5
    memory = ruleset._any or next(iter(ruleset._by_event.values()))  # type: ignore[attr-defined]
    assert len(memory._answers) == 3
    # a fact whose JSON is longer than ANSWER_KEY_MAX (a long string a rule compares) is
    # asked of durable every time, and takes no place
    monkeypatch.setattr(durable, "ANSWER_KEY_MAX", 60)
    kept = dict(memory._answers)
    assert ruleset.match(facts(150, "v" * 80), NOW) == {"big", "recent"}
    assert ruleset.match(facts(150, "v" * 80), NOW) == {"big", "recent"}
    assert len(asserted) == 7
    assert memory._answers == kept


def test_backends_agree_on_integers_beyond_64_bits_and_a_doubles_range() -> None:
    """Events may carry integers beyond 64 bits: durable's parser takes them as doubles
    (one beyond a double's range failed the match: "number is infinity when parsed as
    double") and compares past 2**53 as doubles, so those are evaluated in Python."""
    rules = {op: parse_condition({"event.properties.a": {op: 3}}) for op in ("gt", "lt")}
    for value in (2**63, 2**70 + 1, -(2**70), 10**308, 10**400, -(10**400)):
        facts = {"event": {"event": "E", "properties": {"a": value}}}
        expected = frozenset(["gt"] if value > 0 else ["lt"])
        for backend in BACKENDS:
            assert compile_ruleset(rules, backend=backend).match(facts, NOW) == expected
    # durable compares numbers beyond 2**53 as doubles: near neighbours were equal there
    for value, op, operand in ((2**70 + 1, "gt", 2**70), (2**70, "gte", 2**70 + 1),
                               (2**63, "gt", 2**63 - 1), (2**64 - 1, "gt", 2**64 - 2),
                               (2**53 + 1, "gt", 2**53), (2**53 + 1, "gt", 9007199254740992.0),
                               (-(2**70) - 1, "lt", -(2**70))):
        close = {"r": parse_condition({"event.properties.a": {op: operand}})}
        facts = {"event": {"event": "E", "properties": {"a": value}}}
        expected = frozenset(["r"] if {"gt": value > operand, "gte": value >= operand,
                                       "lt": value < operand}[op] else [])
        for backend in BACKENDS:
            assert compile_ruleset(close, backend=backend).match(facts, NOW) == expected, (
                backend, value, op, operand)


def test_the_durable_host_runs_no_background_dispatcher() -> None:
    """durable's Host starts threads that keep starting any pending action of any
    ruleset; they race a match for its own fact's actions (missed rules, or durable's
    error 307, under load). Our host has none, and matches from threads agree with the
    reference evaluator."""
    import threading
    from datetime import UTC, datetime

    from rules import compile_ruleset, parse_condition
    from rules.durable_backend import _host

    host = _host()
    assert not hasattr(host, "_d_timer")
    assert not hasattr(host, "_t_timer")
    rules = {"step": parse_condition({"event.event": {"eq": "Step"}}),
             "many": parse_condition({"profile.computed.n": {"gte": 2}})}
    durable, python = (compile_ruleset(rules, backend=b, name="threads") for b in
                       ("durable", "python"))
    now = datetime(2026, 3, 2, tzinfo=UTC)
    wrong: list[int] = []

    def run(seed: int) -> None:
        for i in range(3000):
            facts = {"event": {"event": ("Step", "Other")[(i + seed) % 2]},
                     "profile": {"computed": {"n": (i * seed) % 4}}}
            if durable.match(facts, now) != python.match(facts, now):
                wrong.append(i)

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_backends_read_any_mapping_as_the_reference_evaluator_does() -> None:
    """A profile's traits are a Mapping, not always a dict (a read-only view): every
    backend reads through it as `lookup` does, `eq` on a string included."""
    from types import MappingProxyType

    rules = {"vip": parse_condition({"profile.traits.tier": {"eq": "vip"}}),
             "not_vip": parse_condition({"not": {"profile.traits.tier": {"eq": "vip"}}})}
    facts = {"event": {"event": "E"}, "profile": {"traits": MappingProxyType({"tier": "vip"})}}
    for backend in BACKENDS:
        assert compile_ruleset(rules, backend=backend).match(facts, NOW) == {"vip"}, backend


def test_a_durable_backend_that_does_not_load_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """durable-rules installs on Python 3.13 and fails at its first import (its C extension
    calls PyEval_CallObject, which 3.13 removed): compiling a ruleset says what to do,
    as an error of ours, not an ImportError from inside the library."""
    import sys

    from rules.errors import JourneymanError, RulesBackendError

    # As on 3.13: the extension's import fails; the backend's module imported afresh
    monkeypatch.setitem(sys.modules, "durable_rules_engine", None)
    monkeypatch.delitem(sys.modules, "rules.durable_backend", raising=False)
    rules = {"signed_up": parse_condition({"event.event": {"eq": "Signed Up"}})}
    with pytest.raises(RulesBackendError, match=r"Python 3\.11 or 3\.12") as raised:
        compile_ruleset(rules, backend="durable")
    assert isinstance(raised.value, JourneymanError)
    assert "--backend python" in str(raised.value)
    # the python backend still compiles and matches there
    matcher = compile_ruleset(rules, backend="python")
    assert matcher.match({"event": {"event": "Signed Up"}}, NOW) == {"signed_up"}


def test_the_package_refuses_the_pythons_durable_rules_does_not_load_on() -> None:
    """pip refuses to install on 3.13 (a clear message at install, not an error at run)."""
    from importlib.metadata import metadata

    from packaging.specifiers import SpecifierSet

    allowed = SpecifierSet(metadata("journeyman")["Requires-Python"])
    assert "3.11.7" in allowed
    assert "3.12.1" in allowed
    assert "3.13.0" not in allowed
