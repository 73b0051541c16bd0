"""`ManyRowsPlan` (engine/store/sql/many_rows.py): the batch writes of a unit of work go to the
driver's executemany with each column type's own bind processor, skipping SQLAlchemy's
per-row work. What it stores must be exactly what `conn.execute(statement, rows)` stores,
on SQLite and PostgreSQL: aware datetimes, JSON documents, JSON `null` for None, the
constants written into a statement, and the errors must stay SQLAlchemy's."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.core.model import Enrollment
from engine.store import SqlStore
from engine.store.errors import StoreError
from engine.store.sql.many_rows import ManyRowsPlan
from engine.store.sql.rows import enrollment_values

AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def _enrollment(n: int, profile: str, *, trigger: dict[str, Any] | None) -> Enrollment:
    return Enrollment(id=f"e{n}", journey="welcome", version=2, profile_id=profile,
                      state="wait", status="active", entered_at=AT + timedelta(minutes=n),
                      updated_at=AT + timedelta(minutes=n), entry_event={"event": "Signed Up",
                                                                         "n": n},
                      trigger_event=trigger, data={"coupon": "X1", "nested": {"a": [1, 2]}},
                      visits={"wait": 1})


def _rows(prefix: str) -> list[dict[str, Any]]:
    rows = []
    for n, trigger in enumerate([None, {"event": "Order Completed", "total": 9.5}, None]):
        e = _enrollment(n, f"{prefix}-p{n % 2}", trigger=trigger)
        rows.append({**enrollment_values(e), "id": f"{prefix}-{e.id}",
                     "seq_profile": e.profile_id, "seq_journey": e.journey})
    return rows


def _stored(store: SqlStore, prefix: str) -> list[tuple[Any, ...]]:
    e = store._enrollments
    with store.sql_engine.connect() as conn:
        rows = conn.execute(select(e).where(e.c.id.like(f"{prefix}-%")).order_by(e.c.id)).all()
        # the raw text too: JSON null vs SQL NULL, and the stored datetime format
        raw = conn.execute(text("SELECT id, CAST(trigger_event AS TEXT), CAST(entered_at AS "
                                "TEXT), entry_seq FROM enrollments WHERE id LIKE :p "
                                "ORDER BY id"), {"p": f"{prefix}-%"}).all()
    def same(value: Any) -> Any:  # the two sets differ only by their prefix
        return value.replace(prefix, "X") if isinstance(value, str) else value

    return [tuple(same(v) for v in r) for r in [*rows, *raw]]


def test_many_rows_store_what_sqlalchemy_stores(sql_store: SqlStore) -> None:
    statement = sql_store._upsert_enrollment  # binds, JSON, datetimes, `coalesce(.., 0) + 1`
    with sql_store.sql_engine.begin() as conn:
        conn.execute(statement, _rows("sa"))
        # two new enrollments of one profile and journey: kept apart (PostgreSQL runs a
        # batch as one statement, which sees only what was there before it)
        sql_store._many(conn, statement, _rows("jm"), apart=("seq_profile", "seq_journey"))
    assert _stored(sql_store, "jm") == _stored(sql_store, "sa")
    by_id = {r.id: r for r in sql_store.enrollments("jm-p0", "welcome")}
    assert by_id["jm-e0"].trigger_event is None  # stored as JSON null, read back as None
    assert by_id["jm-e0"].entered_at == AT
    assert by_id["jm-e0"].entered_at.tzinfo is not None
    assert by_id["jm-e2"].data == {"coupon": "X1", "nested": {"a": [1, 2]}}
    # entry_seq numbered per (profile, journey) by the statement's own subquery
    seqs = _entry_seqs(sql_store, "jm")
    assert seqs == {"jm-e0": 1, "jm-e1": 1, "jm-e2": 2}


def _entry_seqs(store: SqlStore, prefix: str) -> dict[str, int]:
    with store.sql_engine.connect() as conn:
        return {str(i): int(seq) for i, seq in conn.execute(text(
            "SELECT id, entry_seq FROM enrollments WHERE id LIKE :p"), {"p": f"{prefix}-%"})}


def test_an_upsert_through_many_rows_updates(sql_store: SqlStore) -> None:
    rows = _rows("up")
    with sql_store.sql_engine.begin() as conn:
        sql_store._many(conn, sql_store._upsert_enrollment, rows)
        sql_store._many(conn, sql_store._upsert_enrollment,
                        [{**rows[0], "state": "done", "status": "completed"}])
    got = {r.id: r for r in sql_store.enrollments("up-p0", "welcome")}
    assert (got["up-e0"].state, got["up-e0"].status) == ("done", "completed")
    assert got["up-e2"].state == "wait"


def test_a_refused_row_raises_sqlalchemys_error(sql_store: SqlStore) -> None:
    """The batch's fallback (one profile per transaction) and the retry of a busy
    database both tell errors apart by SQLAlchemy's classes."""
    row = {"enrollment_id": "e1", "profile_id": None, "journey": "j", "step": "s",
           "reason": "r", "at": AT}  # profile_id is NOT NULL
    with pytest.raises(IntegrityError), sql_store.sql_engine.begin() as conn:
        sql_store._many(conn, sql_store._record_exit, [row])


