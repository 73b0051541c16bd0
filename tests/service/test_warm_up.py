"""`Service.warm_up` (issue 11): a process compiles its templates and its store's
plans and reads of a unit of work as it starts, so its first batch does not."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.testing import TEST_SECRET
from tests.conftest import LIBRARY


@pytest.fixture
def service(store_url: str) -> Iterator[Service]:
    made = Service(LIBRARY, store_url, channels={}, secrets=[SigningSecret(TEST_SECRET)])
    yield made
    made.stop()


def test_warm_up_compiles_the_templates_and_the_units_plans_and_reads(
        service: Service) -> None:
    templates = service.library.templates
    store = service.store
    assert templates._compiled == {}
    assert store._many_plans == {}
    service.warm_up()
    assert templates._compiled  # every part (tests/language/test_templates.py)
    plans = dict(store._many_plans)
    assert len(plans) == 11  # profiles, enrollments, entries, timers, segments (2),
    # identities, sends, decisions, exits, goals: a unit's kinds of rows
    compiled = len(store.sql_engine._compiled_cache)  # SQLAlchemy's compiled statements
    assert store.load_states(["ana"])["ana"].profile is None  # a unit's reads: warm
    store.load_enrollments(["e1"])
    store.enrollment_outlines(["e1"])
    store.load_identities([("email", "ana@example.com")])
    assert len(store.sql_engine._compiled_cache) == compiled
    service.warm_up()  # again: nothing new
    assert store._many_plans == plans


def test_start_warms_up_and_a_failed_warm_up_is_only_logged(
        service: Service, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def away() -> None:
        raise ConnectionError("the database is away")

    monkeypatch.setattr(service.store, "warm_up", away)
    with caplog.at_level(logging.WARNING, logger="journeyman.service"):
        service.start()
    assert "warm-up of the store's statements failed: the database is away" in caplog.text
    assert service.library.templates._compiled  # the templates were compiled


def test_the_warm_up_knows_every_bulk_write_of_a_unit(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new kind of row in `_run_steps` must be warmed up too (`SqlStore.warm_up`):
    a day of the demo's visitors through the bundled journeys writes only statements
    whose plans the warm-up made."""
    from datetime import UTC, datetime

    from engine.qa.demo import synthetic_events
    from engine.runtime.events import normalize

    store = service.store
    service.warm_up()
    warmed = set(store._many_plans)
    written: set[object] = set()
    prepare = store._run_steps

    def noting(run: object) -> object:
        ready = store._many_ready

        def seen(statement: object, rows: object, **kwargs: object) -> object:
            written.add(statement)
            return ready(statement, rows, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "_many_ready", seen)
        try:
            return prepare(run)  # type: ignore[arg-type]
        finally:
            monkeypatch.setattr(store, "_many_ready", ready)

    monkeypatch.setattr(store, "_run_steps", noting)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    events = [normalize(ev, now=start, message_id=f"w-{i}")
              for i, ev in enumerate(synthetic_events(60, start))]
    store.accept_events(events, "test")
    while service.worker.handle_events():
        pass
    assert len(written) >= 8  # profiles, enrollments, entries, timers, decisions, ...
    assert written <= warmed, written - warmed
