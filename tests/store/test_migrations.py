"""The Alembic migrations build the schema the models describe, on an empty database."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from engine.store import SchemaNotReady, SqlStore
from engine.store.sql import migrate
from engine.store.sql.tables import TABLE_NAMES, metadata
from engine.values import named_ids


def _check_fresh_database(url: str) -> None:
    with pytest.raises(SchemaNotReady, match="create=True"):
        SqlStore(url)
    store = SqlStore(url, create=True)
    try:
        with store.sql_engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
            assert set(TABLE_NAMES) <= set(inspect(conn).get_table_names())
            diff = compare_metadata(MigrationContext.configure(conn, opts={
                "compare_type": True}), metadata)
            assert diff == []  # the models and the migrations agree
        with store.sql_engine.begin() as conn:
            migrate.downgrade(conn, "base")
        with store.sql_engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        store.migrate()  # and up again
        SqlStore(url, create=True).close()  # idempotent
        SqlStore(url).close()  # now it opens without create
    finally:
        store.close()


def test_migrations_on_empty_sqlite(tmp_path: Path) -> None:
    _check_fresh_database(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.postgres
def test_migrations_on_empty_postgres(pg_new_database: Callable[[], str]) -> None:
    _check_fresh_database(pg_new_database())


@pytest.mark.postgres
def test_migrate_waits_for_a_database_that_is_not_there_yet(pg_server: str) -> None:
    """`journeyman migrate --wait` (the systemd unit's, at boot): the database does not
    exist yet; it says so each try and migrates once it does. Without --wait it fails
    at once (exit 1, the reason, no traceback)."""
    import os
    import secrets
    import subprocess
    import sys

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"jm_test_{os.getpid()}_{secrets.token_hex(4)}"
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    migrate_cli = [sys.executable, "-m", "engine", "migrate", "--db", url]
    try:
        at_once = subprocess.run(migrate_cli, check=False, capture_output=True, text=True,
                                 timeout=60)
        assert at_once.returncode == 1
        assert f'database "{name}" does not exist' in at_once.stderr
        assert "Traceback" not in at_once.stderr
        waiting = subprocess.Popen([*migrate_cli, "--wait", "60"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert waiting.stderr is not None
        line = waiting.stderr.readline()  # the first try failed: it waits
        assert line.startswith("waiting for the database ("), line
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        stdout, stderr = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, stderr
        assert stdout.startswith("store postgresql at schema revision "), stdout
        SqlStore(url).close()  # current
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_started_together_on_a_new_postgres_database_all_come_up(
        pg_new_database: Callable[[], str], tmp_path: Path) -> None:
    """An API and its workers started at once on a new database each migrate on start:
    without the migration lock all but one failed creating tables that already existed."""
    import subprocess
    import sys

    url = pg_new_database()
    go = tmp_path / "go"
    script = (
        "import pathlib, sys, time\n"
        "from engine.store import SqlStore\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "while not go.exists(): time.sleep(0.005)\n"
        "SqlStore(sys.argv[1], create=True).close()\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(go)],
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(3.0)  # every process has imported the engine and waits on the barrier
    go.touch()
    failures = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=60)
        if proc.returncode != 0:
            failures.append(stderr[-800:])
    assert failures == []
    store = SqlStore(url)  # current: opens without create
    store.close()


def test_migration_0009_counts_sent_sends_as_admitted(tmp_path: Path) -> None:
    """Caps count admitted sends: a database upgraded with sends already delivered
    counts them as admitted when they were sent."""
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, insert

    from engine.store.sql.tables import table

    url = f"sqlite:///{tmp_path / 'old.db'}"
    sent_at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    db = create_engine(url)
    with db.begin() as conn:
        migrate.upgrade(conn, "0005")
    outbox = table("outbox")
    row = {"send_key": "k", "enrollment_id": "e", "profile_id": "p", "journey": "j",
           "step": "s", "channel": "email", "template": "t", "to": "a@example.com",
           "rendered": {}, "attempts": 1, "created_at": sent_at}
    with db.begin() as conn:  # the columns of revision 0005 only
        conn.execute(insert(outbox), [
            {**row, "status": "sent", "sent_at": sent_at, "next_attempt_at": None},
            {**row, "send_key": "k2", "status": "pending", "sent_at": None,
             "next_attempt_at": sent_at}])
    db.dispose()
    store = SqlStore(url, create=True)
    try:
        assert store.admitted_since(["p"], datetime(2026, 1, 1, tzinfo=UTC)) == {
            "p": [("email", sent_at)]}
    finally:
        store.close()


def test_a_newer_schema_or_another_driver_is_a_clear_error_not_a_traceback(
        tmp_path: Path) -> None:
    """A package rolled back after its upgrade migrated the database, and a URL naming
    psycopg2: each was a traceback from Alembic or SQLAlchemy (an operator's trial)."""
    import sqlite3
    import subprocess
    import sys

    from engine.store import StoreError

    path = tmp_path / "newer.db"
    SqlStore(f"sqlite:///{path}", create=True).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    message = ("the database is at schema revision 0099, which this version of journeyman "
               f"does not know (its newest is {migrate.head()})")
    for create in (True, False):
        with pytest.raises(StoreError, match=re.escape(message)):
            SqlStore(f"sqlite:///{path}", create=create)
    done = subprocess.run([sys.executable, "-m", "engine", "migrate", "--db",
                           f"sqlite:///{path}"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(StoreError, match="the PostgreSQL driver 'psycopg2' is not "
                                         "journeyman's: write the URL as postgresql"):
        SqlStore("postgresql+psycopg2://postgres@127.0.0.1:5432/x")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migration_0022_writes_the_ids_merged_profiles_had(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A person's rows are found by their `profile` identifiers: for the merges made
    before, one per userId or anonymousId pointing at another profile than its own
    text, unless that text is still a live profile's id."""
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, insert

    from engine.store.sql.tables import table

    url = (f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_new_database")())
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    db = create_engine(url)
    with db.begin() as conn:
        migrate.upgrade(conn, "0021")
        conn.execute(insert(table("identities")), [
            {"kind": kind, "value": value, "profile_id": pid, "created_at": at}
            for kind, value, pid in [
                ("user_id", "carol", "carol"), ("anonymous_id", "a-1", "carol"),  # merged
                ("user_id", "dan", "dan"), ("user_id", "dan-2", "dan"),  # renamed
                ("user_id", "erin", "erin"), ("anonymous_id", "v-9", "v-9"),
                ("email", "erin@example.com", "erin")]])
    db.dispose()
    store = SqlStore(url, create=True)
    try:
        def person_ids(pid: str) -> list[str]:
            return named_ids(store.person_ids(pid))

        assert person_ids("carol") == ["a-1", "carol"]
        assert person_ids("dan") == ["dan", "dan-2"]
        assert person_ids("erin") == ["erin"]  # not the e-mail's text
        assert person_ids("v-9") == ["v-9"]
        assert store.profile_for("profile", "a-1") == "carol"
    finally:
        store.close()
