"""What only the durable store has: transactions, inbox claims, API keys,
timestamps, concurrency (threads with their own connections), SQLite settings."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text

from engine.core.model import Profile
from engine.store import DuplicateKeyName, SqlStore, StoreError
from engine.store.sql.rows import enrollment_from_row, entry_stats_from_row
from engine.store.sql.tables import table
from tests.store.helpers import T0, enrollment, later, outbox_entry, timer


def _ev(mid: str, user: str = "u1") -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "userId": user, "messageId": mid}


def _other(store: SqlStore) -> SqlStore:
    """A second store on the same database: its own engine and connections."""
    return SqlStore(store.url)


# --- transactions --------------------------------------------------------------------


def test_transaction_commits_at_the_end(sql_store: SqlStore) -> None:
    other = _other(sql_store)
    try:
        with sql_store.transaction():
            sql_store.put_profile(Profile("p1", {"a": 1}))
            sql_store.add_timer(timer("k1", later(1)))
            assert sql_store.get_profile("p1") is not None  # visible inside
            assert other.get_profile("p1") is None  # not outside, yet
        assert other.get_profile("p1") == Profile("p1", {"a": 1})
        assert other.has_timer("k1")
    finally:
        other.close()


def test_transaction_rollback_leaves_nothing(sql_store: SqlStore) -> None:
    sql_store.put_profile(Profile("p0"))
    sql_store.add_timer(timer("before", later(1)))

    def unit() -> None:
        with sql_store.transaction():
            sql_store.put_profile(Profile("p1", {"a": 1}))
            sql_store.put_profile(Profile("p0", {"changed": True}))
            sql_store.put_enrollment(enrollment("e1"))
            sql_store.add_timer(timer("k1", later(1)))
            assert sql_store.claim_due_timers(later(2), 10)  # claims "before" and "k1"
            sql_store.enqueue_send(outbox_entry("send-1"))
            sql_store.accept_events([_ev("m1")])
            sql_store.link_identity("user_id", "u1", "p1")
            with sql_store.transaction():  # nested blocks join the outer one
                sql_store.set_segment_member("p1", "seg", True)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        unit()
    assert sql_store.get_profile("p1") is None
    assert sql_store.get_profile("p0") == Profile("p0")
    assert sql_store.get_enrollment("e1") is None
    assert not sql_store.has_timer("k1")
    assert sql_store.has_timer("before")  # the claim was rolled back: it fires later
    assert sql_store.enqueue_send(outbox_entry("send-1"))
    assert sql_store.profile_for("user_id", "u1") is None
    assert not sql_store.segment_member("p1", "seg")
    assert sql_store.accept_events([_ev("m1")]) == ["m1"]
    assert not sql_store.in_transaction


def test_calls_outside_a_transaction_autocommit(sql_store: SqlStore) -> None:
    other = _other(sql_store)
    try:
        sql_store.put_profile(Profile("p1"))
        assert other.get_profile("p1") == Profile("p1")
    finally:
        other.close()


# --- timestamps ----------------------------------------------------------------------


def test_timestamps_come_back_aware_utc(sql_store: SqlStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 2, 11, 0, 0, 123456, tzinfo=plus2)  # == 09:00:00.123456Z
    sql_store.put_enrollment(enrollment("e1", entered=local, ended_at=local,
                                        goal_reached_at=local))
    got = sql_store.get_enrollment("e1")
    assert got is not None
    for value in (got.entered_at, got.updated_at, got.ended_at, got.goal_reached_at):
        assert value == local
        assert value.tzinfo is UTC
        assert value.microsecond == 123456
    sql_store.add_timer(timer("k", local))
    assert sql_store.next_timer_at() == local
    assert sql_store.next_timer_at().tzinfo is UTC  # type: ignore[union-attr]
    assert sql_store.last_timer_due_by(local) == local
    assert sql_store.last_timer_due_by(local).tzinfo is UTC  # type: ignore[union-attr]
    [claimed] = sql_store.claim_due_timers(local, 1)
    assert claimed.due_at.tzinfo is UTC
    assert claimed.due_at == local


def test_naive_datetimes_are_refused(sql_store: SqlStore) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        sql_store.add_timer(timer("k", datetime(2026, 3, 2, 9)))


def test_sqlite_timestamps_read_back_as_aware_utc() -> None:
    """A batch's loads read SQLite's timestamp text at the driver (rows.py): what
    UTCDateTime wrote comes back equal and in UTC; text with an offset of its own (not
    ours) is read as it says."""
    from sqlalchemy.dialects import sqlite

    from engine.store.sql.rows import sqlite_timestamp
    from engine.store.sql.types import UTCDateTime

    write = UTCDateTime().bind_processor(sqlite.dialect())
    assert write is not None
    for value in (T0, T0.replace(microsecond=7), T0.replace(microsecond=0),
                  datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)):
        back = sqlite_timestamp(write(value))
        assert (back, back.tzinfo) == (value, UTC)
    assert sqlite_timestamp("2026-12-04 21:33:58+02:00") == datetime(
        2026, 12, 4, 19, 33, 58, tzinfo=UTC)
    day = sqlite_timestamp("2026-12-04")  # a date alone: midnight UTC, still aware
    assert (day, day.tzinfo) == (datetime(2026, 12, 4, tzinfo=UTC), UTC)
    with pytest.raises(ValueError, match="Invalid isoformat"):
        sqlite_timestamp("not a time")


def test_sqlite_timestamps_are_the_text_sqlalchemy_writes() -> None:
    """UTCDateTime's one-step bind on SQLite writes what SQLAlchemy's DATETIME wrote
    (rows written before it compare and sort with rows written after)."""
    from zoneinfo import ZoneInfo

    from sqlalchemy.dialects import sqlite

    from engine.store.sql.types import UTCDateTime

    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    theirs = sqlite.DATETIME().bind_processor(dialect)
    assert ours is not None
    assert theirs is not None
    for value in (T0, T0.replace(microsecond=7), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
                  datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Paris")),
                  datetime(2026, 12, 31, 23, 59, 59, 999999,
                           tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
                  datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("UTC"))):
        assert ours(value) == theirs(value.astimezone(UTC).replace(tzinfo=None)), value
    assert ours(None) is None
    with pytest.raises(Exception, match="naive datetime"):
        ours(datetime(2026, 3, 2, 9))
    # the last value's text is kept: the same object again, then others in turn
    later_ = T0 + timedelta(seconds=1)
    texts = [ours(v) for v in (T0, T0, later_, T0, later_, later_)]
    assert texts == [theirs(v.replace(tzinfo=None)) for v in (T0, T0, later_, T0, later_, later_)]


def test_due_at_compares_across_offsets(sql_store: SqlStore) -> None:
    sql_store.add_timer(timer("k", T0))
    earlier_clock = datetime(2026, 3, 2, 4, 0, tzinfo=timezone(timedelta(hours=-4)))  # 08:00Z
    assert sql_store.claim_due_timers(earlier_clock, 10) == []
    assert len(sql_store.claim_due_timers(T0.astimezone(timezone(timedelta(hours=9))), 10)) == 1


# --- timers under concurrency --------------------------------------------------------


def _claim_concurrently(store: SqlStore, threads: int, batch: int) -> list[str]:
    claimed: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def run() -> None:
        try:
            start.wait()
            while True:
                with store.transaction():
                    got = store.claim_due_timers(later(100), batch)
                if not got:
                    return
                with lock:
                    claimed.extend(t.key for t in got)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    return claimed


def test_concurrent_claimers_never_share_a_timer(sql_store: SqlStore) -> None:
    n = 1500
    sql_store.add_timers([timer(f"k{i}", later(i % 50)) for i in range(n)])
    sql_store.add_timer(timer("future", later(1000)))
    claimed = _claim_concurrently(sql_store, threads=4, batch=40)
    assert len(claimed) == n
    assert len(set(claimed)) == n
    assert sql_store.pending_timers() == 1


@pytest.mark.postgres
def test_skip_locked_claims_are_disjoint_while_open(pg_database: str) -> None:
    """Two open transactions on PostgreSQL claim different timers (SKIP LOCKED)."""
    from tests.store.conftest import make_pg_store

    store = make_pg_store(pg_database)
    try:
        store.add_timers([timer(f"k{i}", later(i)) for i in range(10)])
        got_first = threading.Event()
        release = threading.Event()
        first: list[str] = []

        def hold() -> None:
            with store.transaction():
                first.extend(t.key for t in store.claim_due_timers(later(100), 4))
                got_first.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert got_first.wait(10)
        with store.transaction():
            second = [t.key for t in store.claim_due_timers(later(100), 4)]
        release.set()
        holder.join()
        assert first == ["k0", "k1", "k2", "k3"]
        assert second == ["k4", "k5", "k6", "k7"]  # skipped the locked rows, no waiting
    finally:
        store.close()


# --- the inbox -----------------------------------------------------------------------


def _claim(store: SqlStore, limit: int = 10, now: datetime = T0) -> list[str]:
    """Claim in a transaction of its own (committed: nothing is acked)."""
    with store.transaction():
        return [i.event["messageId"] for i in store.claim_inbox(limit, now)]


def test_inbox_claims_each_profile_in_order(sql_store: SqlStore) -> None:
    sql_store.accept_events([_ev("a1", "A"), _ev("a2", "A"), _ev("b1", "B"), _ev("a3", "A"),
                             _ev("c1", "C")])
    assert _claim(sql_store, 2) == ["a1", "a2"]
    assert _claim(sql_store) == ["a1", "a2", "b1", "a3", "c1"]  # claiming holds nothing
    with sql_store.transaction():
        items = sql_store.claim_inbox(10, T0, profiles=["A"])
        sql_store.ack_inbox([i.id for i in items])
    assert [i.event["messageId"] for i in items] == ["a1", "a2", "a3"]
    assert _claim(sql_store) == ["b1", "c1"]


def test_a_claim_rolled_back_with_its_transaction_leaves_the_events(sql_store: SqlStore) -> None:
    """A worker that dies mid-batch: its transaction rolls back, and with it the claim."""
    sql_store.accept_events([_ev("a1", "A")])

    def handle() -> None:
        with sql_store.transaction():
            [item] = sql_store.claim_inbox(10, T0)
            sql_store.put_profile(Profile("A", {"handled": True}))
            sql_store.ack_inbox([item.id])
            raise RuntimeError("the worker died")

    with pytest.raises(RuntimeError):
        handle()
    assert sql_store.get_profile("A") is None
    assert _claim(sql_store) == ["a1"]


def test_skip_locked_inbox_claims_keep_one_worker_per_profile(pg_database: str) -> None:
    """PostgreSQL: while one transaction holds A's first events, another gets neither them
    nor A's later ones, only other profiles'; both commit, then A goes on in order."""
    from tests.store.conftest import make_pg_store

    first, second = make_pg_store(pg_database), SqlStore(pg_database)
    try:
        first.accept_events([_ev("a1", "A"), _ev("a2", "A"), _ev("b1", "B"), _ev("a3", "A"),
                             _ev("c1", "C")])
        with first.transaction():
            mine = first.claim_inbox(2, T0)
            assert [i.event["messageId"] for i in mine] == ["a1", "a2"]
            with second.transaction():
                theirs = second.claim_inbox(10, T0)
                assert [i.event["messageId"] for i in theirs] == ["b1", "c1"]  # not a3
                second.ack_inbox([i.id for i in theirs])
            first.ack_inbox([i.id for i in mine])
        assert _claim(second) == ["a3"]
    finally:
        first.close()
        second.close()


def test_a_failed_event_holds_its_profile_until_retried(sql_store: SqlStore) -> None:
    sql_store.accept_events([_ev("bad", "A"), _ev("after", "A"), _ev("b1", "B")])
    with sql_store.transaction():
        bad = sql_store.claim_inbox(1, T0)[0]
        sql_store.retry_inbox(bad.id, later(1), "ValueError: boom")
    assert _claim(sql_store) == ["b1"]  # A waits behind its failed event
    assert sql_store.next_inbox_at() == later(1)
    with sql_store.transaction():
        again = sql_store.claim_inbox(10, later(1))
    assert [(i.event["messageId"], i.attempts) for i in again] == [
        ("bad", 1), ("after", 0), ("b1", 0)]


def test_a_parked_event_holds_its_profile_until_retried_or_discarded(
        sql_store: SqlStore) -> None:
    sql_store.accept_events([_ev("bad", "A"), _ev("after", "A"), _ev("b1", "B")])
    with sql_store.transaction():
        bad = sql_store.claim_inbox(1, T0)[0]
        failure = sql_store.park("event", str(bad.id), profile_id="A", journey="", step="",
                                 error="ValueError: boom", stack="Traceback...", attempts=5,
                                 at=T0)
    assert _claim(sql_store, now=later(100)) == ["b1"]
    assert sql_store.inbox_counts() == {"parked": 1, "pending": 2}
    [parked] = sql_store.failures()
    assert (parked.id, parked.kind, parked.ref, parked.error) == (
        failure, "event", str(bad.id), "ValueError: boom")
    assert sql_store.retry_failure(failure, T0)
    assert _claim(sql_store) == ["bad", "after", "b1"]
    assert sql_store.failures() == []
    with sql_store.transaction():
        bad = sql_store.claim_inbox(1, T0)[0]
        failure = sql_store.park("event", str(bad.id), profile_id="A", journey="", step="",
                                 error="x", stack="", attempts=5, at=T0)
    assert sql_store.discard_failure(failure)
    assert _claim(sql_store) == ["after", "b1"]


def test_inbox_follows_known_identities(sql_store: SqlStore) -> None:
    sql_store.link_identity("user_id", "u1", "profile-1")
    sql_store.link_identity("anonymous_id", "anon-9", "profile-1")
    sql_store.accept_events([_ev("m1", "u1"),
                             {"type": "page", "anonymousId": "anon-9", "messageId": "m2"},
                             {"type": "page", "anonymousId": "anon-new", "messageId": "m3"}])
    with sql_store.transaction():
        items = sql_store.claim_inbox(10, T0)
    assert [(i.event["messageId"], i.profile_id) for i in items] == [
        ("m1", "profile-1"), ("m2", "profile-1"), ("m3", " anonymous_id:anon-new")]


def test_accept_events_batches_and_stores_events(sql_store: SqlStore) -> None:
    events = [_ev(f"m{i}", f"u{i % 7}") for i in range(2000)]
    assert sql_store.accept_events(events) == [f"m{i}" for i in range(2000)]
    assert sql_store.accept_events([*events[:10], _ev("new")]) == ["new"]
    with sql_store.sql_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 2001
        body = conn.execute(select(table("events").c.body).where(
            table("events").c.message_id == "m5")).scalar()
    assert body == events[5]
    assert sql_store.inbox_counts() == {"pending": 2001}


def test_a_batch_of_known_and_new_events_queues_the_new_in_order_with_their_bodies(
        sql_store: SqlStore) -> None:
    """PostgreSQL takes a batch as arrays (`ROWS FROM`, the bodies as one JSON array):
    the new events of a batch are queued in the batch's order, bodies exactly as sent
    (quotes, backslashes, unicode, nesting, numbers)."""
    hostile = {"q": 'say "hi"\\ there', "u": "Zoë ✓ 北京", "nested": {"a": [1, 2.5, None, True]},
               "big": 12345678901234567890, "empty": "", "newline": "a\nb"}
    sql_store.accept_events([_ev("k1", "A"), _ev("k2", "B")])
    batch = [_ev("k1", "A"), {**_ev("n1", "A"), "properties": hostile}, _ev("k2", "B"),
             _ev("n2", "B"), {**_ev("n3", "A"), "properties": {"i": 3}}]
    assert sql_store.accept_events(batch) == ["n1", "n2", "n3"]
    with sql_store.transaction():
        items = sql_store.claim_inbox(10, T0)
    assert [i.event["messageId"] for i in items] == ["k1", "k2", "n1", "n2", "n3"]
    assert items[2].event == batch[1]
    assert items[2].event["properties"] == hostile


def test_three_workers_keep_per_profile_order(sql_store: SqlStore) -> None:
    """Threads with their own connections claim, handle and ack in one transaction
    each; no profile is ever in two at once, and each profile's events come in order."""
    profiles, per = 12, 8
    sql_store.accept_events([_ev(f"{p}:{n}", f"P{p}") for n in range(per)
                             for p in range(profiles)])
    seen: dict[str, list[int]] = {}
    holder: dict[str, str] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def work(name: str) -> None:
        store = _other(sql_store)
        idle = 0
        try:
            while idle < 5:
                with store.transaction():
                    items = store.claim_inbox(5, T0)
                    for item in items:
                        p, n = item.event["messageId"].split(":")
                        with lock:
                            if holder.get(p, name) != name:
                                errors.append(f"{p} held by {holder[p]} and {name}")
                            holder[p] = name
                            seen.setdefault(p, []).append(int(n))
                    store.ack_inbox([i.id for i in items])
                    with lock:  # the claim ends when this transaction commits, not before
                        for item in items:
                            holder.pop(item.event["messageId"].split(":")[0], None)
                idle = 0 if items else idle + 1
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert seen == {str(p): list(range(per)) for p in range(profiles)}


