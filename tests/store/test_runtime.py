"""The engine's runtime end to end on SqlStore gives what it gives on InMemoryStore."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.store import SqlStore
from tests.engine.test_engine import CART
from tests.store.helpers import T0


def _scenario(eng: Any) -> None:
    eng.identify("u1", {"email": "u1@example.com"})
    eng.identify("u2", {"email": "u2@example.com", "vip": True})
    eng.identify("u3", {"email": "u3@example.com"})
    for user in ("u1", "u2", "u3"):
        eng.track(user, "Checkout Started", {"cart_value": 40})
    eng.advance(timedelta(minutes=90))
    eng.track("u3", "Order Completed", {"revenue": 40})
    eng.advance(timedelta(days=2))
    eng.track("u1", "Checkout Started", {"cart_value": 10})  # re-entry too soon: ignored
    eng.advance(timedelta(days=8))
    eng.track("u1", "Checkout Started", {"cart_value": 10})  # allowed again
    eng.run_until_idle()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runtime.db'}"
    from tests.store.conftest import make_pg_store

    make_pg_store(request.getfixturevalue("pg_database")).close()  # emptied
    return str(request.getfixturevalue("pg_database"))


def test_runtime_on_sqlstore_matches_in_memory(tmp_path: Path, sql_url: str) -> None:
    from engine.testing import InMemoryEngine
    from tests.engine.helpers import stub_email, write_folder

    folder = write_folder(tmp_path / "j", {"cart": CART}, {
        t: stub_email(t) for t in ("cart_reminder", "cart_vip", "cart_plain")})
    reference = InMemoryEngine.from_folder(folder, start=T0)
    _scenario(reference)

    on_sql = InMemoryEngine.from_folder(folder, start=T0)
    store = SqlStore(sql_url, create=True, clock=on_sql.clock)
    on_sql.use_store(store)
    try:
        _scenario(on_sql)
        assert reference.sent  # the scenario does send
        assert on_sql.sent == reference.sent
        assert [(e.profile_id, e.journey, e.step, e.reason, e.at)
                for e in store.recorded_exits()] == [
            (e.profile, e.journey, e.step, e.reason, e.at) for e in reference.exits]
        assert store.recorded_goals() == reference.store.goals
        for user in ("u1", "u2", "u3"):
            assert store.enrollments(user, "cart") == reference.store.enrollments(user, "cart")
            assert store.get_profile(user) == reference.store.get_profile(user)
        assert store.pending_timers() == 0
    finally:
        store.close()


def test_worker_over_the_inbox_on_sqlite(tmp_path: Path) -> None:
    """API-style ingest into the inbox, a Worker handles it in per-event transactions."""
    from engine.runtime.events import normalize
    from engine.runtime.worker import Worker
    from engine.testing import InMemoryEngine
    from tests.engine.helpers import stub_email, write_folder

    folder = write_folder(tmp_path / "j", {"cart": CART}, {
        t: stub_email(t) for t in ("cart_reminder", "cart_vip", "cart_plain")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    store = SqlStore(f"sqlite:///{tmp_path / 'w.db'}", create=True, clock=eng.clock)
    eng.use_store(store)
    worker = Worker(eng.runner, store, eng.clock, name="w1", dispatcher=eng.dispatcher)
    try:
        raw = [{"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com"}},
               {"type": "track", "userId": "u1", "event": "Checkout Started",
                "properties": {"cart_value": 5}}]
        events = [normalize(r, now=T0, message_id=f"m{i}") for i, r in enumerate(raw)]
        assert store.accept_events(events, "site") == ["m0", "m1"]
        assert store.accept_events(events, "site") == []  # a retried POST changes nothing
        assert worker.run_once() == 2
        assert store.inbox_counts() == {}
        eng.clock.advance(timedelta(hours=1))
        assert worker.fire_timers() == 1
        assert worker.dispatch() == 1
        assert [m.rendered.template for m in eng.channel.messages] == ["cart_reminder"]
        assert worker.stats.failures == 0
    finally:
        store.close()
