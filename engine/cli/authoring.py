"""Commands for people who write and check journeys: `validate`, `graph`, `preview`,
`simulate` (and `version`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import (
    EXIT_INVALID,
    JourneysOpt,
    err,
    fail,
    journeys_folder,
    must_exist,
    out,
    tell_unreadable,
)
from rules import did_you_mean
from rules.errors import JourneymanError


def validate(
    paths: Annotated[list[Path], typer.Argument(help="Journey files or journeys folders.",
                                                callback=must_exist)],
    backend: Annotated[str, typer.Option(help="Rules backend to compile with.")] = "durable",
) -> None:
    """Check journeys (shape, references, templates, conditions) and compile them.

    Prints every problem as file:line:column: message on stderr and exits 1 if any;
    2 for a path that does not exist. Warnings (a template reading a trait with no
    fallback, an email link whose host comes from data and so is not tracked, a URL
    printed from data in a text part, a guarded read such as `| default(...)` of an
    attribute, trait or property never there) are printed too and change nothing.
    """
    from journeys.compiler import compile_library
    from journeys.declared import library_warnings
    from journeys.loader import POLICY_FILE, load_path
    from journeys.template_guards import template_warnings

    problems: list[str] = []
    warnings: list[str] = []
    count = 0
    for path in paths:
        if path.is_dir() and not (path / POLICY_FILE).is_file():
            err.print(f"{path}: warning: no {POLICY_FILE}; the bundled policy applies "
                      "(consent required on email, sms and push; quiet hours; frequency "
                      "caps)", markup=False)
        try:
            library = load_path(path)
            compile_library(library, backend=backend)
            count += len(library.journeys)
            warnings.extend(str(w) for w in template_warnings(library.templates))
            warnings.extend(str(w) for w in library_warnings(library))
        except JourneymanError as exc:
            problems.extend(str(exc).splitlines())
    for line in dict.fromkeys(warnings):  # two paths may share a templates folder
        err.print(line, markup=False)
    if problems:
        for line in problems:
            err.print(line, markup=False)
        err.print(f"{len(problems)} problem(s)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"ok: {count} journey(s) valid", markup=False)


def _journey_file(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """`graph`'s JOURNEY: a file (ends in .yaml or .yml) must exist (`must_exist`)."""
    if Path(value).suffix in {".yaml", ".yml"}:
        must_exist(ctx, param, Path(value))
    return value


def graph(
    journey: Annotated[str, typer.Argument(
        help="A journey file, or a journey id in --journeys.", callback=_journey_file)],
    journeys: JourneysOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help=(
        "Write to a file: .md wraps the diagram in a ```mermaid block (renders on GitHub); "
        ".mmd is the bare diagram, ready for mermaid-cli to turn into .svg."))] = None,
) -> None:
    """Print a journey's state machine as a Mermaid diagram."""
    from journeys.compiler import compile_journey, mermaid
    from journeys.loader import load_path

    try:
        path = Path(journey)
        folder = journeys_folder(journeys)
        library = load_path(path if path.suffix in {".yaml", ".yml"} else folder)
        jid = next(iter(library.journeys)) if path.suffix in {".yaml", ".yml"} else journey
        if jid not in library.journeys:
            err.print(f"no journey {jid!r} in {folder}"
                      + did_you_mean(jid, library.journeys) + " (have: "
                      f"{', '.join(sorted(library.journeys))})", markup=False)
            raise typer.Exit(EXIT_INVALID)
        text = mermaid(compile_journey(library.journeys[jid], templates=library.templates))
    except JourneymanError as exc:
        raise fail(exc) from None
    if output is None:
        sys.stdout.write(text)
        return
    body = f"# {jid}\n\n```mermaid\n{text}```\n" if output.suffix == ".md" else text
    output.write_text(body)
    out.print(f"wrote {output}", markup=False)


def simulate(
    path: Annotated[Path, typer.Argument(help="A journey file or a journeys folder.",
                                         callback=must_exist)],
    events: Annotated[Path, typer.Option(help="Segment-format JSON lines.")],
    until: Annotated[str | None, typer.Option(help="Stop at this ISO time (UTC if no offset).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    backend: Annotated[str, typer.Option(help="Rules backend.")] = "durable",
) -> None:
    """Run journeys in memory on a fake clock through the events, then on until every
    pending wait has resolved (or --until), and print who got what, when."""
    from engine.qa.simulate import format_timeline
    from engine.qa.simulate import simulate as run_sim

    try:
        result = run_sim(path, events, until=until, backend=backend)
    except JourneymanError as exc:
        raise fail(exc) from None
    tell_unreadable(result.unreadable, result.unreadable_lines)
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=None) + "\n")
    else:
        sys.stdout.write(format_timeline(result))
    for line in result.rejected_lines:
        err.print(line, markup=False)
    if result.not_simulated:  # the rest was simulated and printed; still, exit 1
        err.print(f"journeyman simulate: {result.not_simulated:,} line(s) of {events} not "
                  "simulated (exit 1)", markup=False)
        raise typer.Exit(EXIT_INVALID)


def preview(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    step: Annotated[str, typer.Argument(help="A send step of that journey.")],
    profile: Annotated[Path, typer.Option(help=(
        "Profile JSON: {\"id\": ..., \"traits\": {...}, \"computed\": {...}}."))],
    journeys: JourneysOpt = None,
    event: Annotated[Path | None, typer.Option(help=(
        "The enrolling event as JSON (default: the journey's entry event, no properties)."))]
    = None,
    html: Annotated[Path | None, typer.Option(help="Also write the HTML part here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    at: Annotated[str | None, typer.Option(help="Render as of this ISO time (default now).")]
    = None,
) -> None:
    """Render exactly what a send step would deliver to a profile: address, headers,
    subject, text (and HTML with --html), through the same code the engine sends with."""
    from datetime import UTC, datetime

    from engine.core.times import parse_timestamp
    from engine.qa import inputs
    from engine.qa.preview import preview as run_preview

    try:
        facts = inputs.read_object(profile, "--profile", inputs.PROFILE_SHAPE,
                                   inputs.PROFILE_FIELDS)
        enrolling = (inputs.read_object(event, "--event", inputs.EVENT_SHAPE,
                                        inputs.EVENT_FIELDS) if event else None)
    except JourneymanError as exc:
        raise fail(exc) from None
    when = parse_timestamp(at) if at else datetime.now(UTC)
    if when is None:
        err.print(f"--at {at!r} is not an ISO time", markup=False)
        raise typer.Exit(EXIT_INVALID)
    try:
        result = run_preview(journeys_folder(journeys), journey, step, facts, now=when,
                             event=enrolling)
    except JourneymanError as exc:
        raise fail(exc) from None
    if html is not None:
        html.write_text(result.entry.rendered.html or "")
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(result.lines()) + "\n")


def version() -> None:
    """Print the version."""
    from importlib.metadata import version as v

    out.print(v("journeyman"), markup=False)