# --- API keys ------------------------------------------------------------------------


def test_api_keys(sql_store: SqlStore) -> None:
    key = sql_store.create_key("site")
    admin = sql_store.create_key("ops", admin=True)
    assert key.startswith("jm_")
    assert len(key) > 30
    assert key != admin
    info = sql_store.check_key(key)
    assert info is not None
    assert info.name == "site"
    assert not info.admin
    assert info.prefix == key[:10]
    assert info.created_at is not None
    assert info.created_at.tzinfo is UTC
    assert sql_store.check_key(admin).admin  # type: ignore[union-attr]
    assert sql_store.check_key(key + "x") is None
    assert [k.name for k in sql_store.list_keys()] == ["site", "ops"]
    with pytest.raises(DuplicateKeyName):
        sql_store.create_key("site")
    with sql_store.sql_engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(text("SELECT * FROM api_keys"))
                          for v in row)
    assert key not in stored
    assert admin not in stored
    assert sql_store.revoke_key("site")
    assert not sql_store.revoke_key("site")
    assert not sql_store.revoke_key("nobody")
    assert sql_store.check_key(key) is None
    assert [k.name for k in sql_store.list_keys()] == ["ops"]
    revoked = [k for k in sql_store.list_keys(include_revoked=True) if k.name == "site"]
    assert revoked[0].revoked_at is not None
    again = sql_store.create_key("site")  # the name is free again
    assert sql_store.check_key(again).name == "site"  # type: ignore[union-attr]


