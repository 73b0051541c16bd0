"""PostgreSQL: the store's engine (engine/store/sql/pg_engine.py) on the local server:
connections pinged only after sitting idle (with backends really terminated), the
connection returned last handed out first, statements prepared at their second run."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from engine.store.sql.pg_engine import postgres_engine


def _pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every ping the engine's checkouts make, True if it got an answer (the real ping
    runs)."""
    seen: list[bool] = []
    real = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        try:
            alive = real(dbapi_conn)
        except Exception:
            seen.append(False)
            raise
        seen.append(alive)
        return alive

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return seen


def _terminate_backends(admin: Engine, engine: Engine) -> int:
    database = engine.url.database
    with admin.connect() as conn:
        return len(conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
            "AND pid <> pg_backend_pid()"), {"d": database}).all())


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.postgres
def test_a_busy_connection_is_not_pinged_and_an_idle_one_is(
        pg_new_database: Any, pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = postgres_engine(pg_new_database())
    pings = _pings(engine, monkeypatch)
    try:
        first = _backend_pid(engine)
        assert pings == [True]  # a new connection: pinged
        for _ in range(20):  # back in the pool a moment ago: used as it is
            assert _backend_pid(engine) == first
        assert pings == [True]
        # idle past the limit (the checkin time turned back): pinged again
        monkeypatch.setattr("engine.store.sql.pg_engine.time.monotonic",
                            lambda: 1e12)
        assert _backend_pid(engine) == first
        assert pings == [True, True]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_idle_connection_whose_server_went_away_is_replaced_before_use(
        pg_new_database: Any, pg_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database restarted while the process was quiet: the ping finds the dead
    connection, the pool connects again, and the statement never sees it."""
    engine = postgres_engine(pg_new_database(), idle_s=0.0)  # every checkout is "idle"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    pings = _pings(engine, monkeypatch)
    try:
        before = _backend_pid(engine)
        assert _terminate_backends(admin, engine) == 1
        after = _backend_pid(engine)  # no error
        assert after != before
        assert pings[-2:] == [False, True]  # the dead one, then the new one
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.postgres
def test_a_connection_lost_while_busy_fails_once_and_the_pool_recovers(
        pg_new_database: Any, pg_server: str) -> None:
    """The price (pg_engine.py): a connection whose server went away within the idle
    limit fails its next statement, as a connection-invalidated DBAPIError (which the
    worker retries as transient); the statement after it runs on a new connection."""
    engine = postgres_engine(pg_new_database(), idle_s=3600.0)
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        before = _backend_pid(engine)
        _terminate_backends(admin, engine)
        with pytest.raises(DBAPIError) as failed:
            _backend_pid(engine)
        assert failed.value.connection_invalidated
        assert _backend_pid(engine) != before
    finally:
        engine.dispose()
        admin.dispose()


@pytest.mark.postgres
def test_the_last_connection_back_goes_out_first_and_prepares_at_the_second_run(
        pg_new_database: Any) -> None:
    """With connections handed out in turn, each statement was parsed and planned on
    every connection of the pool; now the one returned last goes out again, and a
    statement is prepared when it runs the second time on a connection."""
    engine = postgres_engine(pg_new_database())
    try:
        first, second = engine.connect(), engine.connect()
        returned_last = _pid(first)
        second.close()
        first.close()  # back last: out first (in turn, `second` would be)
        assert [_backend_pid(engine) for _ in range(5)] == [returned_last] * 5
        mine = text("SELECT count(*) FROM pg_prepared_statements "
                    "WHERE statement = 'SELECT CAST($1 AS integer) * 7'")
        statement = text("SELECT CAST(:x AS integer) * 7")
        with engine.connect() as conn:
            conn.execute(statement, {"x": 1})
            assert conn.execute(mine).scalar_one() == 0  # run once: not prepared
            conn.execute(statement, {"x": 2})
            assert conn.execute(mine).scalar_one() == 1  # run again: prepared
    finally:
        engine.dispose()


def _pid(conn: Any) -> int:
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
