"""Scenario files (`*.scenario.yaml`, docs/testing.md): their shape, read with positions.

`load_scenario(path)` parses one file and checks it against the journeys it names, so a
typo in a journey, step, template or user id is a `file:line:column: message` error
rather than a confusing diff; it raises `InvalidScenario` (every problem listed) or
returns a `Scenario`: the journeys folder, the event lines as Segment events with their
times, and the expectations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.core.times import iso, parse_timestamp
from engine.qa.scenario_traits import trait_problems
from journeys.errors import InvalidJourney, Problem
from journeys.library import BUNDLED, bundled_library
from journeys.loaded import Library
from journeys.reads import events_read, near_miss
from journeys.textfile import read_text
from journeys.yamlsrc import Source, Where, load_yaml, plain
from rules import did_you_mean
from rules.durations import DurationError, parse_duration
from rules.errors import JourneymanError

SUFFIX = ".scenario.yaml"
# `.yml` too: a `cart.scenario.yml` was skipped without a word, and CI went green on it
SUFFIXES = (SUFFIX, ".scenario.yml")
EVENT_KINDS = ("track", "identify", "alias", "page")


class InvalidScenario(JourneymanError):  # noqa: N818 - reads like InvalidJourney
    """A scenario file does not validate; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem], title: str | None = None) -> None:
        self.problems = sorted(set(problems))
        self.title = title  # the scenario's own words, when the file got that far
        super().__init__("\n".join(str(p) for p in self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


# A time as written: a string, or what YAML made of an unquoted one. Checked by
# `_Checker.instant`, not by pydantic: no `datetime` in a model, because the module may
# be imported first under freezegun, whose FakeDatetime pydantic cannot build a schema for.
Instant = Any


class MessageSpec(_Strict):
    user: str
    journey: str | None = None
    step: str | None = None
    template: str | None = None
    at: Instant | None = None
    channel: str | None = None
    to: str | None = None
    subject: str | None = None


class ExitSpec(_Strict):
    user: str
    journey: str | None = None
    reason: str | None = None
    step: str | None = None
    at: Instant | None = None


class SkipSpec(_Strict):
    user: str
    journey: str | None = None
    step: str | None = None
    reason: str | None = None
    channel: str | None = None
    at: Instant | None = None


class DeferSpec(SkipSpec):
    until: Instant | None = None


class ProfileSpec(_Strict):
    traits: dict[str, Any] | None = None
    computed: dict[str, Any] | None = None


class ExpectSpec(_Strict):
    messages: list[MessageSpec] | None = None
    messages_include: list[MessageSpec] | None = None
    no_messages_for: list[str] | None = None
    exits: list[ExitSpec] | None = None
    exits_include: list[ExitSpec] | None = None
    skipped: list[SkipSpec] | None = None
    skipped_include: list[SkipSpec] | None = None
    deferred: list[DeferSpec] | None = None
    deferred_include: list[DeferSpec] | None = None
    profiles: dict[str, ProfileSpec] | None = None


class EventSpec(_Strict):
    at: Instant | None = None
    after: str | None = None
    user: str | None = None
    anonymous: str | None = None
    track: str | None = None
    identify: dict[str, Any] | None = None
    alias: str | None = None
    page: str | None = None
    properties: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    # `track:` a name a typo away from one the journeys read, on purpose (a client's
    # misspelled event must enter nobody): not refused as a typo (_check_event_names);
    # `identify:` traits no journey reads, on purpose (engine/qa/scenario_traits.py)
    unread: bool = False


class ScenarioSpec(_Strict):
    scenario: str
    journeys: str
    only: list[str] | None = None
    start: Instant | None = None
    profiles: dict[str, dict[str, Any] | None] | None = None
    events: list[EventSpec] = []
    until: Instant | None = None
    expect: ExpectSpec


KEYS = {name for model in (ScenarioSpec, ExpectSpec, EventSpec, MessageSpec, ExitSpec, DeferSpec,
                           ProfileSpec) for name in model.model_fields}

ExpectKind = Literal["messages", "exits", "skipped", "deferred"]


@dataclass(frozen=True, slots=True)
class Expected:
    """One expected record: the fields to compare (only those given) and where it is
    written (`line`), for the diff."""

    kind: ExpectKind
    fields: Mapping[str, Any]
    line: int

    @property
    def user(self) -> str:
        return str(self.fields["user"])

    @property
    def at(self) -> datetime | None:
        value = self.fields.get("at")
        return value if isinstance(value, datetime) else None


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """One event line, as the Segment event it becomes, at its time."""

    at: datetime
    event: dict[str, Any]
    line: int

    @property
    def user(self) -> str:
        return str(self.event.get("userId") or self.event.get("anonymousId"))

    def describe(self) -> str:
        """`track Product Viewed {price: 50}`: the line without its user and time."""
        kind = self.event["type"]
        if kind == "track":
            what = f"track {self.event['event']}"
        elif kind == "identify":
            what = "identify " + _short(self.event.get("traits") or {})
        elif kind == "alias":
            what = f"alias {self.event.get('previousId')} -> {self.event.get('userId')}"
        else:
            what = f"page {self.event.get('name') or ''}".rstrip()
        props = self.event.get("properties")
        return what + (f" {_short(props)}" if props else "")


@dataclass
class Scenario:
    file: str
    title: str
    journeys: Path
    only: list[str] | None
    start: datetime
    until: datetime | None
    events: list[ScenarioEvent]
    # (kind, exact?) -> expectations
    expectations: dict[tuple[ExpectKind, bool], list[Expected]] = field(default_factory=dict)
    no_messages_for: list[tuple[str, int]] = field(default_factory=list)  # (user, line)
    profiles: dict[str, tuple[ProfileSpec, int]] = field(default_factory=dict)
    line: int = 1


def flow(value: Any) -> str:
    """A value as YAML flow style, as a scenario writes it: `{consent: {email: true}}`."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _short(value: Mapping[str, Any], width: int = 70) -> str:
    text = flow(value)
    return text if len(text) <= width else text[:width - 4] + "...}"


def find_scenarios(paths: Iterable[Path]) -> list[Path]:
    """Every `*.scenario.yaml` in `paths` (files, or folders searched recursively), sorted,
    each once however many paths reach it (a folder and a file in it)."""
    found: dict[Path, Path] = {}
    for path in paths:
        here = (sorted(p for p in path.rglob("*.scenario.y*ml")
                       if p.is_file() and p.name.endswith(SUFFIXES)) if path.is_dir()
                else [path])
        for file in here:
            found.setdefault(file.resolve(), file)
    return list(found.values())


def read_spec(path: Path, display: str | None = None) -> tuple[ScenarioSpec, Source]:
    """The shape-valid spec of one file and its positioned source."""
    name = display or str(path)
    try:
        source = load_yaml(read_text(path, name), name)
    except InvalidJourney as exc:
        raise InvalidScenario(exc.problems) from None
    if not isinstance(source.data, dict):
        raise InvalidScenario([Problem(name, 1, 1, "a scenario file must be a mapping with "
                                                   "'scenario', 'journeys', 'events' and "
                                                   "'expect'")])
    try:
        return ScenarioSpec.model_validate(plain(source.data)), source
    except ValidationError as exc:
        raise InvalidScenario(_shape_problems(exc, source)) from None


def _shape_problems(exc: ValidationError, source: Source) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        # pydantic names the union member it tried ("str", "datetime"): not a place
        loc = tuple(p for p in err["loc"] if p not in ("str", "datetime", "dict[str,any]"))
        name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
        if err["type"] == "extra_forbidden":
            problems.append(source.problem(loc, f"unknown key {name!r}" + did_you_mean(name, KEYS),
                                           key=True))
        elif err["type"] == "missing":
            problems.append(source.problem(loc[:-1], f"missing required key {name!r}"))
        else:
            msg = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
            problems.append(source.problem(loc, f"{name}: {msg}" if name else msg))
    # a value that fails both members of a union is reported twice: keep one per place
    unique: dict[tuple[int, int], Problem] = {}
    for problem in problems:
        unique.setdefault((problem.line, problem.column), problem)
    return list(unique.values())


class _Checker:
    """Turns a shape-valid spec into a Scenario, collecting positioned problems."""

    def __init__(self, spec: ScenarioSpec, source: Source, folder: Path) -> None:
        self.spec, self.source, self.folder = spec, source, folder
        self.problems: list[Problem] = []

    def problem(self, where: Where, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(where, message, key=key))

    def instant(self, value: Instant | None, where: Where) -> datetime | None:
        if value is None:
            return None
        when = parse_timestamp(value)
        if when is None:
            self.problem(where, f"{where[-1]}: {value!r} is not an ISO 8601 time, like "
                                "2026-03-02T09:00:00Z")
        return when

    def journeys_folder(self) -> Path:
        if self.spec.journeys.strip() == BUNDLED:  # wherever journeyman is installed
            return bundled_library()
        folder = (self.folder / self.spec.journeys).resolve()
        # named as the user would type it (its files' problems name it so): relative to
        # the working folder when inside it
        with contextlib.suppress(ValueError):
            folder = folder.relative_to(Path.cwd())
        if not folder.is_dir():
            self.problem(("journeys",), f"journeys: no such folder {self.spec.journeys!r} "
                                        f"(relative to {self.folder})")
        return folder

    def start(self) -> datetime | None:
        start = self.instant(self.spec.start, ("start",))
        if start is None and self.spec.start is None:
            first = self.spec.events[0].at if self.spec.events else None
            start = self.instant(first, ("events", 0, "at"))
            if start is None:
                self.problem((), "missing required key 'start' (the fake clock's start; "
                                 "it may be left out when the first event has an `at`)")
        return start

    def events(self, start: datetime) -> list[ScenarioEvent]:
        events: list[ScenarioEvent] = []
        now = start
        for i, line in enumerate(self.spec.events):
            where: Where = ("events", i)
            when = self._event_time(line, where, now, start)
            now = when or now
            event = self._event(line, where, now)
            if event is not None:
                events.append(ScenarioEvent(now, event, self.source.position(where)[0]))
        return events

    def _event_time(self, line: EventSpec, where: Where, now: datetime,
                    start: datetime) -> datetime | None:
        if line.at is not None and line.after is not None:
            self.problem((*where, "after"), "give `at` or `after`, not both", key=True)
            return None
        if line.after is not None:
            try:
                return now + parse_duration(line.after)
            except DurationError as exc:
                self.problem((*where, "after"), str(exc))
                return None
        when = self.instant(line.at, (*where, "at"))
        if when is not None and when < now:
            self.problem((*where, "at"), f"at: {iso(when)} is before the previous line "
                         f"({iso(now)}); events are listed in time order"
                         if now > start else
                         f"at: {iso(when)} is before the scenario's start ({iso(start)})")
            return None
        return when

    def _event(self, line: EventSpec, where: Where, now: datetime) -> dict[str, Any] | None:
        kinds = [k for k in EVENT_KINDS if getattr(line, k) is not None]
        if len(kinds) != 1:
            self.problem(where, "each event line has exactly one of: " + ", ".join(EVENT_KINDS)
                         + (f" (this one has {', '.join(kinds)})" if kinds else ""))
            return None
        if line.user is None and line.anonymous is None:
            self.problem(where, "an event line needs a `user` or an `anonymous` id")
            return None
        kind = kinds[0]
        event: dict[str, Any] = {"type": kind, "timestamp": iso(now)}
        if line.user is not None:
            event["userId"] = line.user
        if line.anonymous is not None:
            event["anonymousId"] = line.anonymous
        if kind == "track":
            event["event"] = line.track
        elif kind == "identify":
            event["traits"] = dict(line.identify or {})
        elif kind == "alias":
            if line.user is None:
                self.problem((*where, "alias"), "alias: give the `user` the previous id "
                                                "becomes", key=True)
            event["previousId"] = line.alias
        elif kind == "page" and line.page:
            event["name"] = line.page
        if line.properties is not None:
            if kind not in ("track", "page"):
                self.problem((*where, "properties"), f"properties: a {kind} has none "
                             "(traits go in `identify:`)", key=True)
            event["properties"] = dict(line.properties)
        if line.context is not None:
            event["context"] = dict(line.context)
        return event


def _users(spec: ScenarioSpec) -> set[str]:
    users = set(spec.profiles or {})
    for line in spec.events:
        users.update(v for v in (line.user, line.anonymous, line.alias) if v is not None)
    return users


def _no_journey(jid: str, named: str, folder: Path, journeys: Iterable[str],
                told: set[str]) -> str:
    """"no journey 'x' in ..": and which folder `..` is, with what it holds or the id it
    nearly names; or, for a bundled journey, where the bundled ones are (the first time
    an id is named: `told` keeps the others short)."""
    text = f"no journey {jid!r} in {named}"
    if not Path(named).is_absolute():
        text += f", {folder}"
    hint = did_you_mean(jid, journeys)
    if hint or jid in told:
        return text + hint
    told.add(jid)
    if not Path(named).is_absolute():
        ids = sorted(journeys)
        text += f" (its journeys: {', '.join(ids[:8]) or 'none'}{', ...' * (len(ids) > 8)})"
    bundled = bundled_library().resolve()
    if folder.resolve() != bundled and (bundled / f"{jid}.yaml").is_file():
        text += (f"; {jid} is a bundled journey: `journeys: {BUNDLED}` names their folder, "
                 f"{bundled}")
    return text


def _check_ids(checker: _Checker, library: Library, users: set[str], folder: Path) -> None:
    """Names in the expectations must exist: a typo would make a test pass for nothing."""
    spec = checker.spec
    journeys = library.journeys
    told: set[str] = set()  # ids whose missing journey was explained already
    if spec.only == []:  # no journey would run: every expectation of none would pass
        checker.problem(("only",), "only: give at least one journey id (leave `only` out "
                                   "to run every journey of the folder)")
    for i, jid in enumerate(spec.only or []):
        if jid not in journeys:
            checker.problem(("only", i),
                            "only: " + _no_journey(jid, spec.journeys, folder, journeys, told))
    expect = spec.expect
    for kind in ("messages", "messages_include", "exits", "exits_include", "skipped",
                 "skipped_include", "deferred", "deferred_include"):
        for i, item in enumerate(getattr(expect, kind) or []):
            where: Where = ("expect", kind, i)
            if item.user not in users:
                checker.problem((*where, "user"), f"user: {item.user!r} appears in no profile "
                                "or event line of this scenario" + did_you_mean(item.user, users))
            jid = item.journey
            if jid is not None and jid not in journeys:
                missing = _no_journey(jid, spec.journeys, folder, journeys, told)
                checker.problem((*where, "journey"), "journey: " + missing)
                continue
            step = item.step
            if step is not None:
                steps = ({s.id for j in ([journeys[jid]] if jid else journeys.values())
                          for s in j.model.steps})
                if step not in steps:
                    checker.problem((*where, "step"), f"step: no step {step!r} in "
                                    + (f"journey {jid!r}" if jid else spec.journeys)
                                    + did_you_mean(step, steps))
            template = getattr(item, "template", None)
            if template is not None and template not in library.templates:
                checker.problem((*where, "template"), f"template: no template {template!r}"
                                + did_you_mean(template, library.templates.templates))
    for i, user in enumerate(expect.no_messages_for or []):
        if user not in users:
            checker.problem(("expect", "no_messages_for", i), f"no_messages_for: {user!r} "
                            "appears in no profile or event line of this scenario"
                            + did_you_mean(user, users))
    for user in expect.profiles or {}:
        if user not in users:
            checker.problem(("expect", "profiles", user), f"profiles: {user!r} appears in no "
                            "profile or event line of this scenario" + did_you_mean(user, users),
                            key=True)


def _check_event_names(checker: _Checker, library: Library) -> None:
    """A `track` name the journeys never read, a typo away from one they do (`Checkout
    Startd`, `Signed up`), entered nobody: a test of what does not happen passed for
    nothing. Names far from every one read (events nothing listens to) are fine, and so
    is a line that says `unread: true` (a negative test of a misspelled event)."""
    read = events_read(library)
    for i, line in enumerate(checker.spec.events):
        name = line.track
        if name is None or line.unread:
            continue
        best = near_miss(name, read)
        if best is not None:
            checker.problem(("events", i, "track"), f"track: no journey of "
                            f"{checker.spec.journeys} reads {name!r} (did you mean {best!r}? "
                            "`unread: true` on the line if it is meant)")


def _expectations(checker: _Checker) -> dict[tuple[ExpectKind, bool], list[Expected]]:
    out: dict[tuple[ExpectKind, bool], list[Expected]] = {}
    expect = checker.spec.expect
    kinds: tuple[ExpectKind, ...] = ("messages", "exits", "skipped", "deferred")
    for kind in kinds:
        for exact, key in ((True, kind), (False, f"{kind}_include")):
            items = getattr(expect, key)
            if items is None:
                continue
            listed: list[Expected] = []
            for i, item in enumerate(items):
                where: Where = ("expect", key, i)
                fields = {k: v for k, v in item.model_dump().items() if v is not None}
                for name in ("at", "until"):
                    if name in fields:
                        fields[name] = checker.instant(fields[name], (*where, name))
                reason = fields.get("reason")
                if kind == "exits" and isinstance(reason, str) \
                        and reason.startswith("exit_when:"):
                    # as `why` spells it (`exit_when: Order Completed`) or as the
                    # records do: one reason
                    fields["reason"] = "exit_when:" + reason.removeprefix("exit_when:").lstrip()
                listed.append(Expected(kind, fields, checker.source.position(where)[0]))
            out[(kind, exact)] = listed
    return out


def load_scenario(path: Path, library_loader: Any = None, display: str | None = None
                  ) -> tuple[Scenario, Library]:
    """Read and check one scenario file with its journeys (loaded by `library_loader`,
    a callable taking the folder and returning a Library, so callers can cache them)."""
    spec, source = read_spec(path, display)
    try:
        return _checked(spec, source, path, library_loader)
    except InvalidScenario as exc:
        exc.title = spec.scenario
        raise


def _checked(spec: ScenarioSpec, source: Source, path: Path, library_loader: Any
             ) -> tuple[Scenario, Library]:
    checker = _Checker(spec, source, path.parent)
    folder = checker.journeys_folder()
    start = checker.start()
    if checker.problems or start is None:
        raise InvalidScenario(checker.problems)
    events = checker.events(start)
    until = checker.instant(spec.until, ("until",))
    if until is not None and events and until < events[-1].at:
        checker.problem(("until",), f"until: {iso(until)} is before the last event "
                                    f"({iso(events[-1].at)})")
    if until is not None and until < start:
        checker.problem(("until",), f"until: {iso(until)} is before the start ({iso(start)})")
    expectations = _expectations(checker)
    if not expectations and not spec.expect.no_messages_for and not spec.expect.profiles:
        checker.problem(("expect",), "expect: give at least one expectation (messages, "
                                     "messages_include, no_messages_for, exits, skipped, "
                                     "deferred, profiles); a scenario that checks nothing "
                                     "cannot fail")
    if checker.problems:
        raise InvalidScenario(checker.problems)
    try:
        library: Library = library_loader(folder)
    except InvalidJourney as exc:
        pos = source.position(("journeys",))
        raise InvalidScenario([Problem(source.file, *pos, f"journeys: {spec.journeys} does "
                                       "not validate:"), *exc.problems]) from None
    _check_ids(checker, library, _users(spec), folder)
    _check_event_names(checker, library)
    checker.problems += trait_problems(
        spec.profiles or {}, [(i, line.identify) for i, line in enumerate(spec.events)
                              if line.identify and not line.unread],
        source, library, spec.journeys)
    if checker.problems:
        raise InvalidScenario(checker.problems)
    expect = spec.expect
    scenario = Scenario(
        source.file, spec.scenario, folder, spec.only, start, until, events, expectations,
        [(user, source.position(("expect", "no_messages_for", i))[0])
         for i, user in enumerate(expect.no_messages_for or [])],
        {user: (item, source.position(("expect", "profiles", user), key=True)[0])
         for user, item in (expect.profiles or {}).items()},
        source.position(("scenario",))[0])
    # The profiles are identify calls at the start, before the first event line.
    scenario.events[:0] = [
        ScenarioEvent(start, {"type": "identify", "userId": user, "traits": dict(traits or {}),
                              "timestamp": iso(start)}, source.position(("profiles", user))[0])
        for user, traits in (spec.profiles or {}).items()]
    return scenario, library