# --- schema version, settings --------------------------------------------------------


def test_enrollments_carry_schema_version(sql_store: SqlStore) -> None:
    sql_store.put_enrollment(enrollment("e1"))
    e = table("enrollments")
    with sql_store.sql_engine.begin() as conn:
        assert conn.execute(select(e.c.schema_version)).scalar() == 1
        conn.execute(e.update().values(schema_version=99))
    with pytest.raises(StoreError, match="schema version 99"):
        sql_store.get_enrollment("e1")
    with pytest.raises(StoreError, match="schema version 99"):  # a timer's, a send's look
        sql_store.enrollment_outlines(["e1"])


def test_sqlite_reads_at_the_driver_what_sqlalchemy_reads(sql_store: SqlStore) -> None:
    """The units' loads on SQLite read rows at the driver (driver.DriverQuery): the same
    profiles, enrollments and entry counts as SQLAlchemy's typed reads, JSON (unicode,
    nesting, null, big integers) and timestamps (microseconds or none, null) included."""
    if sql_store.dialect != "sqlite":
        pytest.skip("SQLite only")
    odd = {"name": "Zoë \u2603 \"quoted\"", "nested": {"list": [1, 2.5, None, True]},
           "big": 2**70 + 1, "empty": {}}
    sql_store.put_profile(Profile("p1", {"email": "ana@example.com", **odd}, {"score": 3}))
    sql_store.put_profile(Profile("p2"))
    sql_store.put_enrollment(enrollment("e1", data=odd, visits={"wait": 2},
                                        variants={"split": "b"}))
    sql_store.put_enrollment(enrollment("e2", journey="k", entered=T0 + timedelta(
        seconds=1, microseconds=250), trigger_event={"event": "Order Completed", **odd},
        goal_reached_at=later(1)))
    sql_store.put_enrollment(enrollment("e3", journey="m", status="completed",
                                        ended_at=later(2), exit_reason="completed"))
    sql_store.put_enrollment(enrollment("e4", profile="p2"))
    with sql_store.sql_engine.begin() as conn:  # a timestamp without a fraction, too
        conn.execute(text("UPDATE enrollments SET goal_reached_at = '2026-03-02 11:00:00' "
                          "WHERE id = 'e1'"))
    ids = ["p1", "p2", "nobody"]
    states = sql_store.load_states(ids)
    statements = sql_store._unit_statements
    with sql_store.sql_engine.connect() as conn:
        typed_active = [enrollment_from_row(row._mapping) for row in conn.execute(
            statements["active"], {"ids": ids})]
        typed_entries = {(row.profile_id, row.journey): entry_stats_from_row(row._mapping)
                         for row in conn.execute(statements["entries"], {"ids": ids})}
        typed_profiles = {pid: Profile(pid, traits, computed) for pid, traits, computed
                          in conn.execute(statements["profiles"], {"ids": ids})}
        typed_by_id = {row.id: enrollment_from_row(row._mapping) for row in conn.execute(
            statements["enrollments"], {"ids": ["e1", "e2", "e3", "e4", "none"]})}
    assert {e.id: e for pid in ids for e in states[pid].active.values()} == {
        e.id: e for e in typed_active}
    assert [e.id for e in typed_active] == ["e1", "e4", "e2"]  # oldest first
    assert {(pid, j): stats for pid in ids for j, stats in states[pid].entries.items()} \
        == typed_entries
    assert {pid: states[pid].profile for pid in ids if states[pid].profile} == typed_profiles
    assert sql_store.load_enrollments(["e1", "e2", "e3", "e4", "none"]) == typed_by_id
    assert sql_store.load_profiles(ids) == typed_profiles
    assert typed_by_id["e2"].entered_at == T0 + timedelta(seconds=1, microseconds=250)
    assert typed_by_id["e2"].entered_at.tzinfo is UTC
    assert typed_by_id["e1"].goal_reached_at == later(2)
    assert typed_profiles["p1"].traits["name"] == odd["name"]
    # orjson reads 2**70 + 1 as a rounded float: engine/jsonfast.py hands it to json instead
    assert typed_profiles["p1"].traits["big"] == 2**70 + 1
    assert typed_by_id["e2"].trigger_event is not None
    assert typed_by_id["e2"].trigger_event["big"] == 2**70 + 1


