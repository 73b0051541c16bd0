"""Run the Alembic migrations (`migrations/` beside this module, shipped in the package
as data and found with `importlib.resources`) from code.

`SqlStore(url, create=True)` calls `upgrade`; so do the tests, so the migrations are
what gets tested, never `metadata.create_all`.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

# A real folder both in a checkout and in site-packages (the wheel ships the files).
MIGRATIONS = Path(str(files("engine.store.sql").joinpath("migrations")))


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database behind `connection` (inside the caller's transaction)."""
    command.upgrade(config(connection), revision)


def downgrade(connection: Connection, revision: str = "base") -> None:
    command.downgrade(config(connection), revision)


@cache
def head() -> str | None:
    """The newest revision (read once: the migrations ship with the code)."""
    return ScriptDirectory.from_config(config()).get_current_head()


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@cache
def revisions() -> frozenset[str]:
    """Every revision this version ships."""
    return frozenset(r.revision for r in ScriptDirectory.from_config(config()).walk_revisions())


def known(revision: str | None) -> str | None:
    """None when this version knows `revision` (or the database has none yet), else
    what to tell the operator: a newer journeyman migrated the database (a package
    rolled back after its upgrade), which no migration here can undo."""
    if revision is None or revision in revisions():
        return None
    return (f"the database is at schema revision {revision}, which this version of "
            f"journeyman does not know (its newest is {head()}): a newer version "
            "migrated it; run that version, or restore the backup taken before it")
