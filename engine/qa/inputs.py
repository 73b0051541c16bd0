"""The JSON files the QA commands are given, read in one place so that each wrong one is
an error naming the file (and the line) and saying what shape was expected, never a
traceback from deep inside: one JSON object (`preview`'s `--profile` and `--event`), or
Segment events as JSON lines (`demo --events`, refused whole at its first bad line,
before the service starts).

`journeyman replay` and `journeyman simulate` read their events with
engine/qa/replay.py's `read_log` (orjson on bytes, for logs of millions of lines), with
the same `file:line:column` messages, every bad line told and the rest played.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.core.times import parse_timestamp
from engine.jsonfast import nested_past
from engine.runtime.events import MAX_DEPTH
from journeys.errors import InvalidJourney
from journeys.textfile import read_text
from rules.errors import JourneymanError

# Objects and arrays in an input, the outermost being level 1: as the API's events
# (engine/runtime/events.py); deeper is refused before parsing, at its line and column.
TOO_DEEP = f"nested too deeply (at most {MAX_DEPTH} levels)"


class InputFileError(JourneymanError):
    """A JSON input file that cannot be read, is not JSON, or is not of the shape asked
    for; the message names the file and says what was expected."""


# What `preview --profile` and `preview --event` hold: the fields whose type the code
# relies on (null stands for absent), each with the types it may have.
PROFILE_SHAPE = 'a JSON object: {"id": "...", "traits": {...}, "computed": {...}}'
PROFILE_FIELDS: Mapping[str, tuple[type, ...]] = {
    "id": (str, int), "traits": (dict,), "computed": (dict,)}
EVENT_SHAPE = ('a JSON object, a Segment event: {"type": "track", "event": "...", '
               '"properties": {...}, ...}')
EVENT_FIELDS: Mapping[str, tuple[type, ...]] = {
    "type": (str,), "event": (str,), "userId": (str, int, float),
    "anonymousId": (str, int, float),
    "properties": (dict,), "traits": (dict,), "context": (dict,), "timestamp": (str,)}

_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"), (dict, "an object"), (list, "an array"), (str, "a string"),
    (int, "a number"), (float, "a number"))


def kind_of(value: Any) -> str:
    """What a JSON value is, as a message says it: `an array`, `a string`, ..."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)


def _kinds(types: tuple[type, ...]) -> str:
    names = dict.fromkeys(name for kind, name in _KINDS if kind in types)
    return " or ".join(names)


def read_object(path: Path, option: str, shape: str,
                fields: Mapping[str, tuple[type, ...]] | None = None) -> dict[str, Any]:
    """The JSON object in the file at `path`, given as `option` (messages name both:
    `--profile p.json`); `shape` says what was expected; `fields` gives the types a
    field may have when it is there and not null."""
    label = f"{option} {path}"
    try:  # cannot read, not UTF-8: one problem at its line and column, as for journeys
        text = read_text(path)
    except InvalidJourney as exc:  # its message names the file, at the line and column
        raise InputFileError(f"{option} {exc}") from None
    deep = nested_past(text, MAX_DEPTH)
    if deep is not None:  # before parsing: json.loads recursed into a RecursionError
        line = text.count("\n", 0, deep) + 1
        raise InputFileError(f"{label}:{line}:{deep - text.rfind(chr(10), 0, deep)}: "
                             f"{TOO_DEEP}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{label}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}"
                             ) from None
    if not isinstance(value, dict):
        raise InputFileError(f"{label}: expected {shape}, got {kind_of(value)}")
    for name, types in (fields or {}).items():
        got = value.get(name)
        if got is not None and (not isinstance(got, types) or isinstance(got, bool)):
            raise InputFileError(f"{label}: {name!r} must be {_kinds(types)}, got "
                                 f"{kind_of(got)}")
    return value


def read_event_lines(path: Path, *, error: type[JourneymanError] = InputFileError,
                     purpose: str = "") -> list[tuple[int, dict[str, Any]]]:
    """The events of a JSON-lines file with their line numbers (blank lines skipped; the
    numbers are the file's). Each must be a JSON object with an ISO 8601 `timestamp`;
    anything else is an `error` naming `file:line:column`. `purpose` ends the message
    about a missing timestamp (`in a simulation`)."""
    try:  # cannot read, not UTF-8: one problem at its line and column, as for journeys
        lines = read_text(path).splitlines()
    except InvalidJourney as exc:
        raise error(str(exc)) from None
    events: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        deep = nested_past(line, MAX_DEPTH)
        if deep is not None:
            raise error(f"{path}:{number}:{deep + 1}: {TOO_DEEP}")
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{number}:{exc.colno}: not JSON: {exc.msg}") from None
        if not isinstance(event, dict):
            raise error(f"{path}:{number}:1: each line must be a JSON object (an event), "
                        f"got {kind_of(event)}")
        if parse_timestamp(event.get("timestamp")) is None:
            raise error(f"{path}:{number}:1: every event needs an ISO 8601 'timestamp'"
                        + (f" {purpose}" if purpose else ""))
        events.append((number, event))
    return events


__all__ = ["EVENT_FIELDS", "EVENT_SHAPE", "PROFILE_FIELDS", "PROFILE_SHAPE", "TOO_DEEP",
           "InputFileError", "kind_of", "read_event_lines", "read_object"]
