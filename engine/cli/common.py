"""What every command shares: the consoles, exit codes, how an error of ours is shown,
and the options that mean the same thing everywhere (`--journeys`, `--db`, ...)."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.store import DEFAULT_URL
from journeys.library import bundled_library
from rules.errors import JourneymanError

err = Console(stderr=True, highlight=False, soft_wrap=True)
WAIT_RETRY_S = 2.0  # open_store(wait=...): between tries
out = Console(highlight=False, soft_wrap=True)


def print_rows(columns: Sequence[str], rows: Iterable[Sequence[str]], *,
               free_text: Collection[str] = ()) -> None:
    """A table of `rows` on stdout when its ids fit the terminal, else one block per row
    (the first column as its heading, then `column  value`, empty ones left out). A
    table too wide for its terminal cut every id short (`2d8f57…`, `visito…`) at 80
    columns, which left nothing to paste into the next command. `free_text`: columns
    that may wrap (an error, details): they do not count. Values are text, never rich
    markup (a profile id `p[bold]1` printed as `p1`, an error naming `[/x]` stopped the
    command), measured in terminal cells (wide characters take two); a value's later
    lines are indented under it, so none passes for a row's heading."""
    rows = [list(row) for row in rows]
    width = sum(3 + max([cell_len(name), *(cell_len(row[n]) for row in rows)])
                for n, name in enumerate(columns) if name not in free_text) + 1
    width += sum(3 + min(20, len(name)) for name in columns if name in free_text)
    if width <= out.width:
        table = Table(*columns)
        for row in rows:
            table.add_row(*(Text(value) for value in row))
        out.print(table)
        return
    label = max(len(name) for name in columns[1:]) if len(columns) > 1 else 0
    indent = "\n" + " " * (label + 4)
    for number, row in enumerate(rows):
        out.print(("\n" if number else "") + row[0], markup=False, style="bold")
        for name, value in zip(columns[1:], row[1:], strict=True):
            if value:
                out.print(f"  {name.ljust(label)}  {indent.join(value.splitlines())}",
                          markup=False)


EXIT_INVALID = 1  # the input is invalid (journeys, events, a store)
EXIT_USAGE = 2  # no such path, options that do not go together
EXIT_NO_PORT = 3  # serve: the port could not be had (uvicorn's own code for it too)


