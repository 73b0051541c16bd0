"""A running worker whose database's schema is downgraded under it (a release rolled
back with `alembic downgrade`) stops claiming events, timers and sends, says so once,
and claims again once the schema is current (engine/runtime/schema_gate.py): it went
on handling while `/readyz` said 503."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.store.sql import migrate
from engine.testing import RecordingChannel
from tests.engine.helpers import stub_email, write_folder

WAIT_S = 4
HELLO = f"""journey: hello
version: 1
entry:
  event: Signed Up
steps:
  - {{id: pause, wait: {WAIT_S}s}}
  - id: hi
    send: {{channel: email, template: hi}}
"""


def until(done: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def signed_up(user: str) -> list[dict[str, object]]:
    return [{"type": "identify", "userId": user, "messageId": f"i-{user}",
             "traits": {"email": f"{user}@example.com"}},
            {"type": "track", "event": "Signed Up", "userId": user, "messageId": f"s-{user}"}]


def test_a_worker_claims_nothing_while_the_schema_is_downgraded_under_it(
        store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="journeyman.service")
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"hi": stub_email("hi")})
    channel = RecordingChannel()
    service = Service(folder, store_url, channels={"email": channel},
                      secrets=[SigningSecret("s" * 32)])
    service.schema.every = 0.1  # the store is asked every 5 s in production
    store = service.store
    head = migrate.head()
    try:
        service.start()
        store.accept_events(signed_up("p1"))
        service.wake_events()
        until(lambda: store.pending_timers() == 1, 10, "p1 is not waiting")
        with store.sql_engine.begin() as conn:  # an operator rolls the release back
            migrate.downgrade(conn, "-1")
        apart = f"the schema is at revision 0022, this needs {head}"
        assert store.ready() == apart  # /readyz: 503
        until(lambda: service.schema.reason is not None, 5, "the gate did not close")
        assert service.schema.reason == apart
        store.accept_events(signed_up("p2"))  # the API still takes events: kept
        service.wake_events()
        time.sleep(WAIT_S + 1)  # p1's timer comes due meanwhile; p2's event waits
        assert channel.messages == []
        assert store.inbox_counts() == {"pending": 2}
        assert store.pending_timers() == 1
        assert service.schema.reason == apart
        with store.sql_engine.begin() as conn:  # the schema is current again
            migrate.upgrade(conn, "head")
        until(lambda: [m.profile_id for m in channel.messages] == ["p1"], 10,
              "p1's timer did not fire after the upgrade")
        until(lambda: store.inbox_counts().get("pending", 0) == 0, 10,
              "p2's event was not handled after the upgrade")
        until(lambda: [m.profile_id for m in channel.messages] == ["p1", "p2"], WAIT_S + 10,
              "p2 was not sent to")
    finally:
        service.stop()
    told = [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "journeyman.service" and "schema" in r.getMessage()]
    assert told == [
        (logging.ERROR, f"{apart}: not claiming events, timers or sends until it is "
                        "(`journeyman migrate` of this version, or stop this process if the "
                        "database was rolled back)"),
        (logging.WARNING, "the schema is current again: claiming events, timers and sends "
                          "again")]


@pytest.mark.postgres
def test_a_look_the_database_does_not_answer_leaves_the_gate_closed(
        pg_database: str, caplog: pytest.LogCaptureFixture) -> None:
    """A look at the revision that fails (here PostgreSQL's statement timeout behind a
    lock on alembic_version; a database restarting, a lost connection) says nothing of
    the schema: the gate stays as it was. It opened, said 'the schema is current again'
    and let the loops claim on the downgraded schema until the next look."""
    import sqlalchemy

    from engine.runtime.schema_gate import SchemaGate
    from engine.store import SqlStore

    caplog.set_level(logging.WARNING, logger="journeyman.service")
    store = SqlStore(pg_database, create=True)
    other = sqlalchemy.create_engine(pg_database)
    try:
        with store.sql_engine.begin() as conn:
            migrate.downgrade(conn, "-1")
        gate = SchemaGate(store.schema_apart, every=0.0)
        apart = gate.closed()
        assert apart is not None
        assert apart.startswith("the schema is at revision")
        with other.connect() as conn, conn.begin():  # the look times out behind it
            conn.exec_driver_sql("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            assert gate.closed() == apart
        assert gate.closed() == apart  # and the database answers again: still apart
    finally:
        with store.sql_engine.begin() as conn:
            migrate.upgrade(conn, "head")
        other.dispose()
        store.close()
    assert [r.getMessage() for r in caplog.records if "current again" in r.getMessage()] == []


def test_the_loops_carry_on_when_the_gate_opens_not_a_tick_later(
        tmp_path: Path) -> None:
    """While the gate is closed a loop's run ends at once; it must run again when the
    gate next looks, not at its safety net (`--tick`, 30 s in deploy.md's NOTIFY-only
    set-up): events accepted meanwhile waited the whole tick after the upgrade, since
    their wake-up had been spent on the closed gate."""
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"hi": stub_email("hi")})
    service = Service(folder, f"sqlite:///{tmp_path / 'tick.db'}",
                      channels={"email": RecordingChannel()},
                      secrets=[SigningSecret("s" * 32)], tick=30)
    service.schema.every = 0.2
    store = service.store
    try:
        service.start()
        with store.sql_engine.begin() as conn:
            migrate.downgrade(conn, "-1")
        time.sleep(0.3)  # the gate's last look (at start) is old enough
        store.accept_events(signed_up("p1"))
        service.wake_events()  # spent on the closed gate
        until(lambda: service.schema.reason is not None, 5, "the gate did not close")
        time.sleep(0.5)
        assert store.inbox_counts() == {"pending": 2}
        with store.sql_engine.begin() as conn:
            migrate.upgrade(conn, "head")
        until(lambda: store.inbox_counts().get("pending", 0) == 0, 5,
              "the events waited for the 30 s tick after the gate opened")
    finally:
        service.stop()


class _Lapse:
    """A clock 20 times faster than the wall, by the Clock port alone (`from_wall`,
    `to_wall`): it has no `speed` for anyone to read."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        from engine.qa.demo import TimeLapseClock

        self._inner = TimeLapseClock(datetime.now(UTC), speed=20.0)

    def now(self) -> datetime:
        return self._inner.now()

    def from_wall(self, seconds: float) -> timedelta:
        return self._inner.from_wall(seconds)

    def to_wall(self, span: timedelta) -> float:
        return self._inner.to_wall(span)


