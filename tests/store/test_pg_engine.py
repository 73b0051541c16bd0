"""PostgreSQL: the store's engine (engine/store/sql/pg_engine.py) on the local server:
connections pinged only after sitting idle (with backends really terminated), the
connection returned last handed out first, statements prepared at their second run."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine.store.sql.pg_engine import KEEPALIVES, postgres_engine, tcp_settings


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
        pg_new_database: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = [0.0]  # the pool's clock, moved by hand
    engine = postgres_engine(pg_new_database(), clock=lambda: seconds[0])
    pings = _pings(engine, monkeypatch)
    try:
        first = _backend_pid(engine)
        assert pings == []  # just connected: not pinged
        for _ in range(20):  # back in the pool a moment ago: used as it is
            seconds[0] += 0.5
            assert _backend_pid(engine) == first
        assert pings == []
        seconds[0] += 1.0  # idle for the limit: pinged
        assert _backend_pid(engine) == first
        assert pings == [True]
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
        assert _terminate_backends(admin, engine) >= 1
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


@pytest.mark.postgres
def test_connections_keep_tcp_alive_unless_the_url_says_otherwise(pg_new_database: Any) -> None:
    """An idle connection whose peer vanished is found in ~1.5 minutes, not the
    kernel's ~15: libpq's keepalives, each one left to the URL when it names it."""
    url = pg_new_database()
    own = make_url(url).update_query_dict({"keepalives_idle": "5"}).render_as_string(
        hide_password=False)
    for given, idle in ((url, "60"), (own, "5")):
        engine = postgres_engine(given)
        try:
            with engine.connect() as conn:
                params = conn.connection.dbapi_connection.info.get_parameters()
            assert (params["keepalives"], params["keepalives_idle"],
                    params["keepalives_count"], params["tcp_user_timeout"]) == (
                "1", idle, "3", "60000")
        finally:
            engine.dispose()


def test_tcp_settings_leave_a_service_file_and_the_url_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same settings for the pool and the LISTEN connection (notify.py): none of
    those a URL names, none at all when a service file may set them."""
    monkeypatch.delenv("PGSERVICE", raising=False)
    base = "postgresql+psycopg://u@db:5432/jm"
    assert tcp_settings(base) == KEEPALIVES
    assert "keepalives_count" not in tcp_settings(f"{base}?keepalives_count=9")
    assert tcp_settings(f"{base}?service=jm") == {}
    monkeypatch.setenv("PGSERVICE", "jm")
    assert tcp_settings(base) == {}


@pytest.mark.postgres
def test_sends_delivered_while_the_connections_were_lost_are_marked_once(
        pg_new_database: Any, pg_server: str) -> None:
    """The price of pinging only idle connections, paid by the dispatcher: the
    connection its admission used a moment ago goes out unpinged for the write after
    delivery. The database dropped every connection during the delivery; the write
    fails once, is tried again on a new connection, and the send is marked sent (not
    left leased, to go out again when the lease ends)."""
    from engine.runtime.dispatch import Dispatcher
    from engine.store import SqlStore
    from engine.testing import FakeClock
    from tests.store.helpers import T0, outbox_entry

    store = SqlStore(pg_new_database(), create=True)
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    delivered: list[str] = []

    class DroppingChannel:
        name = "email"

        def send(self, message: Any) -> None:
            delivered.append(message.key)
            assert _terminate_backends(admin, store.sql_engine) >= 1

    try:
        store.enqueue_send(outbox_entry("e1:send:0"))
        dispatcher = Dispatcher(store, {"email": DroppingChannel()}, FakeClock(T0))
        assert dispatcher.dispatch_due() == 1
        (record,) = store.outbox_records()
        assert (record.status, record.attempts) == ("sent", 1)
        assert dispatcher.dispatch_due() == 0
        assert delivered == ["e1:send:0"]
    finally:
        store.close()
        admin.dispose()


