"""PostgreSQL: the dispatcher's write of what it delivered, when the database drops the
connection at the worst moment (engine/runtime/outcomes.py). An operator's trial
terminated every backend four times, 0.7 s apart, under load: ~20 sends a round went out
twice (the write failed at its COMMIT, the rows stayed leased and went out again 60 s
later), and through PgBouncer psycopg raised "received 2 results from command 'BEGIN'",
which nothing tried again. Each failure here is made once, at that moment, on the real
server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, event, text

from engine.runtime.dispatch import Dispatcher
from engine.store import SqlStore
from engine.testing import FakeClock
from tests.store.helpers import T0, outbox_entry

pytestmark = pytest.mark.postgres

KEY = "e1:send:0"


class Recording:
    """An email channel that delivers; `armed` set once it has (the write comes next)."""

    name = "email"

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.armed = False

    def send(self, message: Any) -> None:
        self.delivered.append(message.key)
        self.armed = True


@pytest.fixture
def store(pg_new_database: Any) -> Iterator[SqlStore]:
    made = SqlStore(pg_new_database(), create=True)
    made.enqueue_send(outbox_entry(KEY))
    yield made
    made.close()


def _gone(admin: Engine, pid: int) -> None:
    """Wait until the backend `pid` has exited (pg_terminate_backend only signals it)."""
    deadline = time.monotonic() + 10
    with admin.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                           {"p": pid}).scalar_one():
            assert time.monotonic() < deadline, "the backend did not exit"
            time.sleep(0.01)


def _sent_once(store: SqlStore, clock: FakeClock, dispatcher: Dispatcher,
               channel: Recording) -> None:
    """Marked sent once, one decision, and nothing goes out again after the lease."""
    (record,) = store.outbox_records()
    assert (record.status, record.attempts) == ("sent", 1)
    assert [d.what for d in store.recorded_decisions()] == ["sent"]
    clock.advance(dispatcher.lease + timedelta(minutes=1))
    assert dispatcher.dispatch_due() == 0
    assert channel.delivered == [KEY]


def test_a_write_whose_backend_was_terminated_at_commit_is_written_again(
        store: SqlStore, pg_server: str) -> None:
    """The backend dies as the write's COMMIT goes out: the COMMIT fails and nothing
    committed. The dispatcher asks the database (the row still pending at the claim's
    lease: not written) and writes it again; before, it gave up after a failed COMMIT
    and the row went out again when the lease ended."""
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    channel, clock = Recording(), FakeClock(T0)
    terminated: list[int] = []

    @event.listens_for(store.sql_engine, "commit")
    def _kill(conn: Any) -> None:
        if channel.armed and not terminated:
            pid = conn.connection.driver_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            _gone(admin, pid)
            terminated.append(pid)

    try:
        dispatcher = Dispatcher(store, {"email": channel}, clock)
        assert dispatcher.dispatch_due() == 1
        assert len(terminated) == 1
        _sent_once(store, clock, dispatcher, channel)
    finally:
        admin.dispose()


def test_a_commit_that_went_through_but_failed_for_the_driver_is_not_written_again(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The COMMIT commits and the driver reports an error anyway (the connection lost
    before the answer came back): the dispatcher asks, finds the row sent, and writes
    nothing more (a second write would log the decision twice, take a deferral's attempt
    back twice, park a failure twice). Before, the error escaped the dispatcher."""
    channel, clock = Recording(), FakeClock(T0)
    dialect = store.sql_engine.dialect
    real = dialect.do_commit
    commits: list[bool] = []

    def commit_then_fail(dbapi_conn: Any) -> None:
        real(dbapi_conn)
        if channel.armed and not commits:
            commits.append(True)
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(dialect, "do_commit", commit_then_fail)
    dispatcher = Dispatcher(store, {"email": channel}, clock)
    assert dispatcher.dispatch_due() == 1
    assert commits == [True]
    _sent_once(store, clock, dispatcher, channel)


def test_a_pooler_out_of_step_at_the_writes_begin_is_tried_again(store: SqlStore) -> None:
    """Through PgBouncer while backends were terminated, psycopg found two results for
    the write's BEGIN (an InternalError with no SQLSTATE: the conversation is out of
    step). The connection is dropped like a lost one, and the write, which cannot have
    committed, goes again on a new one; before, the error was not transient and the row
    waited for its lease to end, to go out again."""
    channel, clock = Recording(), FakeClock(T0)
    raised: list[str] = []

    @event.listens_for(store.sql_engine, "before_cursor_execute")
    def _out_of_step(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if channel.armed and not raised and statement.lstrip().upper().startswith("UPDATE"):
            raised.append(statement)
            raise psycopg.InternalError("received 2 results from command 'BEGIN'")

    dispatcher = Dispatcher(store, {"email": channel}, clock)
    assert dispatcher.dispatch_due() == 1
    assert len(raised) == 1
    _sent_once(store, clock, dispatcher, channel)


def test_the_servers_own_internal_errors_are_not_taken_for_a_lost_connection(
        store: SqlStore) -> None:
    """Only psycopg's own InternalError, with no SQLSTATE, drops the connection
    (engine/store/sql/pg_engine.py `_out_of_step`). The server's (XX000, and a code of
    that class psycopg has no name for) keep their SQLSTATE, their connection, and are
    not transient: done again, they would fail again."""
    from sqlalchemy.exc import DBAPIError

    for code in ("XX000", "XX999"):
        with store.sql_engine.connect() as conn, pytest.raises(DBAPIError) as failed:
            conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'internal' USING ERRCODE = "
                              f"'{code}'; END $$"))
        assert isinstance(failed.value.orig, psycopg.InternalError)
        assert failed.value.orig.sqlstate == code
        assert not failed.value.connection_invalidated
        assert not store.is_transient(failed.value)


def test_a_lease_look_on_rows_a_lost_transaction_holds_fails_instead_of_waiting(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write whose connection was lost unseen (a partition) leaves its transaction idle
    on the server, its row locks held until the server's keepalive gives up (hours). The
    look after a failed COMMIT is an UPDATE of those rows: it waited for ever, and its
    dispatcher with it (deaf to SIGTERM). It gives up after EXTEND_LOCK_WAIT_MS now, so
    the dispatcher asks again after a pause or leaves the rows to their lease."""
    import engine.store.sql.outbox as outbox_module
    from engine.runtime.lease import ClaimLease

    monkeypatch.setattr(outbox_module, "EXTEND_LOCK_WAIT_MS", 300, raising=False)
    [entry] = store.claim_outbox(T0, 10, timedelta(seconds=60))
    ours = T0 + timedelta(seconds=60)
    holder = create_engine(store.sql_engine.url)
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT 1 FROM outbox WHERE send_key = :k FOR UPDATE"),
                         {"k": KEY})  # an idle transaction holding the row
            lease = ClaimLease(store, timedelta(seconds=60), ours, [entry.key])
            began = time.monotonic()
            with pytest.raises(Exception, match="lock timeout"):
                lease.look([entry.key])
            assert time.monotonic() - began < 5
            conn.rollback()
        assert lease.look([entry.key]) is False  # free again: still ours, not written
    finally:
        holder.dispose()
