"""Commands for QA: `test` (run scenario files) and `replay` (an event log through the
journeys on a fake clock, with a per-journey, per-step report)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from engine.cli.common import (
    EXIT_INVALID,
    EXIT_USAGE,
    JourneysOpt,
    err,
    fail,
    journeys_folder,
    must_exist,
    out,
    tell_unreadable,
)
from rules.errors import JourneymanError

BackendOpt = Annotated[str, typer.Option(help="Rules backend: durable (the default of "
                                              "`serve`) or python.")]


def _print(pieces: list[tuple[str, str]]) -> None:
    out.print(Text.assemble(*pieces), soft_wrap=True)


def run_tests(
    paths: Annotated[list[Path], typer.Argument(help=(
        "Scenario files (*.scenario.yaml) or folders to search for them."),
        callback=must_exist)],
    backend: BackendOpt = "durable",
) -> None:
    """Run scenario files on a fake clock: one line per scenario, and for each failure
    the expected-vs-actual timeline. Exit 0 when all pass, 1 when any fails or is
    invalid, 2 on usage errors (no such path, no scenario found)."""
    from engine.qa.scenario_file import SUFFIX, SUFFIXES, find_scenarios
    from engine.qa.scenario_report import failure_lines, summary_line
    from engine.qa.scenarios import LibraryCache, run_file

    files = find_scenarios(paths)
    for path in paths:
        if path.is_file() and not path.name.endswith(SUFFIXES):  # run, as asked; but say so
            err.print(f"journeyman test: {path} is not named *{SUFFIX}; read as a scenario",
                      markup=False)
    if not files:
        err.print(f"journeyman test: no *{SUFFIX} files under "
                  f"{', '.join(str(p) for p in paths)}", markup=False)
        raise typer.Exit(EXIT_USAGE)
    libraries = LibraryCache()
    passed = failed = invalid = 0
    for path in files:
        result = run_file(path, backend=backend, libraries=libraries)
        _print(summary_line(result))
        if result.passed:
            passed += 1
            continue
        invalid += result.invalid
        failed += not result.invalid
        for line in failure_lines(result):
            _print(line)
    summary = f"{passed} passed, {failed} failed" + (f", {invalid} invalid" if invalid else "")
    style = "bold green" if passed == len(files) else "bold red"
    out.print(Text(summary, style=style))
    if passed != len(files):
        raise typer.Exit(EXIT_INVALID)


def replay(
    events: Annotated[Path | None, typer.Argument(help=(
        "A recorded Segment event log: JSON lines (give this or --db)."))] = None,
    journeys: JourneysOpt = None,
    db: Annotated[str | None, typer.Option(help=(
        "Replay the events stored in this database instead (read only)."))] = None,
    start: Annotated[str | None, typer.Option("--from", help=(
        "Only events at or after this ISO time."))] = None,
    end: Annotated[str | None, typer.Option("--to", help=(
        "Only events before this ISO time; timers run up to it."))] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    backend: BackendOpt = "python",
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="A progress bar (default: on a terminal).")] = None,
    compare: Annotated[Path | None, typer.Option(
        "--compare", exists=True, dir_okay=False, metavar="BEFORE.json", help=(
            "An earlier replay's --json report: also say what changed since, count by "
            "count (--json: under `compared`)."))] = None,
    why: Annotated[str | None, typer.Option("--why", metavar="USER", help=(
        "Also every decision made for this person in the replay, as `journeyman why` "
        "tells them (--json: under `why`)."))] = None,
) -> None:
    """Replay an event log through the journeys in a throwaway in-memory store on a
    fake clock, every wait and timer as it would have run, under the journeys' policy,
    and report per journey and step: enrolled, completed, exited, goals, conversion,
    sent, skipped and deferred, skips by reason, A/B variants. Lines that are no event
    (not JSON, no timestamp...) are told on stderr as file:line:column and not
    replayed; the rest is, and the exit is 1."""
    from engine.qa.replay import read_db_events, read_log, run_replay
    from engine.qa.replay_compare import compare_json, compare_lines, read_report
    from engine.qa.replay_report import format_report
    from engine.runtime.why import story

    if (events is None) == (db is None):
        err.print("journeyman replay: give an events file or --db URL (one of them)",
                  markup=False)
        raise typer.Exit(EXIT_USAGE)
    try:
        window = _window(start, end)
    except JourneymanError as exc:  # a bad option's value: a usage error, as Typer's are
        err.print(f"journeyman replay: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    try:  # before the replay: a wrong file is told at once, not after minutes
        before = read_report(compare) if compare is not None else None
    except JourneymanError as exc:
        err.print(f"journeyman replay: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        loaded = read_log(events) if events is not None else read_db_events(str(db))
        tell_unreadable(loaded.unreadable, loaded.unreadable_told)
        if loaded.received_at_used:
            err.print(f"--db: {loaded.received_at_used:,} event row(s) without a timestamp "
                      "replayed at the time the store received them "
                      f"({loaded.received_at_first})", markup=False)
        show = progress if progress is not None else (err.is_terminal and not as_json)
        report = run_replay(journeys_folder(journeys), loaded, start=window[0], end=window[1],
                            backend=backend, progress=_bar() if show else None, why=why)
    except JourneymanError as exc:
        raise fail(exc) from None
    document = report.as_json()
    if as_json:
        if before is not None:
            document["compared"] = compare_json(before, document)
        if why is not None:
            document["why"] = (None if report.why is None
                               else [entry.as_json() for entry in report.why])
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        for line in format_report(report):
            out.print(line, markup=False)
        if before is not None:
            for line in compare_lines(before, document, str(compare)):
                out.print(line, markup=False)
        if report.why is not None:
            out.print("", markup=False)
            out.print(story(str(why), report.why), markup=False, end="")
    if why is not None and report.why is None:  # a typo: `why` says so too (exit 1)
        err.print(f"journeyman replay: --why {why}: nobody of that id in the replayed "
                  "events (exit 1)", markup=False)
    if loaded.unreadable:  # the rest was replayed and reported; CI still sees the log is bad
        what = "line(s)" if events is not None else "event row(s)"
        err.print(f"journeyman replay: {loaded.unreadable:,} unreadable {what} of "
                  f"{loaded.source} not replayed (exit 1)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if why is not None and report.why is None:
        raise typer.Exit(EXIT_INVALID)


def _window(start: str | None, end: str | None) -> tuple[Any, Any]:
    from engine.core.times import parse_timestamp
    from engine.qa.replay import ReplayError

    bounds = []
    for name, value in (("--from", start), ("--to", end)):
        when = parse_timestamp(value) if value is not None else None
        if value is not None and when is None:
            raise ReplayError(f"{name} {value!r} is not an ISO time, like 2026-03-02T09:00:00Z")
        bounds.append(when)
    if bounds[0] is not None and bounds[1] is not None and bounds[1] <= bounds[0]:
        raise ReplayError("--to must be after --from")
    return bounds[0], bounds[1]


def _bar() -> Any:
    """A rich progress bar on stderr, as a callback `(done, total, now)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task("replaying", total=None)

    def update(done: int, total: int, now: Any) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total,
                   description=f"replaying · {now:%Y-%m-%d}")
        if done >= total:
            bar.stop()

    return update


__all__ = ["journeys_folder", "replay", "run_tests"]