def test_a_units_preload_reads_again_only_the_enrollments_its_states_lack(
        sql_store: SqlStore) -> None:
    """A due timer's enrollment is mostly active, loaded with its profile's state: the
    unit takes it from there, and reads by id only the others (one query fewer for a
    chunk of timers)."""
    from engine.ports import SystemClock
    from engine.runtime.unit import UnitOfWork

    sql_store.put_enrollment(enrollment("e1"))
    sql_store.put_enrollment(enrollment("e3", journey="m", status="completed",
                                        ended_at=later(2), exit_reason="completed"))
    asked: list[list[str]] = []
    load = sql_store.load_enrollments

    def counting(ids: Any) -> Any:
        asked.append(sorted(ids))
        return load(ids)

    sql_store.load_enrollments = counting  # type: ignore[method-assign]
    unit = UnitOfWork(sql_store, SystemClock())
    unit.preload(["p1"], enrollment_ids=["e1", "e3", "gone"])
    assert asked == [["e3", "gone"]]
    assert unit.enrollments["e1"] == load(["e1"])["e1"]
    assert unit.enrollments["e3"] == load(["e3"])["e3"]
    assert unit.enrollments["gone"] is None


def test_a_driver_read_fails_with_sqlalchemys_error(sql_store: SqlStore) -> None:
    """What the worker tells transient from not (`is_transient`) is SQLAlchemy's error
    tree: a read at the driver raises into it too."""
    if sql_store.dialect != "sqlite":
        pytest.skip("SQLite only")
    from sqlalchemy import bindparam, literal_column, select
    from sqlalchemy.exc import OperationalError

    from engine.store.sql.driver import DriverQuery

    enrollments = table("enrollments")
    reads = DriverQuery(select(enrollments.c.id).where(literal_column("no_such_column").in_(
        bindparam("ids", expanding=True))), sql_store.sql_engine.dialect)
    with sql_store.sql_engine.connect() as conn, pytest.raises(OperationalError) as caught:
        reads.rows(conn, {"ids": ["e1"]})
    # SQLITE_ERROR comes with the statement: done again, it fails again (done in parts)
    assert not sql_store.is_transient(caught.value)


