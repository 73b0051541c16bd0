"""The dashboard rollup against the table it counts, after the engine itself wrote the
enrollments: SQLite's writers count per statement (engine/store/sql/rollup.py, migration
0020), PostgreSQL's statement triggers count. After the bundled journeys ran a week of
demo events (entries, steps, goals, ends, merges of visitors) and a version moved
people to another step, `journey_rollup` holds exactly the counts of `enrollments`."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from engine.qa.demo import synthetic_events
from engine.runtime.events import normalize
from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.store.sql.tables import table
from engine.testing import FakeClock, RecordingChannel
from engine.values import StepMove
from journeys.library import bundled_library
from tests.store.conftest import make_pg_store

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

Key = tuple[str, str, str, str, str]


def _recount(conn: Any) -> Counter[Key]:
    """Migration 0012's six kinds of count, from the enrollments themselves."""
    counts: Counter[Key] = Counter()
    for row in conn.execute(select(table("enrollments"))):
        j, b = row.journey, row.entered_at.astimezone(UTC).strftime("%Y-%m-%d %H")
        won = row.goal_reached_at is not None
        counts[(j, b, "entered", "", "")] += 1
        counts[(j, b, "status", row.status, "")] += 1
        if won:
            counts[(j, b, "converted", "", "")] += 1
        for step in row.visits:
            counts[(j, b, "passed", step, "")] += 1
        for step, variant in row.variants.items():
            counts[(j, b, "variant", step, str(variant))] += 1
            if won:
                counts[(j, b, "variant_won", step, str(variant))] += 1
    return counts


def _rollup(conn: Any) -> Counter[Key]:
    return Counter({(r.journey, r.bucket, r.kind, r.step, r.variant): int(r.n)
                    for r in conn.execute(text("SELECT * FROM journey_rollup")) if r.n})


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)])
def test_the_rollup_is_a_recount_of_what_the_engine_wrote(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'journeyman.db'}"
    else:
        url = request.getfixturevalue("pg_database")
        make_pg_store(url).close()  # emptied
    raw = synthetic_events(300, START)
    clock = FakeClock(START)
    service = Service(bundled_library(), url, channels={
        name: RecordingChannel() for name in ("email", "sms", "push", "webhook")},
        clock=clock, lease=3600, secrets=[SigningSecret("s" * 32)])
    store = service.store
    try:
        for i, event in enumerate(sorted(raw, key=lambda ev: str(ev["timestamp"]))):
            at = datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00"))
            if at > clock.now():  # a day at a time: the waits in between come due
                while clock.now() + timedelta(days=1) < at:
                    clock.advance(timedelta(days=1))
                    service.worker.fire_timers()
                clock.set(at)
            store.accept_events([normalize(event, now=clock.now(),
                                           message_id=f"m-{i}")], "test")
            if i % 50 == 0:
                while service.worker.handle_events():
                    pass
        while service.worker.handle_events():
            pass
        for _ in range(14):
            clock.advance(timedelta(days=1))
            service.worker.fire_timers()
            service.dispatcher.dispatch_due()
        assert store.inbox_counts() == {}
        # a version moves the people on a step to another (`migrate:`)
        with store.sql_engine.connect() as conn:
            journey, version, step = conn.execute(text(
                "SELECT journey, version, state FROM enrollments WHERE status = 'active' "
                "ORDER BY journey, state LIMIT 1")).one()
        moved = store.move_enrollments(StepMove(journey, version, step, version + 1,
                                                "moved_here"), clock.now())
        assert moved > 0
        # two people found to be one: the loser of each journey they share ends
        with store.sql_engine.connect() as conn:
            a, b = conn.execute(text(
                "SELECT x.profile_id, y.profile_id FROM enrollments x JOIN enrollments y "
                "ON x.journey = y.journey AND x.profile_id < y.profile_id "
                "WHERE x.status = 'active' AND y.status = 'active' LIMIT 1")).one()
        store.merge_profiles(a, b)
        store.fold_rollup_deltas()
        with store.sql_engine.connect() as conn:
            counted, recounted = _rollup(conn), _recount(conn)
            statuses = {key[3] for key in recounted if key[2] == "status"}
        assert {"active", "completed"} <= statuses, statuses  # steps ran and ended
        assert any(key[2] == "converted" for key in recounted)
        assert any(key[2] == "variant" for key in recounted)
        assert counted == recounted
    finally:
        service.stop()