def test_a_busy_sqlite_database_stays_an_operational_error(tmp_path: Any,
                                                           sqlite_template: Any) -> None:
    from tests.store.conftest import make_sqlite_store
    store = make_sqlite_store(sqlite_template, tmp_path)
    fast = SqlStore(store.url, busy_timeout_ms=50)
    other = sqlite3.connect(str(tmp_path / "journeyman.db"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        row = {"enrollment_id": "e1", "profile_id": "p", "journey": "j", "step": "s",
               "reason": "r", "at": AT}
        # a deferred BEGIN: the INSERT asks for the write lock
        with fast._read() as conn, pytest.raises(OperationalError) as refused:
            fast._many(conn, fast._record_exit, [row])
        assert fast.is_transient(refused.value)  # retried as is, not refused
    finally:
        other.rollback()
        other.close()
        fast.close()
        store.close()


def test_a_python_side_default_is_refused(sql_store: SqlStore) -> None:
    """A value SQLAlchemy would compute per row cannot go straight to the driver."""
    from sqlalchemy import Column, Integer, MetaData, String, Table
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True),
                  Column("name", String), Column("kind", String, default=lambda: "made"))
    statement = insert(table).values(name=bindparam("name"))
    with pytest.raises(StoreError, match="defaults computed in Python"):
        ManyRowsPlan.of(statement, sql_store.sql_engine.dialect)


HOSTILE = ["it's \"quoted\"", "back\\slash \\u0041 %(jm_rows)s %s", "ünï ✓ 𝄞", "->>0", "",
           "line\nbreak\ttab", "x" * 5000]


