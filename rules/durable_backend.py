"""The `durable` backend: durable-rules 2.0.28 as a stateless matcher (design.md).

One durable ruleset per Matcher (unique name on a private Host), a throwaway state id per
`match()`, `assert_fact`, `delete_state` in `finally`, actions that only record which
rule fired, and a lock around the host (it is not thread-safe). Each ruleset keeps
durable's answers to its latest distinct facts (`ANSWERS_KEPT`): a match is a pure
function of the flattened fact, and facts repeat (one an event name, a source, a flag).

What durable evaluates natively: the boolean structure (`all` → `$and`, `any` → `$or`),
string equality (`eq`/`ne` with a string operand) and numeric order (`gt`/`gte`/`lt`/`lte`
with a number operand). Facts are flattened into typed slots (`<path>__s` holds the value
only when it is a string, else a sentinel; `<path>__n` a number plus a `__ok` flag) so
durable's loose typing cannot disagree with the contract (`true` is not `1`, a missing
value fails `gt`). Everything else is pre-evaluated in Python into a 0/1 leaf fact that
durable then matches: `in`/`nin`/`contains`/`exists` (durable's `$nex` hangs on 2.0.28),
`matches` (durable's regex dialect is not Python's), `before`/`after` (relative to the
caller's `now`), equality on non-strings, and `not` (durable has no negation of a
sub-expression). The property test checks both backends agree.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from rules.conditions import AllOf, AnyOf, Compare, Condition, Not
from rules.evaluate import evaluate, lookup
from rules.matcher import event_name

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import durable_rules_engine as engine
    from durable.engine import Host

SENTINEL = "\x00none"
# Per ruleset: durable's answers to the latest distinct facts, each fact's JSON at most
# ANSWER_KEY_MAX characters (a fact holding a long string, such as a long property a
# rule compares, is asked of durable every time): at most ~0.7 MB a ruleset when full
ANSWERS_KEPT = 1024
ANSWER_KEY_MAX = 512
CATCH_ALL_NAME = "catch_all"
_LOCK = threading.Lock()
_HOST: Any = None
_names = itertools.count()
_states = itertools.count()


class _ForegroundHost(Host):  # type: ignore[misc]
    """A durable host without its background threads. `Host()` starts two timers that
    keep calling `dispatch()` and `dispatch_timers()` on every ruleset; `dispatch()`
    starts any pending action of any state, so it races the foreground match for the
    actions of the fact just asserted: the match then misses rules, or durable fails
    with error 307 ("could not complete and start action"), a few times per hundred
    thousand matches under load. We use neither durable's timers nor its asynchronous
    actions: every match runs its actions itself, under `_LOCK`."""

    def _run(self) -> None:
        return None


def _host() -> Any:
    global _HOST  # noqa: PLW0603 - one durable host per process; it owns the C engine
    if _HOST is None:
        _HOST = _ForegroundHost()
    return _HOST


def _key(path: tuple[str, ...]) -> str:
    return "__".join(path).replace(".", "_")


def _plain_number(value: Any) -> bool:
    """A number durable reads and compares exactly: it rejects exponents like 1e-09, an
    integer beyond a double's range failed the match ("number is infinity when parsed as
    double"), and it compares integers beyond 2**53 as doubles (2**70 + 1 was not
    greater than 2**70)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    # An int is written with digits only; a float as its repr, which is what JSON gets
    # (exponents from 1e16 and below 1e-4; nan and inf are not JSON at all)
    if isinstance(value, int):
        return abs(value) <= _DOUBLE_RANGE
    return math.isfinite(value) and "e" not in repr(value)


_DOUBLE_RANGE = 2**53  # ints up to this are exact as doubles (durable compares as doubles)


