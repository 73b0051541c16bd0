"""`journeyman simulate`: replay Segment-format JSON lines through journeys in memory,
and print who got what, when; and what did not go out (skipped by the policy or a
template error, with the template's file and line when known), or went out later
(deferred by quiet hours)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.core.times import iso, parse_timestamp
from engine.qa.replay import EventLog, read_log
from engine.runtime.events import BadEvent
from engine.testing import DeferRecord, ExitRecord, InMemoryEngine, SentMessage, SkipRecord
from journeys.errors import InvalidJourney
from journeys.loaded import Library
from journeys.textfile import read_text
from rules.errors import JourneymanError

DEFAULT_HORIZON = timedelta(days=400)


class SimulationError(JourneymanError):
    """Bad events file or options; the message names the line."""


@dataclass
class SimulationResult:
    messages: list[SentMessage] = field(default_factory=list)
    exits: list[ExitRecord] = field(default_factory=list)
    events: int = 0
    ended_at: datetime | None = None
    skipped: list[SkipRecord] = field(default_factory=list)
    deferred: list[DeferRecord] = field(default_factory=list)
    # lines of the events file not simulated: no event (`file:line:column: why`, the
    # first UNREADABLE_TOLD of them told), or an event the API would refuse
    unreadable: int = 0
    unreadable_lines: list[str] = field(default_factory=list)
    rejected_lines: list[str] = field(default_factory=list)

    @property
    def not_simulated(self) -> int:
        """Lines of the events file left out: the command exits 1 when there are any."""
        return self.unreadable + len(self.rejected_lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": [{"profile": m.profile, "journey": m.journey, "step": m.step,
                          "channel": m.channel, "template": m.template, "at": iso(m.at)}
                         for m in self.messages],
            "exits": [{"profile": e.profile, "journey": e.journey, "step": e.step,
                       "reason": e.reason, "at": iso(e.at)} for e in self.exits],
            "skipped": [{"profile": s.profile, "journey": s.journey, "step": s.step,
                         "channel": s.channel, "reason": s.reason, "at": iso(s.at),
                         "details": dict(s.details)} for s in self.skipped],
            "deferred": [{"profile": d.profile, "journey": d.journey, "step": d.step,
                          "channel": d.channel, "reason": d.reason, "at": iso(d.at),
                          "until": iso(d.until) if d.until else None}
                         for d in self.deferred],
            "unreadable": self.unreadable,
            "unreadable_lines": list(self.unreadable_lines),
            "rejected": len(self.rejected_lines),
            "rejected_lines": list(self.rejected_lines),
        }


# "template 'x' (templates/x.yaml:5, text): ..." (journeys/templating.py)
# "template 'x' (path/to/x.html:3, html): ..." in a render error; a folder's name may
# hold parentheses of its own ("Journeys (v2)"): the path runs from the first one to the
# first ".ext:N" after it
STATED_PLACE = re.compile(r"\((.+?\.(yaml|html|txt|j2)):(\d+)[,)]")


def locate_render_errors(skipped: list[SkipRecord], library: Library) -> list[SkipRecord]:
    """Add `file` (and `line`, when it can be found) to each template error's details:
    the template the step sends and, for an undefined name, the first line using it."""
    located = []
    for record in skipped:
        journey = library.journeys.get(record.journey)
        if record.reason != "template_error" or journey is None:
            located.append(record)
            continue
        step = next((s for s in journey.model.steps if s.id == record.step), None)
        send = getattr(step, "send", None)
        template = getattr(send, "template", None)
        details = dict(record.details)
        folder = library.templates.folder
        stated = STATED_PLACE.search(str(details.get("error", "")))
        if stated:  # the render error names its file and line already
            details["file"], details["line"] = stated[1], int(stated[3])
        elif template is not None and folder is not None:
            path = folder / f"{template}.yaml"
            details["file"] = str(path)
            line = _line_of(path, str(details.get("error", "")))
            if line is not None:
                details["line"] = line
        channel = record.channel or getattr(send, "channel", None)
        located.append(SkipRecord(record.profile, record.journey, record.step, record.reason,
                                  record.at, channel, details))
    return located


def place_of(details: Mapping[str, Any]) -> str:
    """` (file:line)` of a render error, unless its message names them already."""
    where = details.get("file")
    if where is None:
        return ""
    if "line" in details:
        where = f"{where}:{details['line']}"
    return "" if str(where) in str(details.get("error", "")) else f" ({where})"


def _line_of(path: Path, error: str) -> int | None:
    stated = re.search(r"\bline (\d+)", error)
    if stated:
        return int(stated[1])
    name = re.search(r"'(\w+)' is undefined|has no attribute '(\w+)'", error)
    if name is None:
        return None
    word = name[1] or name[2]
    try:
        lines = read_text(path).splitlines()
    except InvalidJourney:  # cannot read it, not UTF-8: no line to point at
        return None
    return next((n for n, text in enumerate(lines, 1)
                 if re.search(rf"\b{re.escape(word)}\b", text) and "{" in text), None)


def read_events(path: Path) -> EventLog:
    """The events of a JSON-lines file, read as `journeyman replay` reads its log: a line
    that is no event (not JSON, not an object, no timestamp...) is noted in the log's
    `unreadable` as `file:line:column: why`, and the lines after it are read."""
    return read_log(path, purpose="to be simulated")


def simulate(path: str | Path, events_file: str | Path, *, until: str | None = None,
             backend: str = "durable") -> SimulationResult:
    """Play the events of `events_file` through the journeys at `path`. Lines that are no
    event, and events the API would refuse, are not played: the result lists them
    (`unreadable_lines`, `rejected_lines`) and the rest is simulated."""
    log = read_events(Path(events_file))
    # timestamp order; ties keep the file's
    events = sorted(zip(log.events, log.lines, strict=True), key=lambda e: (e[0][0], e[1]))
    start = events[0][0][0] if events else datetime(2026, 1, 1, tzinfo=UTC)
    stop = parse_timestamp(until) if until else None
    if until and stop is None:
        raise SimulationError(f"bad --until {until!r}: use ISO 8601")
    eng = InMemoryEngine.from_folder(path, start=start, backend=backend)
    rejected: list[str] = []
    for (when, event), line in events:
        if stop is not None and when > stop:
            break
        try:
            eng.post(event, unread=True)
        except BadEvent as exc:  # the API would refuse it: told, the rest is simulated
            rejected.append(f"{events_file}:{line}:1: {exc}")
    if stop is not None:
        eng.advance_to(max(stop, eng.now))
    else:
        eng.run_until_idle(DEFAULT_HORIZON)
    return SimulationResult(eng.sent, eng.exits, len(events), eng.now,
                            locate_render_errors(eng.skipped, eng.library), eng.deferred,
                            log.unreadable, log.unreadable_told, rejected)


def format_timeline(result: SimulationResult) -> str:
    # (time, person, 1 for an exit, line): in one instant, each person's lines together,
    # their exit last (a send step then an exit step: the send's outcome, then the exit)
    rows: list[tuple[datetime, str, int, str]] = []
    rows += [(m.at, m.profile, 0, f"{iso(m.at)}  {m.profile:<14} {m.journey}/{m.step}: "
              f"{m.channel} {m.template}" + (f" to {m.to}" if m.to else "")
              + (f" — {m.subject!r}" if m.subject else "")) for m in result.messages]
    rows += [(e.at, e.profile, 1,
              f"{iso(e.at)}  {e.profile:<14} {e.journey}/{e.step}: exit ({e.reason})")
             for e in result.exits]
    rows += [(s.at, s.profile, 0, f"{iso(s.at)}  {s.profile:<14} {s.journey}/{s.step}: "
              f"{s.channel or 'send'} skipped ({s.reason}){_why(s)}") for s in result.skipped]
    rows += [(d.at, d.profile, 0,
              f"{iso(d.at)}  {d.profile:<14} {d.journey}/{d.step}: {d.channel or 'send'} "
              f"deferred ({d.reason}) until {iso(d.until) if d.until else '?'}"
              + (f", {d.details['local_time']} in {d.details['timezone']}"
                 if "local_time" in d.details and "timezone" in d.details else ""))
             for d in result.deferred]
    rows.sort(key=lambda r: r[:3])
    lines = [text for *_, text in rows]
    lines.append(f"-- {result.events} event(s), {len(result.messages)} message(s), "
                 f"{len(result.skipped)} skipped, {len(result.deferred)} deferred, "
                 f"{len(result.exits)} exit(s)")
    return "\n".join(lines) + "\n"


def _why(record: SkipRecord) -> str:
    details = record.details
    if record.reason == "template_error":
        return f": {details.get('error', '')}{place_of(details)}"
    if record.reason == "frequency_cap" and "max" in details:
        return f": {details.get('sent')} sent, at most {details['max']} per " \
               f"{timedelta(seconds=float(details.get('per_seconds', 0)))}"
    if record.reason == "no_consent" and "consent" in details:
        return f": consent {details['consent']}"
    return ""
