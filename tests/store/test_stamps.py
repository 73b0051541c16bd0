"""SQLite's optimistic batches (issue 11): a worker reads and handles a batch without the
write lock and writes it only if nobody wrote what it read meanwhile
(engine/store/sql/stamps.py); otherwise it handles the batch again inside the lock.
Lanes share the inbox between workers on one file (engine/store/sql/lanes.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.core.model import Profile
from engine.ports import Lane, WriteRun
from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.store.errors import StoreError
from engine.store.sql.lanes import lane_of
from engine.store.sql.stamps import ANY_STATE, identity_key, profile_key, slot_of
from engine.testing import InMemoryEngine
from tests.engine.helpers import stub_email, write_folder
from tests.store.conftest import make_sqlite_store
from tests.store.test_isolation import LATER, PLAN

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(sqlite_template: Path, tmp_path: Path) -> Iterator[SqlStore]:
    made = make_sqlite_store(sqlite_template, tmp_path)
    yield made
    made.close()


def _on_a_file(sqlite_template: Path, tmp_path: Path,
               journeys: dict[str, str]) -> Iterator[InMemoryEngine]:
    """The production worker on a SQLite file, as a `journeyman worker`'s: batches and
    timers handled in a snapshot (`use_store` turns them on)."""
    folder = write_folder(tmp_path / "j", journeys, {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    made = make_sqlite_store(sqlite_template, tmp_path)
    made.clock = eng.clock
    eng.use_store(made)
    assert eng.worker.snapshots is made
    yield eng
    made.close()


@pytest.fixture
def engine(sqlite_template: Path, tmp_path: Path) -> Iterator[InMemoryEngine]:
    yield from _on_a_file(sqlite_template, tmp_path, {"plan_change": PLAN})


def _stamps(store: SqlStore, *keys: str) -> dict[int, int]:
    slots = {ANY_STATE, *(slot_of(k) for k in keys)}
    with store.transaction(stamped=True):
        return store._read_stamps(store._local.conn, slots)


def _meanwhile(eng: InMemoryEngine, plan: str, write: Callable[[], None]) -> None:
    """Run `write` (another worker's, on its own connection) while the batch holding the
    identify with `plan` is being handled: after its reads, before its write."""
    handle = eng.runner.handle
    pending = [write]

    def handling(event: dict[str, Any], unit: Any) -> Any:
        if event.get("traits", {}).get("plan") == plan and pending:
            pending.pop()()
        return handle(event, unit)

    eng.runner.handle = handling  # type: ignore[method-assign]


def test_a_unit_write_stamps_the_profiles_and_identifiers_it_writes(store: SqlStore) -> None:
    keys = (profile_key("u1"), identity_key("email", "u1@example.com"), profile_key("u2"))
    before = _stamps(store, *keys)
    store.write_changes([WriteRun(profiles={"u1": Profile("u1", {"plan": "a"}, {})},
                                  identities={("email", "u1@example.com"): "u1"})])
    after = _stamps(store, *keys)
    assert after[slot_of(keys[0])] == before[slot_of(keys[0])] + 1
    assert after[slot_of(keys[1])] == before[slot_of(keys[1])] + 1
    assert after[slot_of(keys[2])] == before[slot_of(keys[2])]  # not written
    assert after[ANY_STATE] == before[ANY_STATE]  # it said what it wrote


def test_a_write_that_does_not_say_what_it_changed_stamps_all_state_and_ingest_does_not(
        store: SqlStore) -> None:
    first = _stamps(store)[ANY_STATE]
    store.put_profile(Profile("u9", {"plan": "z"}, {}))  # a write of state that does not say
    assert _stamps(store)[ANY_STATE] == first + 1
    store.put_setting("some.setting", "1")  # settings, users, the event log: no state
    store.delete_events_before(T0, 100)  # and a write that changed nothing
    assert _stamps(store)[ANY_STATE] == first + 1
    store.accept_events([normalize({"type": "track", "userId": "u1", "event": "Seen"},
                                   now=T0, message_id="m1")])
    assert _stamps(store)[ANY_STATE] == first + 1  # the inbox is no profile's state


def test_a_snapshot_refuses_writes_and_sees_one_state(store: SqlStore) -> None:
    store.write_changes([WriteRun(profiles={"u1": Profile("u1", {"plan": "a"}, {})})])
    other = SqlStore(store.url)
    try:
        with store.snapshot() as snapshot:
            assert store.load_states(["u1"])["u1"].profile == Profile("u1", {"plan": "a"}, {})
            other.write_changes([WriteRun(profiles={"u1": Profile("u1", {"plan": "b"}, {})})])
            # the same read transaction: still what it read first
            assert store.load_states(["u1"])["u1"].profile == Profile("u1", {"plan": "a"}, {})
            with pytest.raises(StoreError, match="inside a snapshot"):
                store.put_profile(Profile("u3", {}, {}))
            store.stamps(snapshot)
        with store.transaction(stamped=True):
            assert not store.unchanged(snapshot)  # u1 was written since
        with store.snapshot() as snapshot:
            store.load_states(["u2"])
            store.stamps(snapshot)
        other.write_changes([WriteRun(profiles={"u1": Profile("u1", {"plan": "c"}, {})})])
        with store.transaction(stamped=True):
            assert store.unchanged(snapshot)  # u2 was not
    finally:
        other.close()


def test_a_batch_whose_profile_another_worker_wrote_meanwhile_is_done_again_in_the_lock(
        engine: InMemoryEngine) -> None:
    """Without the check the batch would write u1's traits as it read them: the other
    worker's `vip` would be lost."""
    other = SqlStore(engine.store.url)
    engine.identify("u1", {"email": "u1@example.com", "plan": "first"})
    _meanwhile(engine, "second", lambda: other.write_changes([WriteRun(profiles={
        "u1": Profile("u1", {"email": "u1@example.com", "plan": "first", "vip": True},
                      {})})]))
    engine.identify("u1", {"plan": "second"})
    other.close()
    traits = engine.profile("u1").traits
    assert traits["vip"] is True
    assert traits["plan"] == "second"
    assert engine.worker.stats.redone == 1
    assert [m.profile for m in engine.sent] == ["u1", "u1"]  # each identify once


def test_a_units_writes_are_made_ready_without_the_database(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """`prepare_changes` builds every row's parameters without a connection (no read,
    no write); what `write_prepared` writes then is what the changes say."""
    changes = [WriteRun(profiles={"u1": Profile("u1", {"plan": "a"}, {})},
                        identities={("email", "u1@example.com"): "u1"})]
    engine = store.sql_engine

    def no_database() -> None:
        raise AssertionError("prepare_changes reached the database")

    with monkeypatch.context() as patched:
        patched.setattr(engine, "connect", no_database)
        prepared = store.prepare_changes(changes)
    before = _stamps(store, profile_key("u1"))
    store.write_prepared(prepared)
    assert store.get_profile("u1") == Profile("u1", {"plan": "a"}, {})
    assert store.load_identities([("email", "u1@example.com")]) == {
        ("email", "u1@example.com"): "u1"}
    after = _stamps(store, profile_key("u1"))
    assert after[slot_of(profile_key("u1"))] == before[slot_of(profile_key("u1"))] + 1


def test_an_optimistic_batch_builds_its_rows_before_the_write_transaction(
        engine: InMemoryEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one write turn is held only to run the statements (`UnitOfWork.prepare`)."""
    store = engine.store
    assert isinstance(store, SqlStore)
    in_transaction: list[bool] = []
    ready = store._many_ready

    def noting(*args: Any, **kwargs: Any) -> Any:
        in_transaction.append(store.in_transaction)
        return ready(*args, **kwargs)

    monkeypatch.setattr(store, "_many_ready", noting)
    engine.identify("u1", {"email": "u1@example.com", "plan": "first"})
    assert engine.worker.stats.redone == 0
    assert engine.profile("u1").traits["plan"] == "first"
    assert [m.profile for m in engine.sent] == ["u1"]
    # the unit's rows (profiles, enrollments, ...), then the sends' outcomes
    assert len(in_transaction) >= 5
    assert not any(in_transaction[:5]), in_transaction


def test_a_write_that_does_not_say_what_it_changed_makes_the_batch_check_again(
        engine: InMemoryEngine) -> None:
    other = SqlStore(engine.store.url)
    _meanwhile(engine, "first", lambda: other.put_profile(Profile("u9", {"plan": "z"}, {})))
    engine.identify("u1", {"email": "u1@example.com", "plan": "first"})
    other.close()
    assert engine.worker.stats.redone == 1
    assert engine.profile("u1").traits["plan"] == "first"
    assert [m.profile for m in engine.sent] == ["u1"]


def test_a_write_of_another_profile_meanwhile_costs_nothing(engine: InMemoryEngine) -> None:
    other = SqlStore(engine.store.url)
    assert slot_of(profile_key("u1")) != slot_of(profile_key("u2"))
    _meanwhile(engine, "first", lambda: other.write_changes([WriteRun(profiles={
        "u2": Profile("u2", {"plan": "x"}, {})})]))
    engine.identify("u1", {"email": "u1@example.com", "plan": "first"})
    other.close()
    assert engine.worker.stats.redone == 0
    assert engine.profile("u1").traits["plan"] == "first"
    assert engine.profile("u2").traits["plan"] == "x"


def test_an_event_another_worker_handled_meanwhile_is_not_handled_twice(
        engine: InMemoryEngine) -> None:
    """Two workers given the same lane by mistake: the second to commit finds the event
    gone and writes nothing of its own handling."""
    other = SqlStore(engine.store.url)

    def handled_elsewhere() -> None:
        [item] = other.peek_inbox(10, engine.now, Lane())
        with other.transaction(stamped=True):
            other.ack_inbox([item.id])  # as if another worker handled it

    _meanwhile(engine, "first", handled_elsewhere)
    engine.identify("u1", {"email": "u1@example.com", "plan": "first"})
    other.close()
    assert engine.worker.stats.redone == 1
    assert engine.sent == []  # "the other worker" did nothing but take it
    assert engine.store.inbox_counts() == {}


def test_lanes_split_the_inbox_by_profile_and_sqlite_agrees_with_python(
        store: SqlStore) -> None:
    ids = [f"user-{n}" for n in range(40)] + ["ü", "😀-emoji", "x" * 255, "message:abc"]
    with store.transaction(stamped=True):
        conn = store._local.conn
        for count in (1, 2, 3):
            in_sql = [conn.exec_driver_sql("SELECT jm_lane(?, ?)", (pid, count)).scalar()
                      for pid in ids]
            assert in_sql == [lane_of(pid, count) for pid in ids]
    assert {lane_of(pid, 2) for pid in ids} == {0, 1}
    events = [normalize({"type": "track", "userId": pid, "event": "Seen"}, now=T0,
                        message_id=f"m{i}") for i, pid in enumerate(ids)]
    store.accept_events(events)
    lanes = [store.peek_inbox(100, T0, Lane(k, 2)) for k in range(2)]
    assert {i.profile_id for i in lanes[0]}.isdisjoint({i.profile_id for i in lanes[1]})
    assert sorted(i.profile_id for lane in lanes for i in lane) == sorted(ids)
    assert all(lane_of(i.profile_id, 2) == k for k, lane in enumerate(lanes) for i in lane)
    assert len(store.peek_inbox(100, T0, Lane())) == len(ids)


def test_a_lane_is_k_of_n() -> None:
    assert Lane.parse("1/2") == Lane(1, 2)
    assert str(Lane(0, 3)) == "0/3"
    for bad in ("2/2", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match=r"lane|K/N"):
            Lane.parse(bad)


def _in_lane(index: int, count: int = 2) -> str:
    return next(f"p{n}" for n in range(100) if lane_of(f"p{n}", count) == index)


def test_a_lane_nobody_serves_is_taken_over_after_it_has_waited(
        engine: InMemoryEngine) -> None:
    from engine.runtime.takeover import LANE_TAKEOVER

    engine.worker.lane = Lane(0, 2)  # the only worker; lane 1's is stopped
    mine, theirs = _in_lane(0), _in_lane(1)
    engine.identify(mine, {"email": "m@example.com", "plan": "a"})
    engine.identify(theirs, {"email": "t@example.com", "plan": "b"})
    assert engine.store.get_profile(mine) is not None
    assert engine.store.get_profile(theirs) is None  # not this worker's lane
    engine.clock.advance(LANE_TAKEOVER - timedelta(seconds=1))
    assert engine.worker.handle_events() == 0
    engine.clock.advance(timedelta(seconds=1))
    assert engine.worker.handle_events() == 1  # waited long enough: taken over
    profile = engine.store.get_profile(theirs)
    assert profile is not None
    assert profile.traits["plan"] == "b"


def test_a_lane_worker_looks_at_the_lanes_nobody_serves_after_a_short_batch(
        engine: InMemoryEngine) -> None:
    """A short batch in the write transaction ends its round (tests/store/
    test_drained.py); a lane worker's, read in a snapshot, does not: the lanes nobody
    serves come after its own lane is empty."""
    from engine.runtime.takeover import LANE_TAKEOVER

    engine.worker.lane = Lane(0, 2)
    mine, theirs = _in_lane(0), _in_lane(1)
    engine.store.accept_events([normalize({"type": "track", "userId": theirs,
                                           "event": "Seen"}, now=T0, message_id="t1")])
    engine.clock.advance(LANE_TAKEOVER)
    engine.store.accept_events([normalize({"type": "track", "userId": mine, "event": "Seen"},
                                          now=engine.clock.now(), message_id="m1")])
    assert engine.worker.handle_events() == 1  # its own lane's first
    assert not engine.worker.drained  # the service's round goes on
    assert engine.worker.handle_events() == 1  # then the lane nobody serves
    assert engine.store.get_profile(theirs) is not None


def test_a_lane_worker_waits_only_for_its_own_lanes_held_events(store: SqlStore) -> None:
    later = T0 + timedelta(hours=1)
    store.accept_events([normalize({"type": "track", "userId": _in_lane(1), "event": "Seen"},
                                   now=T0, message_id="m1")])
    [item] = store.peek_inbox(10, T0, Lane())
    store.retry_inbox(item.id, later, "failed once")
    assert store.next_inbox_at() == later
    assert store.next_inbox_at(Lane(1, 2)) == later
    assert store.next_inbox_at(Lane(0, 2)) is None  # no busy wake-ups for another lane


def test_the_handling_lag_is_observed_once_for_a_batch_done_twice(
        engine: InMemoryEngine) -> None:
    from engine.runtime.metrics import Metrics

    engine.worker.metrics = metrics = Metrics()
    other = SqlStore(engine.store.url)
    _meanwhile(engine, "first", lambda: other.put_profile(Profile("u9", {}, {})))
    event = normalize({"type": "identify", "userId": "u1", "traits": {
        "email": "u1@example.com", "plan": "first"}}, now=T0, message_id="m1")
    event["receivedAt"] = T0.isoformat()  # as the API stamps it
    engine.store.accept_events([event])
    while engine.worker.handle_events():
        pass
    other.close()
    assert engine.worker.stats.redone == 1
    assert metrics.registry.get_sample_value("journeyman_handling_lag_seconds_count") == 1
    assert metrics.registry.get_sample_value("journeyman_batches_redone_total") == 1


@pytest.fixture
def timers(sqlite_template: Path, tmp_path: Path) -> Iterator[InMemoryEngine]:
    yield from _on_a_file(sqlite_template, tmp_path, {"later": LATER})


def _while_firing(eng: InMemoryEngine, write: Callable[[], None]) -> None:
    """Run `write` (another worker's) once, while a timer is being fired in memory."""
    fire = eng.runner.fire
    pending = [write]

    def firing(timer: Any, unit: Any) -> Any:
        if pending:
            pending.pop()()
        return fire(timer, unit)

    eng.runner.fire = firing  # type: ignore[method-assign]


def test_a_timer_another_worker_took_meanwhile_fires_once(timers: InMemoryEngine) -> None:
    other = SqlStore(timers.store.url)
    timers.track("u1", "Ordered")
    [due] = other.peek_timers(T0 + timedelta(seconds=2), 10, Lane())

    def fired_elsewhere() -> None:
        with other.transaction(stamped=True):
            assert other.claim_timers([due.key])  # as if another worker fired it

    _while_firing(timers, fired_elsewhere)
    timers.advance(timedelta(seconds=3))
    other.close()
    assert timers.worker.stats.redone == 1
    assert timers.sent == []  # "the other worker" took it: this one sent nothing
    assert timers.store.pending_timers() == 0


def test_a_timer_whose_profile_was_written_meanwhile_fires_again_in_the_lock(
        timers: InMemoryEngine) -> None:
    other = SqlStore(timers.store.url)
    timers.identify("u1", {"email": "u1@example.com"})
    timers.track("u1", "Ordered")
    _while_firing(timers, lambda: other.write_changes([WriteRun(profiles={
        "u1": Profile("u1", {"email": "u1@example.com", "vip": True}, {})})]))
    timers.advance(timedelta(seconds=3))
    other.close()
    assert timers.worker.stats.redone == 1
    assert [(m.profile, m.template) for m in timers.sent] == [("u1", "hello")]  # once
    assert timers.profile("u1").traits["vip"] is True
    assert timers.store.pending_timers() == 0


def test_a_timer_that_failed_in_a_snapshot_is_retried(timers: InMemoryEngine) -> None:
    """A failed timer's retry joins its chunk's unit inside the write transaction
    (`Worker._timer_failed`): that chunk is written as it was, not made ready before
    (`UnitOfWork.prepare`), or the retry would be lost with the timer claimed."""
    fire = timers.runner.fire
    failures = [RuntimeError("the template's server is down")]

    def failing_once(timer: Any, unit: Any) -> Any:
        if failures:
            raise failures.pop()
        return fire(timer, unit)

    timers.runner.fire = failing_once  # type: ignore[method-assign]
    timers.identify("u1", {"email": "u1@example.com"})
    timers.track("u1", "Ordered")
    timers.advance(timedelta(seconds=3))
    assert timers.sent == []
    assert failures == []
    assert timers.store.pending_timers() == 1  # its retry
    timers.advance(timedelta(minutes=10))
    assert [(m.profile, m.template) for m in timers.sent] == [("u1", "hello")]
    assert timers.store.pending_timers() == 0


def test_timers_are_split_by_lane_and_a_lane_nobody_serves_is_taken_over(
        timers: InMemoryEngine) -> None:
    from engine.runtime.takeover import LANE_TAKEOVER

    mine, theirs = _in_lane(0), _in_lane(1)
    timers.track(mine, "Ordered")
    timers.track(theirs, "Ordered")
    due = T0 + timedelta(seconds=2)
    store = timers.store
    assert [t.profile_id for t in store.peek_timers(due, 10, Lane(0, 2))] == [mine]
    assert [t.profile_id for t in store.peek_timers(due, 10, Lane(1, 2))] == [theirs]
    assert store.next_timer_at(lane=Lane(0, 2)) == due == store.next_timer_at()
    assert store.last_timer_due_by(due, lane=Lane(1, 2)) == due
    assert store.last_timer_due_by(due - timedelta(seconds=1), lane=Lane(1, 2)) is None
    timers.worker.lane = Lane(0, 2)  # lane 1's worker is stopped
    timers.clock.advance(timedelta(seconds=2))
    assert timers.worker.fire_timers() == 1
    assert store.next_timer_at(lane=Lane(0, 2)) is None
    assert store.last_timer_due_by(due, lane=Lane(0, 2)) is None
    assert store.next_timer_at(lane=Lane(1, 2)) == due
    timers.clock.advance(LANE_TAKEOVER)
    assert timers.worker.fire_timers() == 1  # overdue long enough: taken over
    assert store.pending_timers() == 0


def test_peek_timers_takes_overdue_since_as_peek_inbox_takes_waiting_since(
        timers: InMemoryEngine) -> None:
    """`overdue_since` alone: any lane's timers due by then (it was ignored, the lane's
    own timers read instead); `served` without it is refused, as `peek_inbox` refuses
    `served` without `waiting_since`."""
    mine, theirs = _in_lane(0), _in_lane(1)
    timers.track(mine, "Ordered")
    timers.track(theirs, "Ordered")
    due = T0 + timedelta(seconds=2)
    store, later = timers.store, due + timedelta(minutes=1)
    overdue = store.peek_timers(later, 10, Lane(0, 2), overdue_since=due)
    assert sorted(t.profile_id for t in overdue) == sorted([mine, theirs])
    assert store.peek_timers(later, 10, Lane(0, 2), overdue_since=due - timedelta(seconds=1)) == []
    assert store.peek_timers(due - timedelta(seconds=1), 10, Lane(), overdue_since=later) == []
    by_served = store.peek_timers(later, 10, Lane(), overdue_since=due - timedelta(seconds=1),
                                  served=[Lane(0, 2)])
    assert [t.profile_id for t in by_served] == [theirs]  # lane 1: nobody serves it
    with pytest.raises(ValueError, match="`served` goes with `overdue_since`"):
        store.peek_timers(later, 10, Lane(), served=[Lane(0, 2)])


def test_a_timer_round_ends_with_the_last_timer_of_its_window_in_the_lane(
        timers: InMemoryEngine) -> None:
    """The timer loop's next run (engine/service.py): the timers due within the slack
    of the earliest fire together, when the last of them (of this worker's lane) comes
    due, not a whole slack after the earliest."""
    from tests.store.helpers import timer

    mine, theirs = _in_lane(0), _in_lane(1)
    at = {0.0: mine, 0.1: mine, 0.2: theirs, 0.4: mine}
    timers.store.add_timers([timer(f"t{s}", T0 + timedelta(seconds=s), profile=p)
                             for s, p in at.items()])
    slack = timedelta(seconds=0.25)
    timers.worker.lane = Lane(0, 2)
    assert timers.worker.next_timer_round(slack) == T0 + timedelta(seconds=0.1)
    timers.worker.lane = Lane(1, 2)
    assert timers.worker.next_timer_round(slack) == T0 + timedelta(seconds=0.2)
    timers.worker.lane = Lane()
    assert timers.worker.next_timer_round(slack) == T0 + timedelta(seconds=0.2)
    assert timers.worker.next_timer_round(timedelta(0)) == T0
    # at most `most` of them: the window closes at its most-th timer (of the lane)
    timers.worker.lane = Lane(0, 2)
    assert timers.worker.next_timer_round(slack, most=1) == T0
    assert timers.worker.next_timer_round(timedelta(seconds=1), most=2) == T0 + timedelta(
        seconds=0.1)
    assert timers.worker.next_timer_round(timedelta(seconds=1), most=3) == T0 + timedelta(
        seconds=0.4)
    timers.worker.lane = Lane(1, 2)
    assert timers.worker.next_timer_round(timedelta(seconds=1), most=1) == T0 + timedelta(
        seconds=0.2)
    timers.worker.lane = Lane()
    assert timers.worker.next_timer_round(slack, most=2) == T0 + timedelta(seconds=0.1)


def test_a_lanes_window_behind_a_crowd_of_another_lanes_timers_waits_the_slack(
        timers: InMemoryEngine) -> None:
    """The lane's last timer is looked for among the last LAST_IN_LANE_ROWS timers of
    the window only (a cron storm of another lane's is not walked row by row): behind
    more, the round waits the whole slack, as it did before windows."""
    from engine.store.sql.state import LAST_IN_LANE_ROWS
    from tests.store.helpers import timer

    mine, theirs = _in_lane(0), _in_lane(1)
    crowd = T0 + timedelta(seconds=0.1)
    timers.store.add_timers([timer("mine", T0, profile=mine)] + [
        timer(f"theirs{i}", crowd, profile=theirs) for i in range(LAST_IN_LANE_ROWS)])
    slack = timedelta(seconds=0.25)
    timers.worker.lane = Lane(0, 2)
    assert timers.worker.next_timer_round(slack) == T0 + slack
    timers.worker.lane = Lane(1, 2)
    assert timers.worker.next_timer_round(slack) == crowd
    timers.store.cancel_timer("theirs0")  # one fewer: the lane's own timer is seen
    timers.worker.lane = Lane(0, 2)
    assert timers.worker.next_timer_round(slack) == T0


def test_a_lanes_window_of_at_most_most_timers_is_not_cut_by_another_lanes_backlog(
        timers: InMemoryEngine) -> None:
    """With `most` (the service's TIMER_WINDOW), the window is counted from the lane's
    earliest timer: another lane's overdue backlog, however long, neither hides the
    lane's timers (a round the whole slack late) nor shrinks its window (a run per
    timer). Found in review: the count first started at the oldest timer of any lane."""
    from engine.store.sql.state import LAST_IN_LANE_ROWS
    from tests.store.helpers import timer

    mine, theirs = _in_lane(0), _in_lane(1)
    old = T0 - timedelta(minutes=1)  # lane 1 is behind
    timers.store.add_timers(
        [timer(f"theirs{i}", old, profile=theirs) for i in range(LAST_IN_LANE_ROWS)]
        + [timer(f"mine{i}", T0 + timedelta(seconds=0.05 * i), profile=mine)
           for i in range(4)])
    slack = timedelta(seconds=0.25)
    timers.worker.lane = Lane(0, 2)
    assert timers.worker.next_timer_round(slack, most=64) == T0 + timedelta(seconds=0.15)
    assert timers.worker.next_timer_round(slack, most=2) == T0 + timedelta(seconds=0.05)
    timers.worker.lane = Lane(1, 2)
    assert timers.worker.next_timer_round(slack, most=64) == old


def test_a_timer_round_after_a_transient_error_waits_for_its_end(
        timers: InMemoryEngine) -> None:
    from tests.store.helpers import timer

    timers.store.add_timer(timer("t", T0, profile=_in_lane(0)))
    timers.worker.transients.failed("timers", OSError("database is locked"))
    resume = timers.worker.transients.waiting_until("timers")
    assert resume is not None
    assert resume > T0
    assert timers.worker.next_timer_round(timedelta(seconds=0.25)) == resume


DAILY = """
journey: daily
version: 1
entry:
  schedule: "0 9 * * *"
re_entry: always
steps:
  - id: hello
    send: {channel: email, template: hello}
"""


def test_a_timer_re_armed_with_its_key_meanwhile_waits_for_its_new_time(
        timers: InMemoryEngine) -> None:
    """The chunk is done again in the lock, but only what is still due is claimed: the
    same key armed again for tomorrow (a retry's backoff, a cron's next firing) waits."""
    other = SqlStore(timers.store.url)
    timers.track("u1", "Ordered")
    [due] = other.peek_timers(T0 + timedelta(seconds=2), 10, Lane())

    def re_armed_elsewhere() -> None:
        with other.transaction(stamped=True):
            [taken] = other.claim_timers([due.key])
            other.add_timer(replace(taken, due_at=taken.due_at + timedelta(days=1),
                                    attempts=taken.attempts + 1))

    _while_firing(timers, re_armed_elsewhere)
    timers.clock.advance(timedelta(seconds=3))
    timers.worker.fire_timers()
    other.close()
    assert timers.worker.stats.redone == 1
    assert timers.sent == []
    assert timers.store.pending_timers() == 1  # not fired a day early


def test_a_daily_entry_fired_by_another_worker_meanwhile_enters_once(
        sqlite_template: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "d", {"daily": DAILY}, {"hello": stub_email("hello")})
    engines = [InMemoryEngine.from_folder(folder, start=T0 - timedelta(hours=1))
               for _ in range(2)]
    mine, theirs = engines
    store = make_sqlite_store(sqlite_template, tmp_path)
    store.clock = mine.clock
    mine.use_store(store)
    mine.identify("u1", {"email": "u1@example.com"})
    other = SqlStore(store.url)
    other.clock = theirs.clock
    theirs.use_store(other)
    theirs.worker.snapshots = None  # `serve`'s worker, say: it fires in the lock

    def fired_elsewhere() -> None:
        theirs.clock.set(mine.now)
        assert theirs.worker.fire_timers() == 1  # and arms tomorrow's, the same key

    _while_firing(mine, fired_elsewhere)
    try:
        mine.clock.set(T0 + timedelta(seconds=1))
        mine.worker.fire_timers()
        assert mine.worker.stats.redone == 1
        assert len(store.enrollments("u1", "daily")) == 1  # entered once today
        [tomorrow] = store.due_timers(T0 + timedelta(days=2), 10)
        assert tomorrow.due_at == T0 + timedelta(days=1)
    finally:
        other.close()
        store.close()


def test_a_failure_in_a_batch_the_database_refuses_is_counted_once(
        engine: InMemoryEngine) -> None:
    """The batch holds a failing event (`poison`) and a profile the database refuses
    (`bad`, a trigger): the batch rolls back and is done again profile by profile. The
    poison's failure was written twice but committed once: counted once."""
    with engine.store.transaction():
        engine.store._local.conn.exec_driver_sql(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON profiles WHEN NEW.id = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END")
    handle = engine.runner.handle

    def poisoned(event: dict[str, Any], unit: Any) -> Any:
        if event.get("userId") == "poison":
            raise RuntimeError("poisoned")
        return handle(event, unit)

    engine.runner.handle = poisoned  # type: ignore[method-assign]
    engine.store.accept_events([normalize({"type": "identify", "userId": user,
                                           "traits": {"plan": "x"}}, now=T0,
                                          message_id=f"m-{user}")
                                for user in ("poison", "bad", "good")])
    while engine.worker.handle_events():
        pass
    assert engine.worker.stats.failures == 2  # poison once, bad once
    assert engine.store.get_profile("good") is not None
    assert engine.store.get_profile("bad") is None
