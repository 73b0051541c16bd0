"""Transient database errors in a row (engine/runtime/transients.py): the worker waits
longer each time instead of asking a database that is away a hundred times a second,
and a profile whose writes fail "transiently" every time (a trigger, a limit, an error
the driver misfiles) stops holding everybody else: after a few rounds the batch is done
in parts, and that profile's event fails alone, then is parked. On SQLite and
PostgreSQL, with real database errors, on the fake clock."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from engine.runtime.events import normalize
from engine.runtime.metrics import Metrics
from engine.runtime.transients import (
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
    assert 12 <= tries <= 24  # once a round (and a look for parts), not in a loop
    assert waits[:6] == [FIRST_WAIT * 2 ** i for i in range(6)]
    assert waits[-1] == LONGEST_WAIT
    assert metrics.registry.get_sample_value(
        "journeyman_transient_errors_total", {"kind": "events"}) == 12
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
    errors.succeeded("events")
    assert errors.streak("events") == 0
    assert errors.waiting_until("events") is None


@pytest.mark.postgres
def test_postgres_limits_and_timeouts_are_not_transient_but_deadlocks_are(
        pg_database: str) -> None:
    """What comes with the data (class 54, a statement timeout) is done in parts at
    once; what the database breaks off (a serialization failure) is tried again."""
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
        assert not store.is_transient(error_of(
            "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)"))
        assert store.is_transient(error_of(raising.format("40001")))
        assert store.is_transient(error_of(raising.format("40P01")))
        assert not store.is_transient(error_of(raising.format("23505")))
    finally:
        store.close()
