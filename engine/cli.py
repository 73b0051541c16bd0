"""The `journeyman` command line (Typer). Thin: every command calls the public Python API.

Exit codes: 0 success; 1 the input is invalid (journeys, events); 2 usage error (Typer).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from journeys.errors import JourneyError

app = typer.Typer(
    name="journeyman",
    help="Rules-based customer journey orchestration: journeys as code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EXIT_INVALID = 1


def fail(error: JourneyError) -> typer.Exit:
    for line in str(error).splitlines():
        err.print(line, markup=False)
    return typer.Exit(EXIT_INVALID)


@app.command()
def validate(
    paths: Annotated[list[Path], typer.Argument(help="Journey files or journeys folders.")],
    backend: Annotated[str, typer.Option(help="Rules backend to compile with.")] = "durable",
) -> None:
    """Check journeys (shape, references, templates, conditions) and compile them.

    Prints every problem as file:line:column: message on stderr and exits 1 if any.
    """
    from journeys.compiler import compile_library
    from journeys.loader import load_path

    problems: list[str] = []
    count = 0
    for path in paths:
        try:
            library = load_path(path)
            compile_library(library, backend=backend)
            count += len(library.journeys)
        except JourneyError as exc:
            problems.extend(str(exc).splitlines())
    if problems:
        for line in problems:
            err.print(line, markup=False)
        err.print(f"{len(problems)} problem(s)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"ok: {count} journey(s) valid", markup=False)


@app.command()
def graph(
    journey: Annotated[str, typer.Argument(help="A journey file, or a journey id in --journeys.")],
    journeys: Annotated[Path, typer.Option(help="Journeys folder for a journey id.")] = Path(
        "journeys/library"),
    output: Annotated[Path | None, typer.Option("--output", "-o", help=(
        "Write to a file: .md wraps the diagram in a ```mermaid block (renders on GitHub); "
        ".mmd is the bare diagram, ready for mermaid-cli to turn into .svg."))] = None,
) -> None:
    """Print a journey's state machine as a Mermaid diagram."""
    from journeys.compiler import compile_journey, mermaid
    from journeys.loader import load_path

    try:
        path = Path(journey)
        library = load_path(path if path.suffix in {".yaml", ".yml"} else journeys)
        jid = next(iter(library.journeys)) if path.suffix in {".yaml", ".yml"} else journey
        if jid not in library.journeys:
            err.print(f"no journey {jid!r} in {journeys} (have: "
                      f"{', '.join(sorted(library.journeys))})", markup=False)
            raise typer.Exit(EXIT_INVALID)
        text = mermaid(compile_journey(library.journeys[jid], templates=library.templates))
    except JourneyError as exc:
        raise fail(exc) from None
    if output is None:
        sys.stdout.write(text)
        return
    body = f"# {jid}\n\n```mermaid\n{text}```\n" if output.suffix == ".md" else text
    output.write_text(body)
    out.print(f"wrote {output}", markup=False)


@app.command()
def simulate(
    path: Annotated[Path, typer.Argument(help="A journey file or a journeys folder.")],
    events: Annotated[Path, typer.Option(help="Segment-format JSON lines.")],
    until: Annotated[str | None, typer.Option(help="Stop at this ISO time (UTC if no offset).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    backend: Annotated[str, typer.Option(help="Rules backend.")] = "durable",
) -> None:
    """Run journeys in memory on a fake clock through the events, then on until every
    pending wait has resolved (or --until), and print who got what, when."""
    from engine.simulate import SimulationError, format_timeline
    from engine.simulate import simulate as run_sim

    try:
        result = run_sim(path, events, until=until, backend=backend)
    except (JourneyError, SimulationError) as exc:
        raise fail(exc if isinstance(exc, JourneyError) else JourneyError(str(exc))) from None
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=None) + "\n")
    else:
        sys.stdout.write(format_timeline(result))


@app.command()
def preview(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    step: Annotated[str, typer.Argument(help="A send step of that journey.")],
    profile: Annotated[Path, typer.Option(help=(
        "Profile JSON: {\"id\": ..., \"traits\": {...}, \"computed\": {...}}."))],
    journeys: Annotated[Path, typer.Option(help="Journeys folder.")] = Path("journeys/library"),
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

    from engine.events import parse_timestamp
    from engine.preview import preview as run_preview

    try:
        facts = json.loads(profile.read_text())
        enrolling = json.loads(event.read_text()) if event else None
    except (OSError, json.JSONDecodeError) as exc:
        raise fail(JourneyError(f"cannot read the profile/event JSON: {exc}")) from None
    when = parse_timestamp(at) if at else datetime.now(UTC)
    if when is None:
        raise fail(JourneyError(f"--at {at!r} is not an ISO time"))
    try:
        result = run_preview(journeys, journey, step, facts, now=when, event=enrolling)
    except JourneyError as exc:
        raise fail(exc) from None
    if html is not None:
        html.write_text(result.entry.rendered.html or "")
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(result.lines()) + "\n")


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as v

    out.print(v("journeyman"), markup=False)


def _register_service_commands() -> None:
    from engine import cli_service

    cli_service.register(app)


_register_service_commands()
