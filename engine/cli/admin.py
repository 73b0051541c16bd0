"""Commands for operators: `migrate` (the store's schema), `keys` (write keys for the
API), `outbox` and `decisions` (what was sent, skipped or failed, and why), `why` (one
person's decisions as a story)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

import typer

from engine.cli.common import (
    EXIT_INVALID,
    ByOpt,
    DbOpt,
    err,
    journeys_folder,
    open_store,
    out,
    print_rows,
)
from engine.core.times import iso
from engine.ports import SCOPES, OutboxRecord
from engine.store import DEFAULT_URL
from rules.errors import JourneymanError, did_you_mean


def migrate(
    db: DbOpt = DEFAULT_URL,
    wait: Annotated[float, typer.Option(min=0, help=(
        "Seconds to keep trying, every 2 s, while the database cannot be reached yet (it "
        "is starting, or the network is not up): for a unit started at boot. 0: fail at "
        "once."))] = 0.0,
) -> None:
    """Bring the store's schema up to this version (creating it on a new database), then
    exit; prints the store's revision. Run it once before starting `serve` and `worker`
    processes after an upgrade; they also migrate on start, one at a time on
    PostgreSQL."""
    from engine.store.sql import migrate as migrations

    store = open_store(db, wait=wait, upgrade=True)
    try:
        with store.sql_engine.connect() as conn:
            revision = migrations.current(conn)
    finally:
        store.close()
    out.print(f"store {store.dialect} at schema revision {revision} (current)", markup=False)


keys = typer.Typer(help="Write keys for the event API.", no_args_is_help=True)


@keys.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who uses it).")],
    admin: Annotated[bool, typer.Option(help=(
        "Every scope, admin included: may read, export and erase profiles."))] = False,
    public: Annotated[bool, typer.Option(help=(
        "A key safe to ship in a web page or an app: track and identify only (no alias, "
        "no consent, no email/phone traits) and a lower rate."))] = False,
    scopes: Annotated[str | None, typer.Option(help=(
        "Comma-separated scopes: track, identify, alias, consent, admin. Default: every "
        "scope but admin (a server key)."))] = None,
    rate: Annotated[int | None, typer.Option(min=1, help=(
        "Events per second the key may send (default: 2000, public keys 50)."))] = None,
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Create a write key; the key alone is the last line of stdout (shown only once)."""
    from engine.ports import PUBLIC_SCOPES, key_scopes
    from engine.store import DuplicateKeyName

    if public and (admin or scopes):
        err.print("--public is track and identify only: it takes no --admin or --scopes",
                  markup=False)
        raise typer.Exit(2)
    wanted = (sorted(PUBLIC_SCOPES) if public else
              [s.strip() for s in scopes.split(",") if s.strip()] if scopes else None)
    try:
        key_scopes(admin, wanted)
    except ValueError as exc:  # an unknown scope
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    store = open_store(db)
    try:
        key = store.create_key(name, admin=admin, scopes=wanted, rate=rate)
    except DuplicateKeyName as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        store.close()
    kind = "admin " if admin else "public " if public else ""
    err.print(f"created {kind}key {name!r}; store it now, "
              "it is not shown again:", markup=False)
    sys.stdout.write(key + "\n")