def _hostile_rows(prefix: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    decisions = [{"at": AT + timedelta(microseconds=i), "profile_id": f"{prefix}-p{i}",
                  "journey": "welcome", "step": value[:200], "what": "sent", "reason": value[:200],
                  "details": {"text": value, "n": i, "big": 2**62, "f": 0.1, "yes": True,
                              "none": None, "list": [value, {"k": value}]}}
                 for i, value in enumerate(HOSTILE)]
    goals = [{"enrollment_id": f"{prefix}-e{i}", "profile_id": f"{prefix}-p{i}",
              "journey": "welcome", "at": AT, "value": value}
             for i, value in enumerate([0.1, 1e300, -2.5e-7, None, 42])]
    return decisions, goals


def test_hostile_values_store_what_sqlalchemy_stores(sql_store: SqlStore) -> None:
    """Quotes, backslashes, a placeholder's spelling, unicode beyond the BMP, 5,000
    characters, JSON inside JSON, floats at their extremes: the rows one statement reads
    from a JSON document (PostgreSQL) are the rows `conn.execute` writes."""
    d, g = sql_store._decisions, sql_store._goals
    with sql_store.sql_engine.begin() as conn:
        for prefix, write in (("viasqla", conn.execute), ("viaplan", None)):
            decisions, goals = _hostile_rows(prefix)
            if write is None:
                sql_store._many(conn, sql_store._q["record_decision"], decisions)
                sql_store._many(conn, sql_store._record_goal, goals)
            else:
                write(sql_store._q["record_decision"], decisions)
                write(sql_store._record_goal, goals)

    def stored(prefix: str) -> list[tuple[Any, ...]]:
        with sql_store.sql_engine.connect() as conn:
            rows = [*conn.execute(select(d.c.at, d.c.profile_id, d.c.step, d.c.reason,
                                         d.c.details).where(d.c.profile_id.like(f"{prefix}-%"))
                                  .order_by(d.c.id)),
                    *conn.execute(select(g.c.profile_id, g.c.at, g.c.value)
                                  .where(g.c.profile_id.like(f"{prefix}-%")).order_by(g.c.id))]
        return [tuple(v.replace(prefix, "X") if isinstance(v, str) else v for v in r)
                for r in rows]

    assert stored("viaplan") == stored("viasqla")
    assert len(stored("viaplan")) == len(HOSTILE) + 5
    # in the batch's order
    assert [r[4]["text"] for r in stored("viaplan")[:len(HOSTILE)]] == HOSTILE


def test_a_batch_is_one_statement_on_postgresql(sql_store: SqlStore) -> None:
    """PostgreSQL: a batch's rows go as one statement (one JSON document), not one
    statement per row; rows that must not share a statement (`apart`) take one more."""
    from sqlalchemy import event

    if not sql_store._pg:
        pytest.skip("SQLite runs a batch through executemany")
    calls: list[bool] = []

    def count(conn: Any, cursor: Any, sql: str, params: Any, context: Any,
              executemany: bool) -> None:
        if "jm_rows" in sql:
            calls.append(executemany)

    event.listen(sql_store.sql_engine, "before_cursor_execute", count)
    try:
        decisions, _ = _hostile_rows("one")
        with sql_store.sql_engine.begin() as conn:
            sql_store._many(conn, sql_store._q["record_decision"], decisions * 10)
            assert calls == [False]
            sql_store._many(conn, sql_store._upsert_enrollment, _rows("two"),
                            apart=("seq_profile", "seq_journey"))
            assert calls == [False, False, False]  # p0 twice: two statements
    finally:
        event.remove(sql_store.sql_engine, "before_cursor_execute", count)


def test_a_batch_with_an_integer_beyond_64_bits_is_written_whole_and_exact(
        sql_store: SqlStore) -> None:
    """One row of a batch with 2**70 + 1 in its details: every row is stored, that one
    exactly; on PostgreSQL only that row's JSON goes through the standard library
    (`jsonfast.dumps_rows`), the others through orjson."""
    import json

    from engine import jsonfast

    decisions, _ = _hostile_rows("big")
    decisions[3] = {**decisions[3], "details": {"order": 2**70 + 1}}
    slow: list[Any] = []
    real = json.dumps

    def counted(value: Any, **kwargs: Any) -> str:
        slow.append(value)
        return real(value, **kwargs)

    jsonfast.json.dumps = counted  # type: ignore[assignment]
    try:
        with sql_store.sql_engine.begin() as conn:
            sql_store._many(conn, sql_store._q["record_decision"], decisions)
    finally:
        jsonfast.json.dumps = real
    d = sql_store._decisions
    with sql_store.sql_engine.connect() as conn:
        details = [r[0] for r in conn.execute(select(d.c.details).where(
            d.c.profile_id.like("big-%")).order_by(d.c.id))]
    assert len(details) == len(decisions)
    assert details[3] == {"order": 2**70 + 1}
    if sql_store._pg:  # that row alone, not the batch's document (a list of rows)
        assert len(slow) == 1
        assert {"order": 2**70 + 1} in slow[0]
        assert not any(isinstance(value, list) for value in slow[0])


def test_a_row_converter_is_the_loop_it_replaces() -> None:
    """`row_converter` writes one expression per value: each through its processor (None
    too), in order; a constant when the row lacks it; names quoted, whatever they hold."""
    from engine.store.sql.many_rows import row_converter

    def loud(value: object) -> str:
        return f"<{value}>"

    pairs = (("a", None), ("b", loud), ("it's \"odd\"", None), ("k", loud))
    row = {"a": 1, "b": None, "it's \"odd\"": [2], "k": "x", "unused": 3}
    assert row_converter(pairs, "tuple")(row) == (1, "<None>", [2], "<x>")
    assert row_converter(pairs, "list")(row) == [1, "<None>", [2], "<x>"]
    assert row_converter(pairs, "dict")(row) == {"a": 1, "b": "<None>", "it's \"odd\"": [2],
                                                 "k": "<x>"}
    with_constant = row_converter(pairs, "tuple", {"k": "c"})
    assert with_constant({**row, "k": "y"}) == (1, "<None>", [2], "<y>")
    assert with_constant({k: v for k, v in row.items() if k != "k"}) == (1, "<None>", [2], "<c>")
    assert row_converter((), "tuple")({}) == ()
    with pytest.raises(KeyError):
        row_converter(pairs, "tuple")({"a": 1})


def test_a_row_reader_reads_each_column_and_lets_null_through() -> None:
    from engine.store.sql.many_rows import row_reader

    read = row_reader([("id", None), ("data", lambda v: f"<{v}>"), ("it's", int)])
    assert read(("a", "x", "7")) == {"id": "a", "data": "<x>", "it's": 7}
    assert read(("a", None, None)) == {"id": "a", "data": None, "it's": None}
    assert row_reader([("only", str.upper)])(("x",)) == {"only": "X"}
    with pytest.raises(ValueError, match="unpack"):
        read(("a", "x"))
