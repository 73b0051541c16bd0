"""`journeyman simulate`: replay Segment-format JSON lines through journeys in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.core.times import iso, parse_timestamp
from engine.runtime.events import BadEvent
from engine.testing import ExitRecord, InMemoryEngine, SentMessage
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

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": [{"profile": m.profile, "journey": m.journey, "step": m.step,
                          "channel": m.channel, "template": m.template, "at": iso(m.at)}
                         for m in self.messages],
            "exits": [{"profile": e.profile, "journey": e.journey, "step": e.step,
                       "reason": e.reason, "at": iso(e.at)} for e in self.exits],
        }


def read_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SimulationError(f"{path}:{number}:{exc.colno}: not JSON: {exc.msg}") from None
        if not isinstance(event, dict):
            raise SimulationError(f"{path}:{number}:1: each line must be a JSON object")
        if parse_timestamp(event.get("timestamp")) is None:
            raise SimulationError(f"{path}:{number}:1: every event needs an ISO 8601 "
                                  "'timestamp' in a simulation")
        event["_line"] = number
        events.append(event)
    return events


def simulate(path: str | Path, events_file: str | Path, *, until: str | None = None,
             backend: str = "durable") -> SimulationResult:
    events = read_events(Path(events_file))
    events.sort(key=lambda e: (parse_timestamp(e["timestamp"]), e["_line"]))
    start = parse_timestamp(events[0]["timestamp"]) if events else datetime(2026, 1, 1, tzinfo=UTC)
    stop = parse_timestamp(until) if until else None
    if until and stop is None:
        raise SimulationError(f"bad --until {until!r}: use ISO 8601")
    assert start is not None
    eng = InMemoryEngine.from_folder(path, start=start, backend=backend)
    for event in events:
        when = parse_timestamp(event["timestamp"])
        assert when is not None
        if stop is not None and when > stop:
            break
        line = event.pop("_line")
        try:
            eng.post(event)
        except BadEvent as exc:
            raise SimulationError(f"{events_file}:{line}:1: {exc}") from None
    if stop is not None:
        eng.advance_to(max(stop, eng.now))
    else:
        eng.run_until_idle(DEFAULT_HORIZON)
    return SimulationResult(eng.sent, eng.exits, len(events), eng.now)


def format_timeline(result: SimulationResult) -> str:
    rows: list[tuple[datetime, str]] = []
    rows += [(m.at, f"{iso(m.at)}  {m.profile:<14} {m.journey}/{m.step}: {m.channel} "
              f"{m.template}" + (f" to {m.to}" if m.to else "")
              + (f" — {m.subject!r}" if m.subject else "")) for m in result.messages]
    rows += [(e.at, f"{iso(e.at)}  {e.profile:<14} {e.journey}/{e.step}: exit ({e.reason})")
             for e in result.exits]
    rows.sort(key=lambda r: r[0])
    lines = [text for _, text in rows]
    lines.append(f"-- {result.events} event(s), {len(result.messages)} message(s), "
                 f"{len(result.exits)} exit(s)")
    return "\n".join(lines) + "\n"