def must_exist(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """The callback of every path option or argument that names journeys: exit 2, a
    usage error (README's table), for each path that does not exist, as `journeyman
    COMMAND: no such file or folder: PATH (--option)`. The same message and code for
    every command, and before it starts any work (the loader would otherwise report the
    path as a problem in a journey file, `PATH:1:1`, and exit 1)."""
    return _checked_paths(ctx, param, value, EXIT_USAGE)


def must_exist_to_deploy(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """`must_exist` for `plan` and `apply`, with exit 1: whatever stops a deploy is 1
    there (qa-contract.md, section 5; a missing folder was 1 before this message)."""
    return _checked_paths(ctx, param, value, EXIT_INVALID)


def _checked_paths(ctx: typer.Context, param: typer.CallbackParam, value: Any,
                   code: int) -> Any:
    if ctx.resilient_parsing or value is None:
        return value
    paths = value if isinstance(value, list | tuple) else [value]
    missing = [path for path in paths if not Path(path).exists()]
    where = f" ({param.opts[0]})" if param.param_type_name == "option" and param.opts else ""
    for path in missing:
        err.print(f"{ctx.command_path}: no such file or folder: {path}{where}", markup=False)
    if missing:
        raise typer.Exit(code)
    return value


_JOURNEYS_HELP = "Journeys folder (default: the bundled library, journeys/library)."
JourneysOpt = Annotated[Path | None, typer.Option(help=_JOURNEYS_HELP, callback=must_exist)]
DeployJourneysOpt = Annotated[Path | None, typer.Option(help=_JOURNEYS_HELP,
                                                        callback=must_exist_to_deploy)]
DbOpt = Annotated[str, typer.Option(
    envvar="JOURNEYMAN_DB",  # deploy.md's environment file: every command reads it
    help=f"Store URL (else $JOURNEYMAN_DB): {DEFAULT_URL} (default) or "
    "postgresql+psycopg://... (behind "
    "PgBouncer in transaction mode add ?prepare_threshold=none&listen_host=H&listen_port=P: "
    "docs/deploy.md).")]


def _id_kind(value: str | None) -> str | None:
    from engine.runtime.identity import NAMING_KINDS

    if value is not None and value not in NAMING_KINDS:
        raise typer.BadParameter(f"{value!r} is none of {', '.join(NAMING_KINDS)}")
    return value


ByOpt = Annotated[str | None, typer.Option(
    "--by", callback=_id_kind, help="The kind of id USER is: user_id, anonymous_id or profile "
    "(a userId and an anonymousId of the same text can name two people: docs/privacy.md).")]


def _missing_sqlite_file(db: str) -> str | None:
    """The path of a SQLite file `db` names that does not exist, else None (another
    database, an in-memory one, or a URL that does not parse: opening it says why)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db)
    except ArgumentError:
        return None
    name = url.database or ""
    if url.get_backend_name() != "sqlite" or name in ("", ":memory:") or name.startswith(
            "file:"):
        return None
    return None if Path(name).exists() else name


def missing_database(db: str) -> str | None:
    """`open_store(existing=True)`'s error when `db` names a SQLite file that is not
    there (`no SQLite database at PATH (--db or $JOURNEYMAN_DB)`), else None: for a
    command that words it its own way too (`plan --json` puts it in the document)."""
    missing = _missing_sqlite_file(db)
    return None if missing is None else (f"no SQLite database at {missing} "
                                         "(--db or $JOURNEYMAN_DB)")


def existing_store(db: str, *, missing_hint: str = "") -> Any:
    """`open_store(db, existing=True)`, raising the JourneymanError it would exit with
    (for a command that words it its own way: `plan --json`). `missing_hint` ends the
    error for a SQLite file that is not there (`plan` and `apply` say how a new store
    is made)."""
    from engine.store import SchemaNotReady, SqlStore

    missing = missing_database(db)
    if missing is not None:
        raise JourneymanError(missing + missing_hint)
    try:
        return SqlStore(db)
    except SchemaNotReady as exc:
        raise _not_current(exc) from None


def _not_current(exc: Any) -> JourneymanError:
    """A SchemaNotReady said to an operator: run `journeyman migrate`. A database with
    no schema at all is a new one (an empty PostgreSQL database, an empty file), not one
    an older journeyman runs on: it said `at schema revision none` and spoke of workers
    of the version before."""
    if exc.revision is None:
        where = str(exc).partition(" is at schema revision")[0]
        return JourneymanError(f"{where} has no journeyman schema (a new database): "
                               "`journeyman migrate --db URL` makes a new store")
    return JourneymanError(
        f"{str(exc).partition(': run')[0]}: run `journeyman migrate --db URL` first "
        "(this command does not change the schema: workers of the version before stop "
        "claiming work once it changes)")


def _store_made(db: str, upgrade: bool) -> Any:
    """`open_store`'s store when it may make one: the schema made on a new database (no
    schema yet); an older schema upgraded only with `upgrade` (`journeyman migrate`),
    else the error `existing_store` gives."""
    from engine.store import SchemaNotReady, SqlStore

    if not upgrade:
        try:
            return SqlStore(db)
        except SchemaNotReady as exc:
            if exc.revision is not None:
                raise _not_current(exc) from None
    return SqlStore(db, create=True)


def journeys_folder(journeys: Path | None) -> Path:
    """`--journeys`, or the bundled library when it is not given."""
    return journeys if journeys is not None else bundled_library()


def fail(error: JourneymanError) -> typer.Exit:
    """Print an error of ours (every line of it) and exit 1; no traceback."""
    for line in str(error).splitlines():
        err.print(line, markup=False)
    return typer.Exit(EXIT_INVALID)


def tell_unreadable(count: int, told: list[str]) -> None:
    """Each line of an input that was no event on stderr, `file:line:column: why`, as
    many as were told (`replay` and `simulate` tell the first 1,000); past them, how
    many more."""
    for line in told:
        err.print(line, markup=False)
    more = count - len(told)
    if more > 0:
        err.print(f"... and {more:,} more, not told one by one", markup=False)


def open_store(db: str, *, wait: float = 0.0, existing: bool = False,
               upgrade: bool = False) -> Any:
    """The store at `db`, migrated; exit 1 with the reason if it cannot be opened. With
    `wait`, a database that cannot be reached yet (refused, not there, too many
    connections: the driver's OperationalError) is tried again every 2 s for so many
    seconds, a line each try: a unit started at boot before the network or a remote
    PostgreSQL is up. With `existing` (commands that read or change what a store
    holds: why, outbox, stats, failures, keys list/revoke...), a SQLite file that is
    not there is an error, not a new empty store: `why` at a typo said "no profile" as
    if the person were unknown, `outbox` an empty outbox, and each left a database
    behind. Commands that set a store up (migrate, serve, worker, keys create, users
    create, suppressions add) make it; plan and apply do not (a deploy to a typo was
    "Applied" to a new database nobody runs: `journeyman migrate` makes one). Nor do
    they upgrade its schema: a newer journeyman's `outbox` or `why` on the operator's
    laptop upgraded the production database under its running workers, which then stop
    claiming work until they run the new version too (engine/runtime/schema_gate.py);
    an older schema is an error naming `journeyman migrate`. Neither do the commands
    that set a store up, but `migrate` (`upgrade`): they make the schema of a new
    database, and an older one is the same error (a newer `keys create` on a laptop
    upgraded production as `outbox` did)."""
    from sqlalchemy.exc import OperationalError

    if existing:
        try:
            return existing_store(db)
        except JourneymanError as exc:
            raise fail(exc) from None
    deadline = time.monotonic() + wait
    while True:
        try:
            return _store_made(db, upgrade)
        except JourneymanError as exc:
            left = deadline - time.monotonic()
            if left <= 0 or not isinstance(exc.__cause__, OperationalError):
                raise fail(exc) from None
            reason = str(exc).splitlines()[0]
            err.print(f"waiting for the database ({left:.0f} s left): {reason}", markup=False)
            time.sleep(min(WAIT_RETRY_S, left))
