"""PostgreSQL, two workers: events a claim leaves to the other worker are looked at
again soon (issue 11). Nothing else wakes a worker for them: the holder's commit
notifies no one, so they waited for the next ingest or the 5 s safety tick, and two
workers were slower than one (bench/scaleout_bench.py: 318 against 505 events/s)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from engine.store import SqlStore
from engine.store.sql.inbox import LOOK_AGAIN
from tests.store.conftest import make_pg_store
from tests.store.helpers import T0, held_elsewhere

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_workers(pg_database: str) -> Iterator[tuple[SqlStore, SqlStore]]:
    first = make_pg_store(pg_database)  # emptied for this test
    second = SqlStore(pg_database)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _event(n: int, user: str) -> dict[str, object]:
    return {"type": "track", "event": "Viewed", "userId": user, "messageId": f"m{n}",
            "timestamp": T0.isoformat(), "properties": {}}


def test_a_claim_that_left_events_to_another_worker_looks_again_soon(
        two_workers: tuple[SqlStore, SqlStore]) -> None:
    first, second = two_workers
    first.accept_events([_event(1, "ann"), _event(2, "ann"), _event(3, "bob")])

    def take_ann() -> None:  # the first worker handles ann's first event, slowly
        assert [i.profile_id for i in first.claim_inbox(1, T0)] == ["ann"]

    with held_elsewhere(first, take_ann):
        with second.transaction():
            claimed = second.claim_inbox(10, T0)
        # bob's event is its; ann's second waits behind her first, held elsewhere
        assert [i.profile_id for i in claimed] == ["bob"]
        assert second.next_inbox_at() == T0 + LOOK_AGAIN
        assert second.next_inbox_at() is None  # once: the next claim decides again


def test_a_claim_that_took_everything_it_saw_does_not_look_again(
        two_workers: tuple[SqlStore, SqlStore]) -> None:
    first, second = two_workers
    first.accept_events([_event(1, "ann"), _event(2, "bob")])
    with second.transaction():
        assert len(second.claim_inbox(10, T0)) == 2
    assert second.next_inbox_at() is None
    assert timedelta(seconds=1) > LOOK_AGAIN
