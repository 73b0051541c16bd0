"""Commands about what happened after the send: `stats` (each journey's KPIs, per step
and per split variant) and `suppressions` (the addresses no journey sends to)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.common import (
    EXIT_INVALID,
    DbOpt,
    JourneysOpt,
    err,
    fail,
    journeys_folder,
    open_store,
    out,
    print_rows,
)
from engine.core.times import iso
from engine.store import DEFAULT_URL
from rules.durations import HINT, DurationError, parse_duration
from rules.errors import JourneymanError, did_you_mean

suppressions = typer.Typer(help="The suppression list: addresses no journey sends to "
                                "(hard bounces, complaints, added by hand).",
                           no_args_is_help=True)

_SHOWN_RATES = ("open_rate", "ctr", "click_to_open", "conversion", "opt_out_rate",
                "bounce_rate", "completion_rate")
_SHOWN_COUNTS = ("entered", "sends", "delivered", "opened", "clicked", "conversions",
                 "attributed_conversions", "attributable_revenue", "opt_outs", "bounces")


def _since(text: str | None, now: datetime | None = None) -> datetime | None:
    """An ISO date or time, or a duration back from now (`7d`: now minus 7 days)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return (now or datetime.now(UTC)) - parse_duration(text)
        except DurationError:
            err.print(f"--since {text!r} is neither an ISO date or time nor a duration "
                      f"back from now (like 7d; {HINT})", markup=False)
            raise typer.Exit(2) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def stats(
    journey: Annotated[str | None, typer.Argument(help="A journey id (default: every journey).")]
    = None,
    journeys: JourneysOpt = None,
    db: DbOpt = DEFAULT_URL,
    since: Annotated[str | None, typer.Option(help="Only enrollments entered from this ISO "
                                                   "date or time on, or in this duration "
                                                   "back from now (7d, 12h).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Each journey's KPIs (sends, delivered, open rate, CTR, conversion, attributable
    revenue, ...), per step and per split variant (docs/engagement.md)."""
    from engine.runtime.kpis import journey_stats
    from engine.runtime.versions import newest_deployed
    from journeys.loader import load_path

    start = _since(since)
    try:
        library = load_path(journeys_folder(journeys))
    except JourneymanError as exc:
        raise fail(exc) from None
    store = open_store(db, existing=True)
    try:
        models = {jid: loaded.model for jid, loaded in library.journeys.items()}
        listed = sorted(models)
        if journeys is None:  # no folder named: the journeys deployed to the store count
            deployed = newest_deployed(store)
            models |= deployed
            # Every journey, asked of a store that runs journeys of its own: those, not
            # the bundled library's too, each with nothing but zeros (one of them by name
            # still answers)
            listed = sorted(deployed) or listed
        if journey is not None and journey not in models:
            err.print(f"no journey {journey!r} in {journeys_folder(journeys)}"
                      + ("" if journeys is not None else " nor deployed to the store")
                      + did_you_mean(journey, models),
                      markup=False)
            raise typer.Exit(EXIT_INVALID)
        chosen = [journey] if journey is not None else listed
        reports = {jid: journey_stats(store, models[jid], since=start) for jid in chosen}
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps({"journeys": reports}, indent=2, sort_keys=True) + "\n")
        return
    for report in reports.values():
        _print_report(report)


# A phone number as an SMS send's `to` holds it: + and 7 to 15 digits, no spaces
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_UNWRAPPED = 400  # columns for the stats table when the output is not a terminal


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_report(report: dict[str, Any]) -> None:
    out.print(f"[bold]{report['journey']}[/bold] (v{report['version']})"
              + (f" since {report['since']}" if report["since"] else ""))
    if report["kpis"]:
        out.print("  KPIs: " + ", ".join(f"{k} {_cell(v)}" for k, v in report["kpis"].items()),
                  markup=False)
    table = Table("group", *_SHOWN_COUNTS, *_SHOWN_RATES)
    rows = [("journey", report)]
    rows += [(f"step {name}", item) for name, item in report["steps"].items()]
    rows += [(f"{split}={variant}", item) for split, group in report["variants"].items()
             for variant, item in group.items()]
    for name, item in rows:
        table.add_row(name, *(_cell(item["counts"].get(c)) for c in _SHOWN_COUNTS),
                      *(_cell(item["rates"].get(r)) for r in _SHOWN_RATES))
    # Piped or redirected, the console assumes 80 columns and cut every cell to "…":
    # a file gets the table at the width it needs
    (out if out.is_terminal else Console(width=_UNWRAPPED, highlight=False)).print(table)
    out.print(f"  open rate: {report['notes']['open_rate']}", markup=False)


@suppressions.command("list")
def suppressions_list(
    db: DbOpt = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every suppressed address, with why and since when."""
    store = open_store(db, existing=True)
    try:
        found = store.suppressions()
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps([
            {"address": s.address, "reason": s.reason, "at": iso(s.at), "source": s.source,
             "details": dict(s.details)} for s in found], indent=2) + "\n")
        return
    print_rows(("address", "reason", "since", "source"),
               [(s.address, s.reason, iso(s.at), s.source) for s in found])
    out.print(f"{len(found)} suppressed", markup=False)


@suppressions.command("add")
def suppressions_add(
    address: Annotated[str, typer.Argument(help=(
        "An e-mail address (compared lowercased) or a phone number in E.164 form "
        "(+4915112345678), as an SMS send's `to`."))],
    reason: Annotated[str, typer.Option(
        help="Why, as a short kind: hard_bounce, complaint, manual (default), "
             "unsubscribed or a word of your own, at most 32 characters. A longer text "
             "goes in --note.")] = "manual",
    note: Annotated[str | None, typer.Option(
        help="Free text kept with it (a bounce report, a ticket); dropped when the "
             "address's person is forgotten.")] = None,
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Stop every journey from sending to an address."""
    from engine.ports import Suppression
    from engine.values import REASON_LENGTH

    address = address.strip()
    email = "@" in address and address.isprintable() and len(address) <= 320
    if not (email or E164.fullmatch(address)):
        err.print(f"{address[:80]!r} is neither an e-mail address nor a phone number in "
                  "E.164 form (+4915112345678)", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if not reason.strip() or len(reason) > REASON_LENGTH or not reason.isprintable():
        # the column holds a kind, not a report: never cut it silently
        err.print(f"--reason is a short kind of at most {REASON_LENGTH} characters "
                  f"(hard_bounce, complaint, manual, ...), this one has {len(reason)}: "
                  "put the text in --note", markup=False)
        raise typer.Exit(EXIT_INVALID)
    details = {"note": note} if note else {}
    store = open_store(db)
    try:
        added = store.suppress(Suppression(address, reason.strip(), datetime.now(UTC), "cli",
                                           details))
    finally:
        store.close()
    out.print(f"suppressed {address.lower()!r}" if added else
              f"{address.lower()!r} was suppressed already", markup=False)


@suppressions.command("remove")
def suppressions_remove(
    address: Annotated[str, typer.Argument(help="The address.")],
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Let journeys send to an address again."""
    store = open_store(db, existing=True)
    try:
        removed = store.unsuppress(address)
    finally:
        store.close()
    if not removed:
        err.print(f"{address[:80]!r} is not suppressed", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"{address.lower()!r} may be sent to again", markup=False)
