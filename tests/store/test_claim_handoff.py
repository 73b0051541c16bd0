"""PostgreSQL, two workers: events a claim leaves to the other worker are looked at
again soon (issue 11). Nothing else wakes a worker for them: the holder's commit
notifies no one, so they waited for the next ingest or the 5 s safety tick, and two
workers were slower than one (bench/scaleout_bench.py: 318 against 505 events/s)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.runtime.claim_sizes import MIN_BATCH
from engine.runtime.worker import Worker
from engine.store import SqlStore
from engine.store.sql.inbox import LOOK_AGAIN
from engine.testing import InMemoryEngine
from tests.engine.helpers import write_folder
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


def test_a_full_claim_grows_though_it_kept_fewer_rows(
        two_workers: tuple[SqlStore, SqlStore], tmp_path: Path) -> None:
    """A claim that found as many rows as it asked for, and let go of some (a profile
    another worker holds), was taken for a short one: two workers' batches stayed at the
    first limit, and they made six times as many transactions as one worker alone
    (bench/journey_bench.py, docs/benchmarks.md, thirteenth session)."""
    first, second = two_workers
    folder = write_folder(tmp_path / "j", {}, {})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    second.clock = eng.clock
    eng.use_store(second)
    worker = Worker(eng.runner, second, eng.clock, name="w2", budget=60)
    held = [_event(n, "ann") for n in range(1, 12)]  # the first held, ten waiting behind
    others = [_event(100 + n, f"u{n}") for n in range(100)]
    first.accept_events(held + others)

    def take_ann() -> None:
        assert [i.profile_id for i in first.claim_inbox(1, T0)] == ["ann"]

    with held_elsewhere(first, take_ann):
        # the first claim asks for MIN_BATCH rows: ann's ten, then 22 others
        assert worker.handle_events() == MIN_BATCH - 10
        # a full claim: the next asks for twice as many (ten of them ann's again)
        assert worker.handle_events() == 2 * MIN_BATCH - 10