@pytest.mark.postgres
def test_a_statement_prepared_before_its_table_changed_is_retried(
        pg_new_database: Any, pg_server: str) -> None:
    """Prepared at the second run, a statement fails once another process changes a
    column's type under it ("cached plan must not change result type"): the store calls
    that transient, and the retry plans it again."""
    from engine.store import SqlStore

    store = SqlStore(pg_new_database(), create=True)
    other = create_engine(store.url)
    try:
        with store.sql_engine.begin() as conn:
            conn.execute(text("CREATE TABLE scratch (a integer)"))
            conn.execute(text("INSERT INTO scratch VALUES (1)"))
        read = text("SELECT * FROM scratch")
        with store.sql_engine.connect() as conn:
            for _ in range(2):
                assert conn.execute(read).all() == [(1,)]
            conn.commit()
            with other.begin() as changer:
                changer.execute(text("ALTER TABLE scratch ALTER COLUMN a TYPE bigint"))
            with pytest.raises(DBAPIError) as failed:
                conn.execute(read).all()
            assert store.is_transient(failed.value)
            conn.rollback()
            assert conn.execute(read).all() == [(1,)]
    finally:
        other.dispose()
        store.close()


@pytest.mark.postgres
def test_an_api_request_on_a_lost_connection_answers_503_and_its_retry_is_stored_once(
        pg_new_database: Any, pg_server: str) -> None:
    """The price paid by the API: the request right after the database dropped every
    connection fails its statement. It answers 503 JSON with `Retry-After` (a bare 500
    with a traceback until 2026-12-07), and the client's retry is stored, once."""
    import httpx

    from engine.store import SqlStore
    from tests.api.test_api import Server, track

    store = SqlStore(pg_new_database(), create=True)
    key = store.create_key("web")
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    try:
        with Server(store) as server, httpx.Client(
                base_url=server.url, auth=(key, "")) as client:
            assert client.post("/v1/track", json=track(messageId="m1")).status_code == 200
            assert _terminate_backends(admin, store.sql_engine) >= 1
            lost = client.post("/v1/track", json=track(messageId="m2"))
            assert lost.status_code == 503, lost.text
            assert lost.headers["retry-after"] == "1"
            assert lost.json() == {"success": False, "reason": "the database is unavailable "
                                   "for a moment: send the request again"}
            assert client.post("/v1/track", json=track(messageId="m2")).status_code == 200
        assert store.inbox_counts() == {"pending": 2}
    finally:
        store.close()
        admin.dispose()


@pytest.mark.postgres
def test_readiness_probes_stuck_on_a_lock_never_starve_ingest(
        pg_new_database: Any, pg_server: str) -> None:
    """A migration holds a lock on the schema table; an orchestrator's probes pile up.
    Each probe took a pooled connection and waited on the lock, and with twenty of them
    the API's pool was gone: a /v1/track answered 500 after the pool's 30 s. Now one
    look at a time (engine/runtime/shared_call.py), a probe answers 503 within 2 s,
    and the track is stored at once."""
    import threading
    import time

    import httpx
    from sqlalchemy.engine import make_url

    from engine.store import SqlStore
    from tests.api.test_api import Server, track

    store = SqlStore(pg_new_database(), create=True)
    key = store.create_key("web")
    locker = create_engine(make_url(store.url))
    server = Server(store, ready=store.ready)
    answers: list[tuple[int, float]] = []

    def probe(url: str) -> None:
        began = time.monotonic()
        status = httpx.get(f"{url}/readyz", timeout=60).status_code
        answers.append((status, time.monotonic() - began))

    try:
        with server, locker.connect() as lock:
            assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
            time.sleep(1.2)  # past the second a probe's answer is shared
            lock.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
            probes = [threading.Thread(target=probe, args=(server.url,)) for _ in range(20)]
            for thread in probes:
                thread.start()
            time.sleep(0.5)
            began = time.monotonic()
            posted = httpx.post(f"{server.url}/v1/track", auth=(key, ""), timeout=60,
                                json=track(messageId="during-the-lock"))
            assert posted.status_code == 200, posted.text
            assert time.monotonic() - began < 5
            for thread in probes:
                thread.join(30)
            assert len(answers) == 20
            assert {status for status, _ in answers} == {503}
            assert max(seconds for _, seconds in answers) < 5, answers
            lock.rollback()  # the migration ends: ready again
        assert store.inbox_counts() == {"pending": 1}
    finally:
        store.close()
        locker.dispose()