@keys.command("list")
def keys_list(
    db: DbOpt = DEFAULT_URL,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List keys (names and prefixes; the keys themselves are stored hashed)."""
    store = open_store(db, existing=True)
    try:
        infos = store.list_keys(include_revoked=all_keys)
    finally:
        store.close()
    print_rows(("name", "prefix", "admin", "scopes", "rate/s", "created", "revoked"),
               [(info.name, info.prefix, "yes" if info.admin else "",
                 ",".join(s for s in SCOPES if s in info.scopes), str(info.events_per_second),
                 info.created_at.isoformat(timespec="seconds") if info.created_at else "",
                 info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "")
                for info in infos])


@keys.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    store = open_store(db, existing=True)
    try:
        revoked = store.revoke_key(name)
    finally:
        store.close()
    if not revoked:
        err.print(f"no active key named {name!r}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"revoked {name!r}", markup=False)


def outbox(
    db: DbOpt = DEFAULT_URL,
    status: Annotated[str | None, typer.Option(help=(
        "Only rows with this status: pending, sent, failed or skipped."))] = None,
    profile: Annotated[str | None, typer.Option(help="Only this profile's rows.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N rows.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """The outbox: what was sent, what waits, and what failed or was skipped, and why.
    The totals count the rows the options select (all of them, not just the newest N)."""
    store = open_store(db, existing=True)
    try:
        selected = store.outbox_records(profile_id=profile, status=status)
        counts = (store.outbox_counts() if profile is None and status is None
                  else dict(Counter(r.status for r in selected)))
    finally:
        store.close()
    rows = selected[-limit:] if limit > 0 else []
    if as_json:
        sys.stdout.write(json.dumps({
            "filters": {"status": status, "profile": profile, "limit": limit},
            "totals": dict(sorted(counts.items())), "total": sum(counts.values()),
            "rows": [_outbox_json(r) for r in rows]}) + "\n")
        return
    print_rows(("send key", "profile", "journey/step", "channel", "status", "attempts",
                "next attempt / sent", "last error"),
               ((r.entry.key, r.entry.profile_id, f"{r.entry.journey}/{r.entry.step}",
                 r.entry.channel, r.status, str(r.attempts), _seconds(r.sent_at
                                                                     or r.next_attempt_at),
                 r.last_error or "") for r in rows), free_text=("last error",))
    out.print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty",
              markup=False)


def _seconds(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _when(value: datetime | None) -> str | None:
    return iso(value) if value is not None else None


def _outbox_json(record: OutboxRecord) -> dict[str, Any]:
    entry = record.entry
    return {"key": entry.key, "profile": entry.profile_id, "journey": entry.journey,
            "step": entry.step, "channel": entry.channel, "to": entry.to,
            "template": entry.rendered.template, "subject": entry.rendered.subject,
            "status": record.status, "attempts": record.attempts,
            "created_at": _when(entry.created_at), "next_attempt_at": _when(record.next_attempt_at),
            "sent_at": _when(record.sent_at), "last_error": record.last_error,
            # a hold's reason (its last claim left it untried), and the error without it
            "held": record.held, "error": record.error}


def decisions(
    db: DbOpt = DEFAULT_URL,
    profile: Annotated[str | None, typer.Option(help="Only this profile's decisions.")] = None,
    limit: Annotated[int, typer.Option(help="Show the newest N.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """The decision log: every decision (entries and refusals, waits, branches, splits,
    exits, and what became of each send), with its reason. The totals count the
    decisions the options select (all of them, not just the newest N), by kind, then
    the commonest reasons (`--json`: every reason)."""
    store = open_store(db, existing=True)
    try:
        selected = store.recorded_decisions(profile)
    finally:
        store.close()
    rows = selected[-limit:] if limit > 0 else []
    counts = Counter(f"{d.what}:{d.reason}" for d in selected)
    if as_json:
        sys.stdout.write(json.dumps({
            "filters": {"profile": profile, "limit": limit},
            "totals": dict(sorted(Counter(d.what for d in selected).items())),
            "by_reason": dict(sorted(counts.items())), "total": len(selected),
            "rows": [{"at": iso(d.at), "profile": d.profile_id, "journey": d.journey,
                      "step": d.step, "what": d.what, "reason": d.reason,
                      "details": dict(d.details)} for d in rows]}, default=str) + "\n")
        return
    print_rows(("at", "profile", "journey/step", "what", "reason", "details"),
               ((_seconds(d.at), d.profile_id, f"{d.journey}/{d.step}", d.what, d.reason,
                 ", ".join(f"{k}={v}" for k, v in d.details.items())) for d in rows),
               free_text=("details",))
    _print_totals(Counter(d.what for d in selected), counts)


TOP_REASONS = 10  # the commonest reasons printed under the totals (`--json` has them all)


def _print_totals(by_what: Counter[str], by_reason: Counter[str]) -> None:
    """One line of totals by kind of decision, then the commonest reasons, one a line:
    the reasons of waits name their times, so a long log has thousands of them (one
    line of every reason was megabytes long)."""
    if not by_what:
        out.print("empty")
        return
    out.print(", ".join(f"{what} {n}" for what, n in sorted(by_what.items())), markup=False)
    common = by_reason.most_common(TOP_REASONS)
    width = len(str(common[0][1]))
    for reason, n in common:
        out.print(f"  {n:>{width}}  {reason.replace(':', ' ', 1)}", markup=False)
    if len(by_reason) > len(common):
        rest = sum(by_reason.values()) - sum(n for _, n in common)
        out.print(f"  ({rest} more decisions of {len(by_reason) - len(common)} other "
                  f"reasons: --json has them all)", markup=False)


def why(
    user: Annotated[str, typer.Argument(help="A user id or anonymous id.")],
    journey: Annotated[str | None, typer.Option(help="Only this journey's decisions.")] = None,
    db: DbOpt = DEFAULT_URL,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout.")] = False,
    by: ByOpt = None,
) -> None:
    """Why a person got, or did not get, each message: every decision the engine made
    for them (entered or not and why, waits, branches with the values that decided
    them, splits, sends, skips, deferrals, goals, exits), oldest first. Exit 1 when
    the store knows nothing of that person, or `--journey` names no journey bundled or
    deployed to the store."""
    from engine.runtime.privacy import other_people_named
    from engine.runtime.why import also_named, story, why_records
    from engine.runtime.why import why as explain

    store = open_store(db, existing=True)
    try:
        # linked profiles only: a person with only events not handled yet has no decisions
        others = other_people_named(store, user, waiting=False) if by is None else None
        entries = explain(store, user, journey=journey, by=by)
        named = also_named(store, user, by)
        unknown = (_unknown_journey(store, journey)
                   if journey is not None and entries == [] else None)
    finally:
        store.close()
    if others is not None:
        err.print(f"{others}; the first is told (say which with --by)", markup=False)
    if entries is None:
        err.print(f"no profile {user!r} in {db}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    if unknown is not None:  # a typo is an error, not an empty list that a script takes
        err.print(f"{user}: {unknown}", markup=False)  # for "no decisions"
        raise typer.Exit(EXIT_INVALID)
    if as_json:
        sys.stdout.write(json.dumps(why_records(entries, named), default=str) + "\n")
        return
    out.print(story(user, entries, journey), markup=False, end="")


def _unknown_journey(store: Any, journey: str) -> str | None:
    """Why `why --journey J` found nothing when J is neither a bundled journey nor one
    deployed to the store (a typo: `lapsd`), with the nearest name; None when J exists."""
    from journeys.loader import load_path

    known = {v.journey for v in store.deployed_versions()}
    folder = journeys_folder(None)
    with contextlib.suppress(JourneymanError):  # a broken bundled folder: the store's
        known |= set(load_path(folder).journeys)
    if journey in known:
        return None
    return (f"no journey {journey!r} in {folder} nor deployed to the store"
            + did_you_mean(journey, known))