def test_an_integer_beyond_64_bits_comes_back_exact(sql_store: SqlStore) -> None:
    """The API keeps 2**70 + 1 exact (engine/api/body.py); orjson would read the stored
    JSON back as a rounded float (on PostgreSQL it did: 1.1805916207174113e+21), so the
    store's JSON goes through `jsonfast.loads_exact` (SQLite's text) and `loads_jsonb`
    (psycopg's bytes). JSONB writes every number as digits: a float it writes as an
    integer literal comes back as that float (1e23, 1e308), not as the int of its
    digits (10**23 is not the float 1e23)."""
    sql_store.accept_events([{**_ev("m-big"), "properties": {
        "order": 2**70 + 1, "negative": -(2**70), "price": 1.5, "huge": 1e21,
        "huger": 1e23, "largest": 1e308, "minus": -1.5e300}}])
    [item] = sql_store.claim_inbox(10, T0)
    got = item.event["properties"]
    assert got["order"] == 2**70 + 1
    assert isinstance(got["order"], int)
    assert got["negative"] == -(2**70)
    assert got["price"] == 1.5
    assert isinstance(got["price"], float)
    assert got["huge"] == 1e21
    for name, value in (("huger", 1e23), ("largest", 1e308), ("minus", -1.5e300)):
        assert got[name] == value
        assert isinstance(got[name], float)
    sql_store.put_profile(Profile("p-big", {"id_number": 2**64}))
    assert sql_store.get_profile("p-big").traits["id_number"] == 2**64  # type: ignore[union-attr]