def test_the_closed_gate_asks_the_clock_how_much_of_its_time_a_wall_wait_is() -> None:
    """While closed, a loop runs again at the gate's next look, `every` wall seconds
    away: said as a clock time, that is what the clock's `from_wall` says (it read the
    demo clock's `speed` attribute, and took any other clock for the wall's pace)."""
    from engine.runtime.schema_gate import SchemaGate
    from engine.testing import FakeClock

    clock = _Lapse()
    gate = SchemaGate(lambda: "the schema is at revision 0001, this needs 0023", every=5.0)
    assert gate.closed() is not None  # looked just now: the next look is 5 s away
    before = clock.now()
    until_ = gate.closed_until(clock)
    assert until_ is not None
    # up to 5 s x 20 (less what passed since the look); at the wall's pace, 5 s at most
    assert timedelta(seconds=20) < until_ - before <= timedelta(seconds=100)
    fake = FakeClock(before)  # the wall's pace: 5 s of it
    at = gate.closed_until(fake)
    assert at is not None
    assert timedelta(0) < at - before <= timedelta(seconds=5)


def test_each_clock_turns_wall_seconds_into_its_time_and_back() -> None:
    from datetime import UTC, datetime

    from channels.webhook import SystemClock as HttpClock
    from engine.ports import SystemClock
    from engine.qa.demo import TimeLapseClock
    from engine.testing import FakeClock

    start = datetime(2026, 3, 2, 9, tzinfo=UTC)
    for clock in (SystemClock(), HttpClock(), FakeClock(start)):
        assert clock.from_wall(2.5) == timedelta(seconds=2.5)
        assert clock.to_wall(timedelta(minutes=1)) == 60.0
    lapse = TimeLapseClock(start, speed=86400.0)  # a day a second
    assert lapse.from_wall(0.5) == timedelta(hours=12)
    assert lapse.to_wall(timedelta(days=2)) == 2.0
