"""SQLite's hot statements at the driver (engine/store/sql/driver.py): the same rows as
SQLAlchemy reads, its errors, its listeners."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    event,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.store import SqlStore
from engine.store.sql.driver import DriverQuery, driver_execute, driver_many
from engine.store.sql.types import UTCDateTime, json_type
from tests.store.conftest import make_sqlite_store

T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)

metadata = MetaData()
things = Table("driver_things", metadata,
               Column("id", Integer, primary_key=True), Column("name", String(40)),
               Column("doc", json_type()), Column("at", UTCDateTime), Column("ok", Boolean),
               Column("kind", String(10)))


@pytest.fixture
def store(sqlite_template: Path, tmp_path: Path) -> Any:
    store = make_sqlite_store(sqlite_template, tmp_path)
    metadata.create_all(store.sql_engine)
    with store.sql_engine.begin() as conn:
        conn.execute(things.insert(), [
            {"id": i, "name": f"n{i}", "doc": {"i": i, "tags": ["a", i]} if i % 3 else None,
             "at": T0 + timedelta(minutes=i) if i % 2 else None, "ok": i % 2 == 0,
             "kind": "x" if i < 5 else "y"} for i in range(10)])
    yield store
    store.close()


STATEMENTS = {
    "a list, a datetime and a constant": select(things).where(
        things.c.id.in_(bindparam("ids", expanding=True)),
        (things.c.at.is_(None)) | (things.c.at >= bindparam("since")),
        things.c.kind == "x").order_by(things.c.id),
    "a list of strings, a limit": select(things.c.name, things.c.doc).where(
        things.c.name.in_(bindparam("names", expanding=True)))
    .order_by(things.c.name.desc()).limit(bindparam("limit")),
    "a few columns": select(things.c.kind, things.c.at).where(
        things.c.id.in_(bindparam("ids", expanding=True))).order_by(things.c.id),
}
PARAMS = {"ids": [1, 2, 3, 4, 7, 99], "since": T0 + timedelta(minutes=2),
          "names": ["n1", "n3", "n8", "nobody"], "limit": 2}


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_the_driver_reads_what_sqlalchemy_reads(store: SqlStore, name: str) -> None:
    statement = STATEMENTS[name]
    query = DriverQuery(statement, store.sql_engine.dialect)
    used = {k: v for k, v in PARAMS.items() if k in statement.compile().params}
    with store.sql_engine.connect() as conn:
        theirs = [dict(r) for r in conn.execute(statement, used).mappings().all()]
        ours = query.rows(conn, used)
    assert theirs, "the statement finds nothing: the comparison would prove little"
    assert ours == theirs
    for row in ours:  # the same types, not only equal values (True == 1)
        for column, value in row.items():
            other = theirs[ours.index(row)][column]
            assert type(value) is type(other), (column, value, other)
    assert "json_each(?)" in query.sql  # one statement text for any length of list


def test_an_empty_list_matches_nothing(store: SqlStore) -> None:
    query = DriverQuery(STATEMENTS["a list, a datetime and a constant"],
                        store.sql_engine.dialect)
    with store.sql_engine.connect() as conn:
        assert query.rows(conn, {"ids": [], "since": T0}) == []


def test_returning_rows_and_rowcounts(store: SqlStore) -> None:
    dialect = store.sql_engine.dialect
    take = DriverQuery(delete(things).where(things.c.id.in_(bindparam("ids", expanding=True)))
                       .returning(things.c.id, things.c.at), dialect)
    drop = DriverQuery(delete(things).where(things.c.kind == bindparam("kind")), dialect)
    with store.sql_engine.begin() as conn:
        taken = sorted(take.rows(conn, {"ids": [1, 2]}), key=lambda r: r["id"])
        assert taken == [{"id": 1, "at": T0 + timedelta(minutes=1)}, {"id": 2, "at": None}]
        assert taken[0]["at"].tzinfo is UTC
        assert drop.run(conn, {"kind": "y"}) == 5
    with store.sql_engine.connect() as conn:
        assert conn.execute(select(things.c.id).order_by(things.c.id)).scalars().all() == [
            0, 3, 4]


def test_driver_errors_are_sqlalchemy_errors_with_their_parameters_hidden(
        store: SqlStore) -> None:
    """A worker retries OperationalError as transient and refuses IntegrityError: the
    driver's errors must arrive as those, as through SQLAlchemy (with the engine's
    `hide_parameters`: no personal data in the message)."""
    with store.sql_engine.connect() as conn, pytest.raises(IntegrityError) as duplicate:
        driver_many(conn, "INSERT INTO driver_things (id, name) VALUES (?, ?)",
                    [(100, "secret@example.com"), (100, "secret@example.com")])
    assert "secret@example.com" not in str(duplicate.value)
    assert isinstance(duplicate.value.orig, sqlite3.IntegrityError)
    with store.sql_engine.connect() as conn, pytest.raises(OperationalError,
                                                          match="no such table"):
        driver_execute(conn, "SELECT * FROM no_such_table")


def test_a_locked_database_is_an_operational_error(store: SqlStore, tmp_path: Path) -> None:
    """Another process's write lock, held past the busy timeout: the worker's transient
    error, not a crash."""
    other = sqlite3.connect(tmp_path / "journeyman.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with store.sql_engine.connect() as conn:
            driver_execute(conn, "PRAGMA busy_timeout=50")
            with pytest.raises(OperationalError, match="locked"):
                driver_execute(conn, "BEGIN IMMEDIATE")
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_listeners_see_the_driver_statements(store: SqlStore) -> None:
    """Statement logging and tracing hook SQLAlchemy's cursor events: they see the
    statements run at the driver too (tests/store/test_query_plans.py depends on it)."""
    seen: list[tuple[str, Any, bool]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any,
               many: bool) -> None:
        seen.append((statement, parameters, many))

    event.listen(store.sql_engine, "before_cursor_execute", before)
    try:
        with store.sql_engine.begin() as conn:
            driver_many(conn, "UPDATE driver_things SET name = ? WHERE id = ?",
                        [("a", 1), ("b", 2)])
            DriverQuery(STATEMENTS["a few columns"], store.sql_engine.dialect).rows(
                conn, {"ids": [1]})
    finally:
        event.remove(store.sql_engine, "before_cursor_execute", before)
    assert ("UPDATE driver_things SET name = ? WHERE id = ?", [("a", 1), ("b", 2)],
            True) in seen
    assert any("json_each" in s and p == ("[1]",) and not many for s, p, many in seen)


def test_statements_it_cannot_run_faithfully_are_refused(store: SqlStore) -> None:
    """Refused when built, not wrong when run: a list of tuples (a JSON array of arrays
    is no row-value IN), columns named alike (a row is a dict)."""
    from sqlalchemy import tuple_

    from engine.store.errors import StoreError

    dialect = store.sql_engine.dialect
    pairs = select(things.c.id).where(tuple_(things.c.id, things.c.kind).in_(
        bindparam("pairs", expanding=True)))
    with pytest.raises(StoreError, match="not a list of plain values"):
        DriverQuery(pairs, dialect)
    alike = select(things.c.id, things.c.name.label("id"))
    with pytest.raises(StoreError, match="named alike"):
        DriverQuery(alike, dialect)


@pytest.mark.postgres
def test_postgresql_reads_what_sqlalchemy_reads(pg_database: str) -> None:
    """The same on PostgreSQL (psycopg's names, lists as arrays, timestamps with time
    zone, JSON parsed by psycopg with the engine's deserializer)."""
    from sqlalchemy import text

    from engine.store.sql.lists import among

    store = SqlStore(pg_database)
    try:
        metadata.create_all(store.sql_engine)
        with store.sql_engine.begin() as conn:
            conn.execute(things.delete())
            conn.execute(things.insert(), [
                {"id": i, "name": f"n{i}", "doc": {"i": i, "big": 2**62} if i % 3 else None,
                 "at": T0 + timedelta(minutes=i) if i % 2 else None, "ok": i % 2 == 0,
                 "kind": "x" if i < 5 else "y"} for i in range(10)])
        statements = {
            "ids": select(things).where(among(things.c.id, "ids", pg=True),
                                        things.c.kind == "x").order_by(things.c.id),
            "names": select(things.c.name, things.c.at, things.c.doc).where(
                among(things.c.name, "names", pg=True), things.c.at > bindparam("since"))
            .order_by(things.c.name).limit(bindparam("limit")),
        }
        params = {"ids": [1, 2, 3, 4, 99], "names": ["n1", "n3", "n5", "n6"],
                  "since": T0, "limit": 5}
        with store.sql_engine.connect() as conn:
            for name, statement in statements.items():
                used = {k: v for k, v in params.items() if k in statement.compile().params}
                theirs = [dict(r) for r in conn.execute(statement, used).mappings().all()]
                ours = DriverQuery(statement, store.sql_engine.dialect).rows(conn, used)
                assert theirs, name
                assert ours == theirs, name
                assert [[type(v) for v in r.values()] for r in ours] == [
                    [type(v) for v in r.values()] for r in theirs], name
                assert all(r["at"] is None or r["at"].tzinfo is UTC for r in ours)
        with store.sql_engine.begin() as conn:
            assert DriverQuery(things.delete().where(things.c.kind == bindparam("kind")),
                               store.sql_engine.dialect).run(conn, {"kind": "y"}) == 5
            conn.execute(text("DROP TABLE driver_things"))
    finally:
        store.close()


def test_sqlites_json_values_are_the_text_sqlalchemy_binds(store: SqlStore) -> None:
    """many_rows.py binds SQLite's JSON values itself (`_json_text`): the same text as
    SQLAlchemy's JSON processor, sentinels included."""
    from sqlalchemy import null

    from engine.store.sql.many_rows import _json_text

    theirs = JSON().bind_processor(store.sql_engine.dialect)  # type: ignore[no-untyped-call]
    assert theirs is not None
    for value in ({"a": [1, "é", None]}, {}, [1, 2], None, "text", 1.5, JSON.NULL, null(),
                  {"big": 2**70}):
        assert _json_text(value) == theirs(value), value


@pytest.mark.postgres
def test_a_column_it_cannot_read_on_postgresql_is_refused(pg_database: str) -> None:
    """psycopg's Float and Numeric readers need the column's type code, which a read
    compiled once has none of: refused when built, not wrong when run."""
    from engine.store.errors import StoreError

    store = SqlStore(pg_database)
    try:
        measures = Table("driver_measures", MetaData(), Column("id", Integer, primary_key=True),
                         Column("value", Float))
        with pytest.raises(StoreError, match="cannot read"):
            DriverQuery(select(measures), store.sql_engine.dialect)
    finally:
        store.close()