def test_sqlite_settings(sql_store: SqlStore) -> None:
    if sql_store.dialect != "sqlite":
        pytest.skip("SQLite only")
    with sql_store.sql_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_in_memory_sqlite_works() -> None:
    store = SqlStore("sqlite://", create=True)
    store.put_profile(Profile("p1"))
    assert store.get_profile("p1") == Profile("p1")
    store.close()


def test_unknown_database_is_refused() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        SqlStore("mysql://localhost/x")


def test_empty_documents_are_answered_without_parsing_and_never_shared() -> None:
    """`loads_exact`'s answers for `{}` and `null` equal a parse's, and each `{}` is a
    dict of its own (a caller that fills one must not fill the next)."""
    from engine.jsonfast import loads, loads_exact

    first, second = loads_exact("{}"), loads_exact("{}")
    assert first == loads("{}") == {}
    assert first is not second
    first["x"] = 1
    assert loads_exact("{}") == {}
    assert loads_exact("null") is None
    assert loads_exact('{"n": 12345678901234567890123}') == {"n": 12345678901234567890123}
    assert loads_exact(b"{}") == {}  # psycopg's bytes
    assert loads_exact(b"null") is None
    assert loads_exact(b'{"n": 12345678901234567890123}') == {"n": 12345678901234567890123}


def test_jsonb_numbers_read_back_as_written() -> None:
    """PostgreSQL's JSONB prints numbers as digits: `loads_jsonb` gives a float's digits
    back as that float (1e23 is not 10**23), any other integer exact, and one beyond
    any float as an integer (no OverflowError)."""
    from engine.jsonfast import loads_jsonb

    big = b"9" * 400
    got = loads_jsonb(b'{"f": 100000000000000000000000, "i": 1180591620717411303425, '
                      b'"e": 1000000000000000000000, "n": -1180591620717411303425, "x": '
                      + big + b"}")
    assert got["f"] == 1e23
    assert isinstance(got["f"], float)
    assert got["i"] == 2**70 + 1
    assert got["n"] == -(2**70 + 1)
    assert got["e"] == 10**21  # the float 1e21 is that integer exactly
    assert got["x"] == int(big)