class _Translation:
    """Turns a condition into durable JSON plus the slot builders it needs."""

    def __init__(self) -> None:
        self.string_slots: set[tuple[str, ...]] = set()
        self.number_slots: set[tuple[str, ...]] = set()
        self.leaves: list[tuple[str, Condition]] = []

    def leaf(self, condition: Condition) -> dict[str, Any]:
        name = f"L{len(self.leaves)}"
        self.leaves.append((name, condition))
        return {name: 1}

    def expr(self, condition: Condition) -> dict[str, Any]:
        if isinstance(condition, AllOf):
            if not condition.items:
                return {"__always": 1}
            parts = [self.expr(i) for i in condition.items]
            return parts[0] if len(parts) == 1 else {"$and": parts}
        if isinstance(condition, AnyOf):
            parts = [self.expr(i) for i in condition.items]
            return parts[0] if len(parts) == 1 else {"$or": parts}
        if isinstance(condition, Not):
            return self.leaf(condition)
        return self.compare(condition)

    def compare(self, cond: Compare) -> dict[str, Any]:
        key = _key(cond.path)
        if cond.op in ("eq", "ne") and isinstance(cond.value, str) and cond.value != SENTINEL:
            self.string_slots.add(cond.path)
            return {f"{key}__s": cond.value} if cond.op == "eq" else {
                "$neq": {f"{key}__s": cond.value}}
        if cond.op in ("gt", "gte", "lt", "lte") and _plain_number(cond.value):
            self.number_slots.add(cond.path)
            op = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}[cond.op]
            return {"$and": [{f"{key}__ok": 1}, {op: {f"{key}__n": cond.value}}]}
        return self.leaf(cond)


