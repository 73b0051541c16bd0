"""A claim that took everything due is the last of its round (issue 11): the worker's
events and timers and the dispatcher do not claim again only to find nothing. With N
workers each loop woke for every batch another worker committed, and that empty claim
was a transaction per wake-up (on SQLite one that took the write lock). On every store:
the claims are counted at the store. A SQLite worker that reads its batch in a snapshot
(stamps.py) still looks once more: that look is a read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.testing import InMemoryEngine
from tests.engine.helpers import stub_email, write_folder
from tests.store.helpers import T0, outbox_entry
from tests.store.test_isolation import LATER


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InMemoryEngine]:
    from tests.store.conftest import make_pg_store, make_sqlite_store

    folder = write_folder(tmp_path / "j", {"later": LATER}, {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    store: Any = None
    if request.param == "sqlite":
        store = make_sqlite_store(request.getfixturevalue("sqlite_template"), tmp_path)
    elif request.param == "postgres":
        store = make_pg_store(request.getfixturevalue("pg_database"))
    if store is not None:
        store.clock = eng.clock
        eng.use_store(store)
    yield eng
    if store is not None:
        store.close()


# What a round claims with: in a transaction, or (a SQLite worker outside the write
# lock, engine/store/sql/stamps.py) read in a snapshot first
CLAIMS = {"claim_inbox": "inbox", "peek_inbox": "inbox", "claim_due_timers": "timers",
          "peek_timers": "timers", "claim_outbox": "outbox"}


def count_claims(store: Any) -> Counter[str]:
    """Count the store's claims of inbox rows, timers and sends (the store itself still
    does the work)."""
    calls: Counter[str] = Counter()
    for name, kind in CLAIMS.items():
        method: Callable[..., Any] | None = getattr(store, name, None)
        if method is None:
            continue

        def counted(*args: Any, _m: Callable[..., Any] = method, _k: str = kind,
                    **kwargs: Any) -> Any:
            calls[_k] += 1
            return _m(*args, **kwargs)

        setattr(store, name, counted)
    return calls


def with_addresses(engine: InMemoryEngine, n: int) -> None:
    for i in range(n):
        engine.identify(f"u{i}", {"email": f"u{i}@example.com"})


def ordered(n: int, first: int = 0) -> list[dict[str, Any]]:
    return [{"type": "track", "event": "Ordered", "userId": f"u{i}", "messageId": f"m{i}",
             "timestamp": T0.isoformat(), "properties": {}} for i in range(first, first + n)]


def test_events_timers_and_sends_fewer_than_a_claim_take_one_claim_each(
        engine: InMemoryEngine) -> None:
    store, worker = engine.store, engine.worker
    in_lock = worker.snapshots is None
    with_addresses(engine, 3)
    calls = count_claims(store)
    store.accept_events(ordered(3), "test")
    assert worker.handle_events() == 3
    assert worker.drained is in_lock
    assert calls["inbox"] == 1
    engine.clock.advance(timedelta(seconds=2))
    assert worker.fire_timers() == 3
    assert calls["timers"] == (1 if in_lock else 2)  # not a claim that finds nothing
    assert engine.dispatcher.dispatch_due() == 3
    assert calls["outbox"] == 1
    assert sorted(m.profile for m in engine.sent) == ["u0", "u1", "u2"]


def test_more_than_a_claim_takes_claims_until_one_comes_back_short(
        engine: InMemoryEngine) -> None:
    store, worker, dispatcher = engine.store, engine.worker, engine.dispatcher
    calls = count_claims(store)
    store.accept_events(ordered(40), "test")  # the worker's first claims take 32
    assert worker.handle_events() == 32
    assert not worker.drained  # there may be more: the loop claims again
    assert worker.handle_events() == 8
    assert worker.drained is (worker.snapshots is None)
    assert calls["inbox"] == 2
    dispatcher.batch = 10
    for i in range(25):
        store.enqueue_send(outbox_entry(f"e{i}:send:0", profile=f"p{i}"))
    assert dispatcher.dispatch_due() == 25
    assert calls["outbox"] == 3  # 10, 10, 5: the short one ends the round
    assert not store.outbox_counts().get("pending")


def test_an_event_accepted_after_the_last_claim_still_wakes_nothing_lost(
        engine: InMemoryEngine) -> None:
    """The round ends on a short claim; what comes after it is the next round's (the
    loops are woken by the ingest, engine/service.py): handled, once, in order."""
    store, worker = engine.store, engine.worker
    with_addresses(engine, 4)
    store.accept_events(ordered(2), "test")
    assert worker.handle_events() == 2
    assert worker.drained is (worker.snapshots is None)
    store.accept_events(ordered(2, first=2), "test")
    assert worker.handle_events() == 2
    engine.run_until_idle()
    assert sorted(m.profile for m in engine.sent) == ["u0", "u1", "u2", "u3"]


@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_claim_short_only_of_a_profile_held_elsewhere_is_not_the_last(
        engine: InMemoryEngine, pg_database: str) -> None:
    """PostgreSQL: rows of a profile another transaction holds count against the claim's
    LIMIT and are let go afterwards; the claim came back short, but rows past the LIMIT
    that nobody holds are still due: the round goes on (found by review)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from engine.store.sql.outbox import OUTBOX_LOCK_SPACE, outbox_lock_key
    from engine.store.sql.rows import profile_lock_key

    store, worker, dispatcher = engine.store, engine.worker, engine.dispatcher
    store.accept_events(ordered(40), "test")
    dispatcher.batch = 10
    for i in range(25):
        store.enqueue_send(outbox_entry(f"e{i}:send:0", profile=f"p{i}"))
    dsn = make_url(pg_database).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(dsn) as other:  # another worker's transaction holds u0 and p0
        other.execute("SELECT pg_advisory_xact_lock(%s)", (profile_lock_key("u0"),))
        other.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                      (OUTBOX_LOCK_SPACE, outbox_lock_key("p0")))
        assert worker.handle_events() == 31  # 32 claimed, u0's let go
        assert not worker.drained  # u32..u39 wait for nobody
        assert worker.handle_events() == 8
        assert dispatcher.dispatch_due() == 24  # every send but p0's, in one round
        other.rollback()
    assert store.inbox_counts() == {"pending": 1}


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_after_a_transient_error_the_worker_looks_at_the_inbox_again_after_a_wait(
        engine: InMemoryEngine) -> None:
    """A batch rolled back by the database held its rows until then, so another
    worker's claim may have skipped them and ended its round: nothing else says they
    wait (`next_inbox_at` knows held events only), so this worker looks again when its
    wait ends (engine/runtime/transients.py), and not before."""
    from sqlalchemy.exc import OperationalError

    from engine.runtime.transients import FIRST_WAIT

    store, worker = engine.store, engine.worker
    store.accept_events(ordered(2), "test")
    name = "claim_inbox" if worker.snapshots is None else "peek_inbox"

    def busy(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    setattr(store, name, busy)
    assert worker.handle_events() == 0
    delattr(store, name)
    assert worker.next_inbox_at() == engine.clock.now() + FIRST_WAIT
    assert worker.handle_events() == 0  # not yet
    engine.clock.advance(FIRST_WAIT)  # the loop runs when it said
    assert worker.handle_events() == 2


@pytest.mark.postgres
def test_a_merge_that_moves_waiting_events_wakes_the_workers(pg_database: str) -> None:
    """The merge's UPDATE locks the events it moves until it commits: a claim meanwhile
    skipped them (SKIP LOCKED) and may have ended its round; the commit's NOTIFY wakes
    every worker to look again."""
    import psycopg
    from sqlalchemy.engine import make_url

    from engine.runtime.events import normalize
    from engine.store.sql.notify import PREFIX
    from tests.store.conftest import make_pg_store

    store = make_pg_store(pg_database)
    dsn = make_url(pg_database).set(drivername="postgresql").render_as_string(
        hide_password=False)
    try:
        store.accept_events([normalize({"type": "track", "anonymousId": "a1", "event": "Seen"},
                                       now=T0, message_id="m1")])
        [item] = store.claim_inbox(10, T0)
        with psycopg.connect(dsn, autocommit=True) as listener:
            listener.execute(f"LISTEN {PREFIX}inbox")
            with store.transaction():
                store.merge_profiles("u1", item.profile_id)
            heard = [n.channel for n in listener.notifies(timeout=2, stop_after=1)]
        assert heard == [f"{PREFIX}inbox"]
        with store.transaction():
            assert [i.profile_id for i in store.claim_inbox(10, T0)] == ["u1"]
    finally:
        store.close()
