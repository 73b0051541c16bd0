"""`journeyman profiles export USER` and `profiles forget USER`: everything held about a
person, as one JSON document, and erasing it (docs/privacy.md)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from engine.cli.common import EXIT_INVALID, EXIT_USAGE, ByOpt, DbOpt, err, open_store
from engine.store import DEFAULT_URL

profiles = typer.Typer(help="A person's data: export it, or erase it.", no_args_is_help=True)
UserArg = Annotated[str, typer.Argument(help="The person's userId (or anonymousId).")]


@profiles.command("export")
def profiles_export(user: UserArg, db: DbOpt = DEFAULT_URL, by: ByOpt = None) -> None:
    """Print one JSON document with everything held about the person: traits, computed
    traits, identities, events, enrollments, sends, decisions, and every row by table."""
    from engine.runtime.privacy import export_document

    store = open_store(db, existing=True)
    try:
        pid = _person(store, user, by)
        document = export_document(store, pid)
    finally:
        store.close()
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


@profiles.command("forget")
def profiles_forget(user: UserArg, db: DbOpt = DEFAULT_URL, by: ByOpt = None) -> None:
    """Erase the person: every row that holds them, under every profile id they had
    (events, inbox, enrollments, timers, outbox, decisions, ...). On SQLite the file and
    its write-ahead log are scrubbed too (VACUUM), so nothing of them can be read back.
    When USER names two people (a userId and an anonymousId of the same text), nothing
    is erased until --by says which (exit 2)."""
    from sqlalchemy import make_url

    from engine.runtime.privacy import forget

    store = open_store(db, existing=True)
    try:
        try:
            pid = _person(store, user, by, erasing=True)
        except typer.Exit:  # gone already: an earlier forget's scrub may be left to do
            _finish_scrub(store)
            raise
        deleted = forget(store, pid)
    finally:
        store.close()
    scrubbed = deleted.pop("sqlite_scrubbed", None)
    others = deleted.pop("others_scrubbed", 0)
    # which store: --db may have come from $JOURNEYMAN_DB without the operator thinking
    where = make_url(db).render_as_string(hide_password=True)
    err.print(f"forgotten: {sum(deleted.values())} rows deleted in {where}", markup=False)
    if others:
        err.print(f"{others} rows of other people named them: rewritten with "
                  '"[forgotten]" in their place', markup=False)
    if scrubbed == 0:
        err.print("the SQLite file is still open in another process: its free pages and "
                  "write-ahead log are scrubbed once it is not (run forget again then)",
                  markup=False)
    sys.stdout.write(json.dumps({"deleted": deleted, "others_scrubbed": others}) + "\n")


def _finish_scrub(store: Any) -> None:
    """The SQLite scrub an earlier forget could not finish, done now if it was left."""
    done = store.finish_scrub()
    if done is not None:
        err.print("an earlier forget's scrub of the SQLite file: " + (
            "free pages scrubbed and write-ahead log truncated now" if done else
            "the file is still open in another process (run forget again when it is not)"),
            markup=False)


def _person(store: Any, user: str, by: str | None, erasing: bool = False) -> str:
    """The profile id of the person `user` names; exit 1 when the store has no such
    person. When it names two and `by` does not say which: exit 2 to erase, else a
    note of the others on stderr."""
    from engine.runtime.privacy import find_person, other_people_named

    others = other_people_named(store, user) if by is None else None
    if others is not None:
        err.print(f"{others}; say which with --by", markup=False)
        if erasing:
            raise typer.Exit(EXIT_USAGE)
    pid = find_person(store, user, by)
    if pid is None:
        err.print("no such person in this store", markup=False)
        raise typer.Exit(EXIT_INVALID)
    return str(pid)
