"""Run a scenario on the in-memory engine and compare what happened with what it expects.

`run_file(path)` loads a `*.scenario.yaml` (engine/qa/scenario_file.py), plays its event
lines on a fake clock (`engine.testing.InMemoryEngine`), runs on to `until` or until
nothing is waiting, and returns a `ScenarioResult`: every expectation matched against
the records, as rows of one timeline (events, messages, exits, skips and deferrals in
time order) that engine/qa/scenario_report.py prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

from engine.core.times import iso, parse_timestamp
from engine.qa.scenario_file import (
    Expected,
    ExpectKind,
    InvalidScenario,
    ProfileSpec,
    Scenario,
    load_scenario,
)
from engine.runtime.events import BadEvent
from engine.runtime.identity import person_of, profile_named
from engine.testing import InMemoryEngine
from journeys.errors import Problem
from journeys.library import bundled_library, journeys_path
from journeys.loaded import Library
from journeys.loader import POLICY_FILE, load_path, load_policy
from journeys.model import Policy
from rules import did_you_mean
from rules.errors import JourneymanError

IDLE_HORIZON = timedelta(days=400)  # run_until_idle's limit when a scenario has no `until`

Mark = Literal["event", "ok", "missing", "unexpected", "differs", "order", "context"]
FAILING: frozenset[str] = frozenset({"missing", "unexpected", "differs", "order"})


# --- journeys ----------------------------------------------------------------------------

@cache
def bundled_policy() -> Policy:
    folder = bundled_library()
    policy, problems = load_policy(folder)
    assert not problems, problems
    return policy


def load_journeys(folder: Path) -> Library:
    """A journeys folder with the policy it runs under: its own `policy.yaml`, else the
    bundled one (as `journeyman serve` would run it); `journeyman:bundled` is the
    bundled journeys' folder. Raises InvalidJourney."""
    folder = journeys_path(folder)
    library = load_path(folder)
    if folder.is_dir() and not (folder / POLICY_FILE).is_file():
        library.policy = bundled_policy()
    return library


def engine_for(library: Library, start: datetime, only: list[str] | None = None,
               backend: str = "durable", decision_log: bool = True) -> InMemoryEngine:
    if only is not None:  # a typo would run no journey, and `sent == []` would pass
        missing = [jid for jid in only if jid not in library.journeys]
        if missing:
            raise KeyError(f"no such journeys: {', '.join(missing)}"
                           + did_you_mean(missing[0], library.journeys))
        library = replace(library, journeys={k: v for k, v in library.journeys.items()
                                             if k in only})
    return InMemoryEngine(library, start=start, backend=backend, decision_log=decision_log)


# --- records as comparable fields ----------------------------------------------------------

def actual_records(eng: InMemoryEngine) -> dict[ExpectKind, list[dict[str, Any]]]:
    """What happened, per kind, as the fields an expectation can name (`user`: the
    person's userId, else anonymousId, as the scenario's events named them; a profile's
    id may be another: engine/runtime/identity.py)."""
    users: dict[str, str] = {}

    def user(profile_id: str) -> str:
        if profile_id not in users:
            users[profile_id] = person_of(eng.store, profile_id).value
        return users[profile_id]

    return {
        "messages": [{"user": user(m.profile), "journey": m.journey, "step": m.step,
                      "template": m.template, "at": m.at, "channel": m.channel, "to": m.to,
                      "subject": m.subject} for m in eng.sent],
        "exits": [{"user": user(e.profile), "journey": e.journey, "step": e.step,
                   "reason": e.reason, "at": e.at} for e in eng.exits],
        "skipped": [{"user": user(s.profile), "journey": s.journey, "step": s.step,
                     "reason": s.reason, "channel": s.channel, "at": s.at} for s in eng.skipped],
        "deferred": [{"user": user(d.profile), "journey": d.journey, "step": d.step,
                      "reason": d.reason, "channel": d.channel, "at": d.at, "until": d.until}
                     for d in eng.deferred],
    }


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, datetime) and isinstance(actual, datetime):
        return expected == actual
    return bool(expected == actual)


def differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """The fields of `expected` that `actual` does not have, as readable notes."""
    notes = []
    for name, want in expected.items():
        got = actual.get(name)
        if not _same(want, got):
            notes.append(f"{name}: expected {_show(want)}, got {_show(got)}"
                         + _delta(want, got))
    return notes


def _show(value: Any) -> str:
    if isinstance(value, datetime):
        return iso(value)
    return repr(value) if isinstance(value, str) else str(value)


def _delta(want: Any, got: Any) -> str:
    if not (isinstance(want, datetime) and isinstance(got, datetime)):
        return ""
    gap = got - want
    word = "later" if gap > timedelta() else "earlier"
    return f" ({_duration(abs(gap))} {word})"


def _duration(gap: timedelta) -> str:
    seconds = int(gap.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# --- the result --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Row:
    """One line of the timeline."""

    mark: Mark
    at: datetime | None
    kind: str  # event | messages | exits | skipped | deferred
    fields: Mapping[str, Any]
    line: int | None = None  # the scenario line it comes from (events, expectations)
    notes: tuple[str, ...] = ()
    text: str = ""  # for events: the event line as written


@dataclass(frozen=True, slots=True)
class ProfileMismatch:
    user: str
    path: str
    expected: Any
    actual: Any
    line: int

    def __str__(self) -> str:
        got = "missing" if self.actual is _MISSING else _show(self.actual)
        return f"{self.user} {self.path}: expected {_show(self.expected)}, got {got}"


class _Missing:
    """The value of a trait the profile does not have."""

    def __repr__(self) -> str:
        return "missing"


_MISSING: Any = _Missing()


@dataclass
class ScenarioResult:
    file: str
    title: str
    rows: list[Row] = field(default_factory=list)
    profile_mismatches: list[ProfileMismatch] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # the file is invalid
    error: str | None = None  # the journeys could not run it
    seconds: float = 0.0
    start: datetime | None = None
    ended: datetime | None = None
    journeys: str = ""

    @property
    def invalid(self) -> bool:
        return bool(self.problems) or self.error is not None

    @property
    def passed(self) -> bool:
        return (not self.invalid and not self.profile_mismatches
                and not any(r.mark in FAILING for r in self.rows))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            if row.mark in FAILING:
                out[row.mark] = out.get(row.mark, 0) + 1
        if self.profile_mismatches:
            out["profile"] = len(self.profile_mismatches)
        return out


# --- matching ----------------------------------------------------------------------------

def _match_kind(kind: ExpectKind, exact: bool, expected: list[Expected],
                actual: list[dict[str, Any]]) -> tuple[list[Row], set[int]]:
    """Rows for one list of expectations; also the indexes of the actual records used."""
    rows: list[Row] = []
    used: dict[int, Expected] = {}
    left: list[Expected] = []
    for item in expected:  # 1. records that match every field given
        hit = next((i for i, rec in enumerate(actual)
                    if i not in used and not differences(item.fields, rec)), None)
        if hit is None:
            left.append(item)
        else:
            used[hit] = item
    # exact lists are in time order: a record matched out of that order is misplaced,
    # but records at the same instant may come in any order (nothing orders them)
    position = {id(item): n for n, item in enumerate(expected)}
    listed = sorted(used, key=lambda i: position[id(used[i])])
    timed = sorted(listed, key=lambda i: (actual[i]["at"] is None, actual[i]["at"] or 0))
    misplaced = {a for a, b in zip(listed, timed, strict=True) if a != b} if exact else set()
    for i, item in used.items():
        mark: Mark = "order" if i in misplaced else "ok"
        notes = ("listed out of time order in the scenario",) if mark == "order" else ()
        rows.append(Row(mark, actual[i]["at"], kind, actual[i], item.line, notes))
    for item in left:  # 2. the same user and step (or template), other details differ
        near = [i for i, rec in enumerate(actual) if i not in used and _near(item, rec)]
        if near:
            best = min(near, key=lambda i: _distance(item, actual[i]))
            used[best] = item
            rows.append(Row("differs", actual[best]["at"], kind, actual[best], item.line,
                            tuple(differences(item.fields, actual[best]))))
        else:
            rows.append(Row("missing", item.at, kind, item.fields, item.line))
    for i, rec in enumerate(actual):  # 3. what nobody expected
        if i in used:
            continue
        if exact:
            rows.append(Row("unexpected", rec["at"], kind, rec))
        elif any(rec["user"] == item.user for item in expected):
            rows.append(Row("context", rec["at"], kind, rec))
    return rows, set(used)


def _near(item: Expected, rec: Mapping[str, Any]) -> bool:
    """The record `item` was most likely meant for: the same user (and journey, when it
    names one), and the same step, template or time, whichever it names."""
    fields = item.fields
    if rec["user"] != fields["user"]:
        return False
    if "journey" in fields and rec.get("journey") != fields["journey"]:
        return False
    keys = [k for k in ("step", "template", "at") if k in fields]
    return not keys or any(_same(fields[k], rec.get(k)) for k in keys)


def _distance(item: Expected, rec: Mapping[str, Any]) -> tuple[int, float]:
    gap = abs((rec["at"] - item.at).total_seconds()) if item.at is not None else 0.0
    return len(differences(item.fields, rec)), gap


def _subset(expected: Mapping[str, Any], actual: Mapping[str, Any], path: str, user: str,
            line: int) -> list[ProfileMismatch]:
    out: list[ProfileMismatch] = []
    for key, want in expected.items():
        where = f"{path}.{key}"
        if key not in actual:
            out.append(ProfileMismatch(user, where, want, _MISSING, line))
        elif isinstance(want, Mapping) and isinstance(actual[key], Mapping):
            out += _subset(want, actual[key], where, user, line)
        elif not _equal_value(want, actual[key]):
            out.append(ProfileMismatch(user, where, want, actual[key], line))
    return out


def _equal_value(want: Any, got: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(want, bool) and isinstance(got, bool) and want == got
    if isinstance(want, datetime) or isinstance(got, datetime):
        return parse_timestamp(want) == parse_timestamp(got)
    return bool(want == got)


def compare(scenario: Scenario, eng: InMemoryEngine) -> ScenarioResult:
    """Every expectation of `scenario` against what `eng` recorded."""
    result = ScenarioResult(scenario.file, scenario.title)
    records = actual_records(eng)
    rows = [Row("event", e.at, "event", {"user": e.user}, e.line, text=e.describe())
            for e in scenario.events]
    shown: set[int] = set()  # messages already on a row as unexpected or matched
    person = _person_namer(eng)
    for (kind, exact), expected in scenario.expectations.items():
        found, used = _match_kind(kind, exact, [_as_person(item, person) for item in expected],
                                  records[kind])
        rows += found
        if kind == "messages":
            shown |= used if not exact else set(range(len(records[kind])))
    for user, line in scenario.no_messages_for:
        for i, rec in enumerate(records["messages"]):
            if rec["user"] == person(user) and i not in shown:
                rows.append(Row("unexpected", rec["at"], "messages", rec, line,
                                (f"no messages were expected for {user}",)))
    for user, (spec, line) in scenario.profiles.items():
        result.profile_mismatches += _profile_mismatches(eng, user, spec, line)
    rows += _context(rows, records, {person(m.user) for m in result.profile_mismatches})
    result.rows = sorted(rows, key=_row_order)
    return result


def _context(rows: list[Row], records: Mapping[ExpectKind, list[dict[str, Any]]],
             also: set[str]) -> list[Row]:
    """Everything else that happened to the people a failing row (or `also`) is about,
    unmarked: a MISSING push alone did not say that the person left at the split as
    holdout, which is why."""
    failing = also | {str(r.fields["user"]) for r in rows if r.mark in FAILING}
    on_rows = {id(r.fields) for r in rows}
    return [Row("context", rec["at"], kind, rec) for kind, found in records.items()
            for rec in found if rec["user"] in failing and id(rec) not in on_rows]


def _person_namer(eng: InMemoryEngine) -> Callable[[str], str]:
    """A scenario's id (a userId or an anonymousId) as the records name that person at
    the end (`actual_records`): visitor `v-1` aliased to `ana` is `ana`. Compared as
    written, `no_messages_for: [v-1]` passed while v-1 got the browse reminder."""
    def person(user: str) -> str:
        pid = profile_named(eng.store, user)
        return user if pid is None else person_of(eng.store, pid).value
    return person


def _as_person(item: Expected, person: Callable[[str], str]) -> Expected:
    who = person(item.user)
    return item if who == item.user else replace(item, fields={**item.fields, "user": who})


_KIND_ORDER = {"event": 0, "messages": 1, "skipped": 2, "deferred": 3, "exits": 4}


def _row_order(row: Row) -> tuple[bool, float, int, int]:
    """Time order; rows without a time (an expectation that gave none) go last."""
    stamp = row.at.timestamp() if row.at is not None else 0.0
    return row.at is None, stamp, _KIND_ORDER.get(row.kind, 9), row.line or 0


def _profile_mismatches(eng: InMemoryEngine, user: str, spec: ProfileSpec,
                        line: int) -> list[ProfileMismatch]:
    try:
        view = eng.profile(user)
    except KeyError:
        return [ProfileMismatch(user, "profile", "a profile", _MISSING, line)]
    out: list[ProfileMismatch] = []
    if spec.traits:
        out += _subset(spec.traits, view.traits, "traits", user, line)
    if spec.computed:
        out += _subset(spec.computed, view.computed, "computed", user, line)
    return out


# --- running -----------------------------------------------------------------------------

def run_scenario(scenario: Scenario, library: Library, *, backend: str = "durable"
                 ) -> ScenarioResult:
    clock_start = time.perf_counter()
    try:
        eng = engine_for(library, scenario.start, scenario.only, backend)
        for event in scenario.events:
            try:
                eng.post(event.event, unread=True)  # names checked as it loaded
            except BadEvent as exc:
                result = ScenarioResult(scenario.file, scenario.title)
                result.problems = [Problem(scenario.file, event.line, 1, str(exc))]
                return result
        if scenario.until is not None:
            eng.advance_to(scenario.until)
        else:
            eng.run_until_idle(IDLE_HORIZON)
    except JourneymanError as exc:  # the journeys cannot run it (a loop, a bad condition)
        result = ScenarioResult(scenario.file, scenario.title)
        result.error = f"the journeys failed to run this scenario: {exc}"
        return result
    result = compare(scenario, eng)
    result.seconds = time.perf_counter() - clock_start
    result.start, result.ended = scenario.start, eng.now
    result.journeys = _relative(scenario.journeys)
    return result


class LibraryCache:
    """Journeys folders loaded once per run (many scenarios share one folder)."""

    def __init__(self) -> None:
        self._loaded: dict[Path, Library] = {}

    def __call__(self, folder: Path) -> Library:
        key = folder.resolve()  # a relative folder is the working folder's (it may change)
        if key not in self._loaded:
            self._loaded[key] = load_journeys(folder)
        return self._loaded[key]


def run_file(path: Path, *, backend: str = "durable", libraries: LibraryCache | None = None,
             display: str | None = None) -> ScenarioResult:
    """Load, run and compare one scenario file; an invalid file gives a result with its
    problems (never raises for the user's mistakes)."""
    name = display or str(path)
    try:
        scenario, library = load_scenario(path, libraries or LibraryCache(), name)
    except InvalidScenario as exc:
        result = ScenarioResult(name, exc.title or path.name)
        result.problems = exc.problems
        return result
    return run_scenario(scenario, library, backend=backend)


def _relative(path: Path) -> str:
    """`path` as the user would type it: relative to the working folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
