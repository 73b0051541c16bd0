"""Transient database errors in a row (engine/runtime/transients.py): the worker waits
longer each time instead of asking a database that is away a hundred times a second,
and a profile whose writes fail "transiently" every time (a trigger, a limit, an error
the driver misfiles) stops holding everybody else: after a few rounds the batch is done
in parts, and that profile's event fails alone, then is parked. On SQLite and
PostgreSQL, with real database errors, on the fake clock."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.runtime.events import normalize
from engine.runtime.metrics import Metrics
from engine.runtime.transients import (
    AWAY_AFTER,
    FIRST_WAIT,
    IN_PARTS_AFTER,
    LONGEST_WAIT,
    TransientErrors,
)
from engine.store import SqlStore
from engine.testing import FakeClock, InMemoryEngine
from tests.engine.helpers import stub_email, write_folder
from tests.store.helpers import T0
from tests.store.test_isolation import LATER

GOOD = [f"good{i}" for i in range(20)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InMemoryEngine]:
    from tests.store.conftest import make_pg_store, make_sqlite_store

    folder = write_folder(tmp_path / "j", {"later": LATER}, {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    store = (make_sqlite_store(request.getfixturevalue("sqlite_template"), tmp_path)
             if request.param == "sqlite" else make_pg_store(request.getfixturevalue(
                 "pg_database")))
    store.clock = eng.clock
    eng.use_store(store)
    yield eng
    store.close()


def _accept(eng: InMemoryEngine, users: list[str]) -> None:
    eng.store.accept_events([
        normalize({"type": "identify", "userId": user, "traits": {"email": f"{user}@x.org"}},
                  now=eng.now, message_id=f"m-{user}") for user in users])


def _busy_for(store: SqlStore, profile: str) -> Iterator[None]:
    """Every write of `profile`'s row fails, from the database itself. PostgreSQL: a
    trigger raising serialization_failure (40001), an error every driver calls
    transient, misfiled here (it comes with the data every time). SQLite: a trigger
    calling a function that raises (SQLITE_ERROR: filed as not transient)."""
    if store.dialect == "postgresql":
        with store.sql_engine.begin() as conn:
            conn.execute(text(
                "CREATE FUNCTION jm_busy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; "
                "END $$"))
            conn.execute(text(
                f"CREATE TRIGGER jm_busy BEFORE INSERT OR UPDATE ON profiles FOR EACH ROW "
                f"WHEN (NEW.id = '{profile}') EXECUTE FUNCTION jm_busy()"))
        try:
            yield
        finally:
            with store.sql_engine.begin() as conn:
                conn.execute(text("DROP TRIGGER jm_busy ON profiles"))
                conn.execute(text("DROP FUNCTION jm_busy()"))
        return

    def busy() -> None:
        raise RuntimeError("busy")

    def register(dbapi: Any, _record: Any) -> None:
        dbapi.create_function("jm_busy", 0, busy)

    event.listen(store.sql_engine, "connect", register)
    store.sql_engine.dispose()  # every connection from here on has the function
    store._local.__dict__.clear()
    with store.sql_engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TRIGGER jm_busy BEFORE INSERT ON profiles WHEN NEW.id = '{profile}' "
            "BEGIN SELECT jm_busy(); END")
    yield


def test_a_profile_whose_writes_fail_every_time_fails_alone_and_is_parked(
        engine: InMemoryEngine) -> None:
    """`bad`'s writes fail every time while other visitors keep coming. Before: on
    PostgreSQL (an error filed as transient) every batch holding `bad` rolled back and
    came round again every 100 ms, forever, and nobody's events got through; on SQLite
    (filed as transient too, as any OperationalError was) the same."""
    eng = engine
    busy = _busy_for(eng.store, "bad")  # type: ignore[arg-type]
    next(busy)
    try:
        _accept(eng, ["bad", *GOOD])
        visitors = list(GOOD)
        for n in range(300):  # bounded: the old worker never got through
            _accept(eng, [f"new{n}"])
            visitors.append(f"new{n}")
            while eng.worker.handle_events():
                pass
            due = eng.worker.next_inbox_at()
            eng.clock.advance(timedelta(seconds=1) if due is None else max(
                due - eng.now, timedelta(milliseconds=1)))
            if eng.store.failures():
                break
        while eng.worker.handle_events():
            pass
        [parked] = eng.store.failures()
        assert parked.profile_id == "bad"
        assert parked.kind == "event"
        assert parked.attempts == eng.worker.backoff.max_attempts
        dialect = eng.store.dialect  # type: ignore[attr-defined]
        assert ("could not serialize access" if dialect == "postgresql"
                else "user-defined function raised exception") in parked.error
        assert eng.store.get_profile("bad") is None
        assert eng.worker.stats.events == len(visitors)
        assert all(eng.store.get_profile(u) is not None for u in visitors)
        assert eng.store.inbox_counts() == {"parked": 1}  # kept for `journeyman failures`
    finally:
        next(busy, None)


def test_a_database_away_is_asked_less_and_less_often_and_nothing_is_counted_against_anyone(
        engine: InMemoryEngine, caplog: pytest.LogCaptureFixture) -> None:
    """Every read fails (the database is away): the waits double up to LONGEST_WAIT, the
    log says so at the 1st, 2nd, 4th, 8th... error only, no event counts a failure, and
    when the database is back everything is handled."""
    from sqlalchemy.exc import OperationalError

    eng = engine
    _accept(eng, GOOD)
    store: Any = eng.store
    name = "claim_inbox" if eng.worker.snapshots is None else "peek_inbox"
    tries = 0

    def away(*_: Any, **__: Any) -> Any:
        nonlocal tries
        tries += 1
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    setattr(store, name, away)
    eng.worker.metrics = metrics = Metrics()
    waits = []
    with caplog.at_level(logging.INFO, logger="journeyman.worker"):
        for _ in range(12):
            assert eng.worker.handle_events() == 0
            assert eng.worker.handle_events() == 0  # inside the wait: not even tried
            due = eng.worker.next_inbox_at()
            assert due is not None
            waits.append(due - eng.now)
            eng.clock.set(due)
        delattr(store, name)
        while eng.worker.handle_events():
            pass
    # once a round, not in a loop; in the write transaction (PostgreSQL) also a look at
    # what is due for a round in parts from the 3rd on
    assert tries == (12 if eng.worker.snapshots is not None else 12 + 10)
    assert waits[:6] == [FIRST_WAIT * 2 ** i for i in range(6)]
    assert waits[-1] == LONGEST_WAIT
    assert metrics.registry.get_sample_value(
        "journeyman_transient_errors_total", {"kind": "events"}) == tries
    assert eng.worker.stats.failures == 0
    assert eng.store.failures() == []
    assert eng.worker.stats.events == len(GOOD)
    said = [r.getMessage() for r in caplog.records if "in a row)" in r.getMessage()]
    assert [s.split("(events: ")[1].split(" ")[0] for s in said] == ["1", "2", "4", "8"]
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_the_rounds_go_in_parts_only_after_a_streak() -> None:
    clock = FakeClock(T0)
    errors = TransientErrors(clock)
    for n in range(1, IN_PARTS_AFTER + 1):
        errors.failed("events", RuntimeError("locked"))
        assert errors.in_parts("events") == (n >= IN_PARTS_AFTER)
        assert not errors.in_parts("timers")
    assert errors.not_before("events", T0) == T0 + FIRST_WAIT * 4
    assert errors.not_before("events", T0 + timedelta(days=1)) == T0 + timedelta(days=1)
    assert errors.not_before("timers", T0) == T0
    assert errors.not_before("events", None) == T0 + FIRST_WAIT * 4  # nothing held: the end
    assert errors.not_before("timers", None) is None
    errors.succeeded("events")
    assert errors.streak("events") == 0
    assert errors.waiting_until("events") is None


@pytest.mark.postgres
def test_postgres_limits_are_not_transient_but_timeouts_and_deadlocks_are(
        pg_database: str) -> None:
    """What comes with the data (class 54: a limit) is done in parts at once; what the
    database breaks off (a serialization failure, a deadlock, a statement timeout: a
    lock waited for, a loaded server) is tried again."""
    from sqlalchemy.exc import DBAPIError

    from tests.store.conftest import make_pg_store

    store = make_pg_store(pg_database)
    try:
        def error_of(sql: str) -> DBAPIError:
            with store.sql_engine.connect() as conn, pytest.raises(DBAPIError) as caught:
                conn.execute(text(sql))
            return caught.value

        raising = "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{}'; END $$"
        assert not store.is_transient(error_of(raising.format("54000")))
        assert store.is_transient(error_of(
            "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)"))
        assert store.is_transient(error_of(raising.format("40001")))
        assert store.is_transient(error_of(raising.format("40P01")))
        assert not store.is_transient(error_of(raising.format("23505")))
    finally:
        store.close()


@pytest.fixture
def on_a_file(sqlite_template: Path, tmp_path: Path) -> Iterator[tuple[InMemoryEngine, Path]]:
    """`journeyman worker` on SQLite (batches read outside the write lock), waiting
    0.1 s for a write lock instead of 30."""
    folder = write_folder(tmp_path / "j", {"later": LATER}, {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    path = tmp_path / "jm.db"
    shutil.copyfile(sqlite_template, path)
    store = SqlStore(f"sqlite:///{path}", busy_timeout_ms=100)
    store.clock = eng.clock
    eng.use_store(store)
    assert eng.worker.snapshots is not None
    yield eng, path
    store.close()


def test_a_write_lock_held_elsewhere_through_rounds_in_parts_fails_nobody(
        on_a_file: tuple[InMemoryEngine, Path]) -> None:
    """Another process holds SQLite's write lock (a long transaction): reads go on,
    every write fails "database is locked", rounds in parts included. Nothing is
    counted against anyone; when the lock goes, every event is handled."""
    eng, path = on_a_file
    _accept(eng, GOOD)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    batch = eng.worker._event_batch
    parts: list[Any] = []

    def part(profiles: Any) -> Any:
        parts.append(profiles)
        return batch(profiles)

    eng.worker._event_batch = part  # type: ignore[method-assign]
    try:
        for _ in range(6):
            assert eng.worker.handle_events() == 0
            due = eng.worker.next_inbox_at()
            assert due is not None
            eng.clock.set(due)
        # rounds 3 to 6 in parts, each ended after AWAY_AFTER parts: nothing answered,
        # so none was tried again, nor counted against its profile
        assert len(parts) == 4 * AWAY_AFTER
    finally:
        other.execute("ROLLBACK")
        other.close()
    while eng.worker.handle_events():
        pass
    assert eng.worker.stats.failures == 0
    assert eng.store.failures() == []
    assert eng.worker.stats.events == len(GOOD)


def test_a_lock_released_between_two_parts_fails_nobody(
        on_a_file: tuple[InMemoryEngine, Path]) -> None:
    """The lock goes while a round is in parts: the first part failed, the next ones
    commit. The first part is done again then, and commits: no failed attempt."""
    eng, path = on_a_file
    _accept(eng, ["a", "b", "c"])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    worker = eng.worker
    batch = worker._event_batch

    def part(profiles: Any) -> Any:
        try:
            return batch(profiles)
        except Exception:
            if profiles is not None and other.in_transaction:
                other.execute("ROLLBACK")  # the other transaction ends now
            raise

    worker._event_batch = part  # type: ignore[method-assign]
    try:
        for _ in range(2):
            assert worker.handle_events() == 0
            due = worker.next_inbox_at()
            assert due is not None
            eng.clock.set(due)
        assert worker.handle_events() == 3  # the 3rd in a row: this round goes in parts
    finally:
        other.close()
    assert worker.stats.failures == 0
    assert worker.stats.events == 3


def test_time_travel_comes_back_at_the_end_of_the_wait(
        on_a_file: tuple[InMemoryEngine, Path]) -> None:
    """Events rolled back by a transient error are not held (the store knows no time
    for them): InMemoryEngine's next step is the end of the worker's wait, as the
    service's loop's is."""
    from sqlalchemy.exc import OperationalError

    eng, _ = on_a_file
    _accept(eng, ["a"])
    store: Any = eng.store

    def busy(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    store.peek_inbox = busy
    assert eng.worker.handle_events() == 0
    del store.peek_inbox
    assert eng.store.next_inbox_at() is None
    assert eng._next_work() == eng.worker.next_inbox_at() == T0 + FIRST_WAIT
    eng.run_until_idle()
    assert eng.worker.stats.events == 1