class _Ruleset:
    """One durable ruleset: the rules that share a required event name (or none)."""

    def __init__(self, rules: Mapping[str, Condition], name: str) -> None:
        # durable's C engine is picky about names: letters, digits and _ only
        self.name = "rs_" + re.sub(r"\W", "_", name) + f"_{next(_names)}"
        self.t = _Translation()
        self.rules = dict(rules)
        # Every assert must match something: durable 2.0.28 corrupts its heap on the
        # "message not handled" path (free(): invalid pointer), so a catch-all rule
        # always fires and is dropped from the result.
        definition: dict[str, Any] = {CATCH_ALL_NAME: {"all": [{"m": {"__always": 1}}],
                                                         "run": _never_run}}
        self.rule_of: dict[str, str] = {}  # durable's rule name -> our rule id
        for index, (rule_id, condition) in enumerate(rules.items()):
            definition[f"r{index}"] = {"all": [{"m": self.t.expr(condition)}],
                                       "run": _never_run}
            self.rule_of[f"r{index}"] = rule_id
        with _LOCK:
            self.host = _host()
            self.host.set_rulesets({self.name: definition})
            self.handle = self.host.get_ruleset(self.name)._handle
        # durable's answer for each flattened fact asserted lately (its JSON text -> the
        # rules it fired): a match is a pure function of the fact (a throwaway state, no
        # timers), and the facts of one ruleset repeat: the bundled journeys' 10,892
        # matches of journey_bench.py's 3,000 events had 345 distinct facts. A repeat
        # skips the lock and four calls into durable's C engine. (A fact with a value
        # of many kinds, an email address compared, fills it and gains nothing: the
        # cost of a miss is one dictionary look-up.)
        self._answers: dict[str, tuple[str, ...]] = {}
        # the fact's slot names, built once (`fact` runs for every event and journey)
        self._strings = [(path, f"{_key(path)}__s") for path in self.t.string_slots]
        self._numbers = [(path, f"{_key(path)}__ok", f"{_key(path)}__n")
                         for path in self.t.number_slots]

    def fact(self, facts: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
        """The flattened fact, or None when durable cannot read one of its numbers."""
        fact: dict[str, Any] = {"__always": 1}
        for path, name in self._strings:
            value = lookup(facts, path)
            fact[name] = value if isinstance(value, str) else SENTINEL
        for path, ok_name, number_name in self._numbers:
            value = lookup(facts, path)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok and not _plain_number(value):
                return None
            fact[ok_name] = 1 if ok else 0
            fact[number_name] = value if ok else 0
        for name, cond in self.t.leaves:
            fact[name] = 1 if evaluate(cond, facts, now) else 0
        return fact

    def match(self, facts: Mapping[str, Any], now: datetime) -> list[str]:
        fact = self.fact(facts, now)
        if fact is None:
            # durable's JSON parser rejects exponents (1e-09, 1e+20): evaluate in Python.
            return [rid for rid, c in self.rules.items() if evaluate(c, facts, now)]
        text = _json(fact)
        known = self._answers.get(text)  # a lookup is safe beside the writes under _LOCK
        if known is not None:
            return list(known)
        with _LOCK:
            known = self._answers.get(text)  # another thread asked meanwhile
            if known is not None:
                return list(known)
            sid = f"s{next(_states)}"
            try:  # the fact's JSON ends with "}": the throwaway state id goes before it
                matched = self._assert(f'{text[:-1]},"sid":"{sid}"}}')
            finally:
                engine.delete_state(self.handle, sid)
            if matched is not None and len(text) <= ANSWER_KEY_MAX:
                if len(self._answers) >= ANSWERS_KEPT:
                    del self._answers[next(iter(self._answers))]  # the oldest
                self._answers[text] = tuple(matched)
        if matched is None:  # durable did not run the fact: the reference evaluator does
            return [rid for rid, c in self.rules.items() if evaluate(c, facts, now)]
        return matched

    def _assert(self, text: str) -> list[str] | None:
        """Assert the fact (its JSON text) and collect the rules it fired, straight from
        durable's C engine: durable's Python layer would build a closure, a promise and
        a state copy per fired rule only to call an action that records its name (three
        times the cost of the match itself)."""
        code, state = engine.assert_fact(self.handle, text)
        if code != 0:  # 1: not handled (the catch-all prevents it), 2: seen, 3: pending
            return None
        matched: list[str] = []
        action = engine.start_action_for_state(self.handle, state)
        if not action:  # the catch-all always fires: no action means durable lost it
            return None
        message = action[1]
        while message:
            for name in orjson.loads(message):
                if name in self.rule_of:
                    matched.append(self.rule_of[name])
            message = engine.complete_and_start_action(self.handle, state)
        return matched


class DurableMatcher:
    """Rules grouped by the event name they require, one durable ruleset per group, so an
    event is only asserted into the rulesets that can match it."""

    backend = "durable"

    def __init__(self, rules: Mapping[str, Condition], name: str) -> None:
        self.rule_ids = tuple(rules)
        groups: dict[str | None, dict[str, Condition]] = {}
        for rid, condition in rules.items():
            groups.setdefault(event_name(condition), {})[rid] = condition
        self._any = _Ruleset(groups.pop(None), name) if None in groups else None
        self._by_event = {ev: _Ruleset(group, f"{name}_{ev}")
                          for ev, group in groups.items() if ev is not None}

    def match(self, facts: Mapping[str, Any], now: datetime) -> frozenset[str]:
        event = facts.get("event")
        name = event.get("event") if isinstance(event, dict) else None
        matched: list[str] = []
        if self._any is not None:
            matched += self._any.match(facts, now)
        sub = self._by_event.get(name) if isinstance(name, str) else None
        if sub is not None:
            matched += sub.match(facts, now)
        return frozenset(matched)


def _json(fact: dict[str, Any]) -> str:
    """The fact as durable reads it; orjson is several times faster than the standard
    library here, which remains for what orjson refuses (integers beyond 64 bits,
    strings with lone surrogates) so that durable sees the same text as before."""
    try:
        return orjson.dumps(fact).decode()
    except TypeError:
        return json.dumps(fact, ensure_ascii=False)


def _never_run(_: Any) -> None:
    """Actions are never run: `_Ruleset._assert` reads the fired rules' names."""

