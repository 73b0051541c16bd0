"""`journeyman failures`: parked events, timers and sends (they failed too often and
wait for an operator), and putting them back to work after a fix.

    journeyman failures [--kind event|timer|send] [--json]
    journeyman failures retry ID | --all
    journeyman failures discard ID

A parked event holds its profile's later events (docs/service.md says why): `retry`
runs it again, in order, with the later ones behind it; `discard` gives it up and lets
the later ones go on.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from engine.cli.common import EXIT_INVALID, DbOpt, err, open_store, out, print_rows
from engine.core.times import iso
from engine.store import DEFAULT_URL

failures = typer.Typer(help="Parked events, timers and sends, and retrying them.",
                       invoke_without_command=True)

KindOpt = Annotated[str | None, typer.Option(help="Only this kind: event, timer or send.")]


@failures.callback()
def list_failures(
    ctx: typer.Context,
    db: DbOpt = DEFAULT_URL,
    kind: KindOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list on stdout.")] = False,
    stack: Annotated[bool, typer.Option(help="Show each failure's stack.")] = False,
) -> None:
    """List parked items with their errors (the default)."""
    if ctx.invoked_subcommand is not None:
        return
    store = open_store(db, existing=True)
    try:
        rows = store.failures(kind)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps([
            {"id": f.id, "kind": f.kind, "ref": f.ref, "profile": f.profile_id,
             "journey": f.journey or None, "step": f.step or None, "error": f.error,
             "stack": f.stack, "attempts": f.attempts, "parked_at": iso(f.parked_at),
             "payload": dict(f.payload)} for f in rows], indent=2) + "\n")
        return
    print_rows(("id", "kind", "ref", "profile", "journey/step", "attempts", "parked at",
                "error"),
               ((str(f.id), f.kind, f.ref, f.profile_id,
                 f"{f.journey}/{f.step}" if f.journey else "", str(f.attempts),
                 f.parked_at.isoformat(timespec="seconds"), f.error) for f in rows),
               free_text=("error",))
    if stack:
        for f in rows:
            out.print(f"--- {f.id} ({f.kind} {f.ref})\n{f.stack}", markup=False)
    out.print(f"{len(rows)} parked", markup=False)


@failures.command("retry")
def retry(
    failure_id: Annotated[int | None, typer.Argument(help="The failure's id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every parked item.")] = False,
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Put parked items back to work now, their attempts reset."""
    if (failure_id is None) == (not all_):
        err.print("give a failure id or --all (not both)", markup=False)
        raise typer.Exit(2)
    store = open_store(db, existing=True)
    try:
        ids = [f.id for f in store.failures()] if all_ else [failure_id]
        now = datetime.now(UTC)
        done = [i for i in ids if i is not None and store.retry_failure(i, now)]
    finally:
        store.close()
    if not all_ and not done:
        err.print(f"no parked item {failure_id}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"retrying {len(done)}", markup=False)


@failures.command("discard")
def discard(
    failure_id: Annotated[int, typer.Argument(help="The failure's id.")],
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Give a parked item up (a parked event's profile then goes on without it)."""
    store = open_store(db, existing=True)
    try:
        found = store.discard_failure(failure_id)
    finally:
        store.close()
    if not found:
        err.print(f"no parked item {failure_id}", markup=False)
        raise typer.Exit(EXIT_INVALID)
    out.print(f"discarded {failure_id}", markup=False)
