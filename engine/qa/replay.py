"""`journeyman replay`: what the journeys would have done with a recorded event log.

The events (a Segment JSON-lines log, or the `events` table of a store, read only) are
replayed in timestamp order through the journeys in a throwaway `InMemoryStore` on a
fake clock: between two events every timer that came due fires at its time, the outbox
is delivered (to a recording channel) under the journeys' policy, so quiet hours defer
and caps skip as they would have. At the end the clock runs on to `--to`, or until no
journey is waiting. The report (engine/qa/replay_report.py) counts, per journey and
step, what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.core.times import iso, parse_timestamp
from engine.jsonfast import loads, nested_past
from engine.qa.inputs import TOO_DEEP
from engine.qa.replay_report import ReplayReport, build_report
from engine.qa.scenarios import IDLE_HORIZON, engine_for, load_journeys
from engine.runtime.events import MAX_DEPTH, MAX_EVENT_BYTES, YEARS, BadEvent
from engine.runtime.why import why as explain
from engine.testing import InMemoryEngine
from journeys.textfile import not_utf8
from rules.errors import JourneymanError

Progress = Callable[[int, int, datetime], None]  # (events done, total, fake now)
PROGRESS_EVERY = 100
UTF8_BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 32 * MAX_EVENT_BYTES  # a log's line, read at most (an event is far shorter)
UNREADABLE_TOLD = 1000  # unreadable lines told one by one; past them, only counted


class ReplayError(JourneymanError):
    """An unreadable event log or database, or bad options; the message says where."""


@dataclass
class EventLog:
    """Events to replay, each with its instant, in the order they were read."""

    events: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    source: str = ""
    lines: list[int] = field(default_factory=list)  # each event's line (--db: row id)
    # Lines (or --db rows) that could not be read: not replayed, the rest is. `unreadable`
    # counts them all; `unreadable_told` says why for the first UNREADABLE_TOLD of them
    # (`file:line:column: why`), so a log of garbage does not fill the memory with words.
    unreadable: int = 0
    unreadable_told: list[str] = field(default_factory=list)
    # --db rows whose body has no timestamp (the API always writes one; a row imported
    # or edited by hand may not): replayed at the row's `received_at`, as the API times
    # an event sent without one. How many, and the first (`event 5 at ...`).
    received_at_used: int = 0
    received_at_first: str = ""

    def skip(self, why: str) -> None:
        """Note a line that cannot be replayed, and why."""
        self.unreadable += 1
        if len(self.unreadable_told) < UNREADABLE_TOLD:
            self.unreadable_told.append(why)


def read_log(path: Path, purpose: str = "to be replayed") -> EventLog:
    """A JSON-lines Segment log. A line that is not a JSON object, or has no ISO 8601
    `timestamp`, is not replayed: it is noted in the log's `unreadable` with
    `file:line:column: why`, and the lines after it are read (a replay without times means
    nothing; one bad line of a year's export should not hide the other 89,000). A file
    that cannot be opened is an error. `purpose` ends the message about a missing
    timestamp (`simulate --events` reads its file here too: `to be simulated`)."""
    log = EventLog(source=str(path))
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror}") from None
    offset = 0  # of the line in the file, for a byte that is not UTF-8
    with handle:
        # A line read whole, however long, was a 400 MB line's 1.7 GB and a MemoryError's
        # traceback: no line longer than an event can be is read further.
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 2), b""),
                                     1):
            at, offset = offset, offset + len(raw)
            if len(raw.rstrip(b"\r\n")) > MAX_LINE_BYTES:
                offset += _skip_rest_of_line(handle, raw)
                log.skip(f"{path}:{number}:1: a line longer than {MAX_LINE_BYTES} bytes is "
                         f"no event (the API takes events of at most {MAX_EVENT_BYTES} bytes)")
                continue
            if not raw.strip():
                continue
            problem, event = _read_line(raw, path, number, at)
            if problem is not None:
                log.skip(problem)
                continue
            when = parse_timestamp(event.get("timestamp"))
            if when is None:
                log.skip(f"{path}:{number}:1: every event needs an ISO 8601 'timestamp' "
                         + purpose)
                continue
            log.events.append((when, event))
            log.lines.append(number)
    return log


def _skip_rest_of_line(handle: Any, start: bytes) -> int:
    """Read past the rest of a line too long to be an event, a piece at a time (never
    whole); how many bytes that was."""
    skipped = 0
    piece = start
    while piece and not piece.endswith(b"\n"):
        piece = handle.readline(MAX_LINE_BYTES)
        skipped += len(piece)
    return skipped


def _read_line(raw: bytes, path: Path, number: int, at: int
               ) -> tuple[str | None, dict[str, Any]]:
    """A log line's event, or why it is none (`file:line:column: why`)."""
    deep = nested_past(raw, MAX_DEPTH)  # before parsing (the stdlib's recursion)
    if deep is not None:
        column = len(raw[:deep].decode(errors="replace")) + 1
        return f"{path}:{number}:{column}: {TOO_DEEP}", {}
    # A UTF-8 byte order mark (PowerShell writes one) opens the file, not an event.
    bom = len(UTF8_BOM) if number == 1 and raw.startswith(UTF8_BOM) else 0
    try:  # without its newline: a line cut short is "not JSON" at its end
        # Decoded first: the stdlib's parser, which takes what orjson refuses, reads
        # bytes in UTF-16 and UTF-32 too, and a UTF-16 log was replayed (its text beyond
        # ASCII garbled) or refused for a missing timestamp.
        event = loads(raw[bom:].rstrip(b"\r\n").decode("utf-8"))
    except UnicodeDecodeError as exc:
        return str(not_utf8(raw, bom + exc.start, str(path), line=number, offset=at)), {}
    except ValueError as exc:
        column = getattr(exc, "colno", 1)
        return f"{path}:{number}:{column}: not JSON: {getattr(exc, 'msg', exc)}", {}
    if not isinstance(event, dict):
        return f"{path}:{number}:1: each line must be a JSON object", {}
    return None, event


def read_db_events(url: str) -> EventLog:
    """The events a store accepted, from its `events` table, opened read only."""
    from sqlalchemy import Text, create_engine, select, type_coerce
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from engine.store.sql.pg_engine import pg_settings
    from engine.store.sql.tables import EventRow

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ReplayError(f"--db {url!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or not path.is_file():
            raise ReplayError(f"--db: no SQLite database at {parsed.database!r}")
        parsed = parsed.set(database=f"file:{path.resolve()}?mode=ro",
                            query={"uri": "true"})
    elif parsed.get_backend_name() == "postgresql":
        parsed = pg_settings(parsed).url  # journeyman's own parameters are not libpq's
    log = EventLog(source=parsed.render_as_string(hide_password=True))
    table = EventRow.__table__  # type: ignore[attr-defined]
    engine = create_engine(parsed)
    try:
        with engine.connect() as conn:
            if parsed.get_backend_name() == "postgresql":
                # a read-only transaction; not a startup `options`, which PgBouncer
                # refuses (or, told to ignore it, drops)
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            # the body as stored (SQLite: text), parsed here, not by the column's type
            raw = type_coerce(table.c.body, Text)
            rows = conn.execute(select(table.c.id, raw, table.c.received_at)
                                .order_by(table.c.id))
            for number, body, received in rows:
                try:  # a row written by hand, or by something else: no traceback
                    event = loads(body) if isinstance(body, str | bytes) else body
                except ValueError as exc:  # not JSON, not UTF-8: told, the rest replayed
                    log.skip(f"--db: the body of event {number} is not JSON: "
                             f"{getattr(exc, 'msg', exc)}")
                    continue
                if not isinstance(event, dict):  # was dropped without a word
                    log.skip(f"--db: the body of event {number} is not a JSON object (an "
                             "event)")
                    continue
                stamp = event.get("timestamp")
                if stamp is None and received is not None:
                    # as the API times an event sent without one: when it was received
                    event = {**event, "timestamp": iso(received)}
                    log.received_at_used += 1
                    log.received_at_first = log.received_at_first or \
                        f"event {number} at {iso(received)}"
                when = parse_timestamp(event.get("timestamp"))
                if when is None:  # was dropped without a word
                    log.skip(f"--db: event {number} has no ISO 8601 'timestamp'"
                             + (f" ({stamp!r})" if stamp is not None else ""))
                    continue
                log.events.append((when, event))
                log.lines.append(number)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise ReplayError(f"--db: cannot read the events table: {reason}") from None
    finally:
        engine.dispose()
    return log


def in_window(log: EventLog, start: datetime | None, end: datetime | None
              ) -> list[tuple[datetime, dict[str, Any]]]:
    """The events in [start, end), in timestamp order (ties keep the log's order)."""
    chosen = [(when, event) for when, event in log.events
              if (start is None or when >= start) and (end is None or when < end)]
    chosen.sort(key=lambda pair: pair[0])  # stable: ties keep the order they were read in
    return chosen


def run_replay(journeys: Path, log: EventLog, *, start: datetime | None = None,
               end: datetime | None = None, backend: str = "python",
               progress: Progress | None = None, why: str | None = None) -> ReplayReport:
    """Replay `log` through the journeys in `journeys`; the report of what they did, and
    with `why` (a user or anonymous id) that person's decisions in `report.why`, as
    `journeyman why` tells them (None: nobody of that id in the log)."""
    events = in_window(log, start, end)
    if not events:
        raise ReplayError(f"no events to replay in {log.source}"
                          + (" between --from and --to" if start or end else "")
                          + (f" ({log.unreadable:,} unreadable)" if log.unreadable else ""))
    library = load_journeys(journeys)
    # The span told is the events the API would take: a year-9999 line, refused (counted
    # in `rejected`), made the report's `to` 9999 and a year-1000 one its `from`.
    instants = [when for when, _ in events if YEARS[0] <= when.year <= YEARS[1]] \
        or [events[0][0]]
    first = start or instants[0]
    # The report needs only what became of sends from the decision log; the whole log
    # of a year of customers would be memory for nothing.
    # (kept for `--why`: a replay has no store left for `journeyman why` to read)
    eng = engine_for(library, first, backend=backend, decision_log=why is not None)
    # Nobody can click a replayed message: signing a tracked link for each of its URLs
    # (an HMAC apiece, an eighth of a replay) would count nothing in the report.
    eng.runner.tracking = None
    began = time.perf_counter()
    rejected = replay_into(eng, events, end=end, progress=progress)
    seconds = time.perf_counter() - began
    report = build_report(eng, library, events=len(events), first=first,
                          last=end or instants[-1])
    report.rejected = rejected
    report.unreadable, report.unreadable_lines = log.unreadable, log.unreadable_told
    report.received_at_used = log.received_at_used
    report.seconds = seconds
    report.backend = backend
    report.ended_at = eng.now
    if why is not None:
        report.why = explain(eng.store, why)
    return report


def replay_into(eng: InMemoryEngine, events: list[tuple[datetime, dict[str, Any]]], *,
                end: datetime | None = None, progress: Progress | None = None
                ) -> dict[str, int]:
    """Post `events` (in timestamp order) to `eng` on its fake clock, every timer and
    send coming due on the way; then on to `end`, or until no journey is waiting.
    Returns the events refused, counted by reason. `run_replay` runs it on a throwaway
    InMemoryStore; bench/replay_bench.py runs it on a SqlStore to time the live path
    taking in the same year."""
    rejected: dict[str, int] = {}
    for _, event in _with_progress(events, progress, eng):
        try:
            eng.post(event, unread=True)  # a log holds what nothing reads too
        except BadEvent as exc:  # the live API would have refused it too
            rejected[str(exc)] = rejected.get(str(exc), 0) + 1
    if end is not None:
        eng.advance_to(max(end, eng.now))
    else:
        eng.run_until_idle(IDLE_HORIZON)
    return rejected


def _with_progress(events: list[tuple[datetime, dict[str, Any]]], progress: Progress | None,
                   eng: Any) -> Iterator[tuple[datetime, dict[str, Any]]]:
    total = len(events)
    for index, pair in enumerate(events):
        if progress is not None and index % PROGRESS_EVERY == 0:
            progress(index, total, eng.now)
        yield pair
    if progress is not None:
        progress(total, total, eng.now)


__all__ = ["EventLog", "ReplayError", "read_db_events", "read_log", "replay_into",
           "run_replay"]
