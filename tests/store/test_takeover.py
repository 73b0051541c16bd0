"""A SQLite lane worker's takeover of the lanes nobody serves (engine/runtime/takeover.py):
each listening process names its lane in the wake-ups' folder
(engine/store/sql/wake_sockets.py), so a lane without a live worker is taken at once,
and a lane whose worker lives is left to it. Another process is stood for by its file
in the folder (fresh: alive; an old mtime: dead); the real processes are in
tests/service/test_sqlite_lanes.py."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.core.model import Profile
from engine.ports import Lane, WriteRun
from engine.runtime.events import normalize
from engine.runtime.takeover import LANE_TAKEOVER, LIVE_LANE_TAKEOVER
from engine.store import SqlStore
from engine.store.sql.lanes import lane_of, unserved, unserved_residues
from engine.store.sql.stamps import ANY_STATE, profile_key, slot_of
from engine.store.sql.wake_sockets import STALE, WakeSockets
from engine.testing import FakeClock, InMemoryEngine
from tests.store.test_isolation import LATER
from tests.store.test_stamps import T0, _in_lane, _on_a_file, _stamps

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="abstract sockets are Linux's")

@pytest.fixture
def engine(sqlite_template: Path, tmp_path: Path) -> Iterator[InMemoryEngine]:
    yield from _on_a_file(sqlite_template, tmp_path, {"later": LATER})


@pytest.fixture
def listening(engine: InMemoryEngine) -> Iterator[Callable[[str], Path]]:
    """The engine's worker serves lane 0 of 2 and listens, as `journeyman worker --lane
    0/2` does; the function returned stands another process's file in the folder, naming
    the lane it is given."""
    engine.worker.lane = Lane(0, 2)
    sockets = engine.store._wake_sockets
    assert sockets is not None
    stop = engine.store.listen({}, serves=engine.worker.lane)

    def other(lane: str) -> Path:
        marker = sockets.folder / f"{sockets.namespace}-1-{secrets.token_hex(6)}"
        marker.write_text(lane)
        sockets._served = None  # read the folder again now
        return marker

    yield other
    stop()


def _dead(marker: Path) -> None:
    old = time.time() - STALE - 5
    os.utime(marker, (old, old))


def test_a_lane_whose_worker_lives_is_left_to_it_however_long_its_events_wait(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    listening("1/2")
    theirs = _in_lane(1)
    engine.identify(theirs, {"plan": "b"})
    engine.clock.advance(LANE_TAKEOVER * 2)
    assert engine.worker.handle_events() == 0  # lane 1's worker is behind, not gone
    engine.clock.advance(LIVE_LANE_TAKEOVER)
    assert engine.worker.handle_events() == 1  # stuck that long: taken over
    assert engine.store.get_profile(theirs) is not None


def test_a_dead_workers_lane_is_taken_over_at_once(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    _dead(listening("1/2"))  # SIGKILLed: its file stays, no longer touched
    theirs = _in_lane(1)
    engine.identify(theirs, {"plan": "b"})  # handled as it comes (InMemoryEngine)
    profile = engine.store.get_profile(theirs)  # no wait
    assert profile is not None
    assert profile.traits["plan"] == "b"


def test_profiles_in_no_live_lane_are_taken_at_once_the_others_left(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """`--lane 0/2` beside `--lane 1/3`: a profile in lane 1 of 2 and lane 1 of 3 is
    the other worker's; one in lane 1 of 2 but not lane 1 of 3 is nobody's."""
    listening("1/3")
    nobodys = next(f"p{n}" for n in range(200)
                   if lane_of(f"p{n}", 2) == 1 and lane_of(f"p{n}", 3) != 1)
    others = next(f"p{n}" for n in range(200)
                  if lane_of(f"p{n}", 2) == 1 and lane_of(f"p{n}", 3) == 1)
    engine.identify(others, {"plan": "o"})  # handled as they come (InMemoryEngine)
    engine.identify(nobodys, {"plan": "n"})
    assert engine.store.get_profile(nobodys) is not None
    assert engine.store.get_profile(others) is None
    assert engine.worker.handle_events() == 0


def test_a_dead_workers_timers_are_taken_over_at_once_a_live_ones_left(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    marker = listening("1/2")
    theirs = _in_lane(1)
    engine.worker.lane = Lane(0, 1)  # the event by a worker of every lane ...
    engine.track(theirs, "Ordered")
    engine.worker.lane = Lane(0, 2)  # ... its timer then lane 1's
    assert engine.store.pending_timers() == 1
    engine.clock.advance(timedelta(seconds=2) + LANE_TAKEOVER)
    assert engine.worker.fire_timers() == 0  # lane 1's worker lives
    _dead(marker)
    engine.store._wake_sockets._served = None  # type: ignore[union-attr]
    assert engine.worker.fire_timers() == 1
    assert engine.store.pending_timers() == 0


def test_an_older_listener_that_names_no_lane_means_the_waiting_rule(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """An empty file (a journeyman before 2026-12-06): which lanes are served is not
    known, so events of any lane are taken once they have waited `LANE_TAKEOVER`."""
    listening("")
    assert engine.store.lanes_served() is None
    theirs = _in_lane(1)
    engine.identify(theirs, {"plan": "b"})
    assert engine.worker.handle_events() == 0
    engine.clock.advance(LANE_TAKEOVER)
    assert engine.worker.handle_events() == 1


def test_lanes_served_are_the_live_listeners_own_included(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    assert engine.store.lanes_served() == (Lane(0, 2),)
    listening("1/2")
    _dead(listening("1/3"))
    assert sorted(map(str, engine.store.lanes_served() or ())) == ["0/2", "1/2"]


def test_a_process_that_does_not_listen_knows_no_lanes(tmp_path: Path) -> None:
    sockets = WakeSockets(tmp_path)
    (tmp_path / f"{sockets.namespace}-1-{secrets.token_hex(6)}").write_text("0/1")
    assert sockets.lanes_served() is None
    stop = sockets.listen({}, serves=Lane(1, 2))
    try:
        assert sorted(map(str, sockets.lanes_served() or ())) == ["0/1", "1/2"]
        own = tmp_path / str(sockets._own)
        assert own.read_text() == "1/2"
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    finally:
        stop()
        sockets.close()


def test_a_listener_makes_its_file_again_with_its_lane(tmp_path: Path) -> None:
    sockets = WakeSockets(tmp_path / "db-wake")
    stop = sockets.listen({}, serves=Lane(1, 2))
    try:
        own = sockets.folder / str(sockets._own)
        own.unlink()
        deadline = time.monotonic() + 5
        while not own.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert own.read_text() == "1/2"  # the heartbeat made it again
    finally:
        stop()
        sockets.close()


@pytest.mark.parametrize(("lanes", "nobodys"), [
    (["0/2", "1/2"], False), (["0/1"], False), (["0/2"], True), (["0/2", "1/3"], True),
    (["0/2", "0/3", "1/3", "2/3"], False), (["0/2", "1/4", "3/4"], False), ([], True)])
def test_the_residues_of_the_profiles_in_no_lane(lanes: list[str], nobodys: bool) -> None:
    """`jm_lane(p, modulus)` in the residues exactly when no lane holds p."""
    served = [Lane.parse(text) for text in lanes]
    found = unserved_residues(served)
    assert found is not None
    modulus, residues = found
    assert bool(residues) is nobodys
    for n in range(300):
        pid = f"p{n}"
        in_no_lane = all(lane_of(pid, lane.count) != lane.index for lane in served)
        assert (lane_of(pid, modulus) in residues) is in_no_lane, (lanes, pid)
        assert unserved(pid, " ".join(lanes)) == int(in_no_lane)
    assert unserved_residues([Lane(0, 4001), Lane(0, 4003)]) is None  # then jm_unserved


def test_unserved_agrees_with_the_lanes() -> None:
    for n in range(50):
        pid = f"p{n}"
        assert unserved(pid, "") == 1
        assert unserved(pid, "0/1") == 0
        assert unserved(pid, "0/2 1/2") == 0
        assert unserved(pid, "0/2") == int(lane_of(pid, 2) != 0)
        assert unserved(pid, "0/2 1/3") == int(lane_of(pid, 2) != 0 and lane_of(pid, 3) != 1)


def test_a_live_lanes_timers_are_taken_over_once_stuck_for_long(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    listening("1/2")
    theirs = _in_lane(1)
    engine.worker.lane = Lane(0, 1)
    engine.track(theirs, "Ordered")
    engine.worker.lane = Lane(0, 2)
    engine.clock.advance(timedelta(seconds=2) + LIVE_LANE_TAKEOVER - timedelta(seconds=1))
    assert engine.worker.fire_timers() == 0
    engine.clock.advance(timedelta(seconds=1))
    assert engine.worker.fire_timers() == 1


def test_another_network_namespaces_listener_serves_its_lane_too(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """Two containers sharing a volume hear no wake-ups from each other, but each one's
    file says which lane it serves."""
    sockets = engine.store._wake_sockets
    assert sockets is not None
    (sockets.folder / f"999{sockets.namespace}-1-{secrets.token_hex(6)}").write_text("1/2")
    listening("0/2")  # reads the folder again
    assert sorted(map(str, engine.store.lanes_served() or ())) == ["0/2", "0/2", "1/2"]


@pytest.mark.parametrize("kind", ["fifo", "link", "big", "words", "bytes", "folder"])
def test_a_file_in_the_folder_that_is_no_lane_means_not_known(
        engine: InMemoryEngine, listening: Callable[[str], Path], kind: str) -> None:
    """Any local program can write there: what it makes is at most the lanes served not
    known (the 30 s rule), never a live lane taken as nobody's, nor a worker blocked."""
    sockets = engine.store._wake_sockets
    assert sockets is not None
    path = sockets.folder / f"{sockets.namespace}-7-{secrets.token_hex(6)}"
    if kind == "fifo":
        os.mkfifo(path)  # a read would block for ever
    elif kind == "link":
        path.symlink_to(listening("1/2"))
    elif kind == "big":
        path.write_text("1/2" + " " * 10_000_000)
    elif kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"lane one" if kind == "words" else b"\xff\xfe1/2")
    (sockets.folder / "not-a-token").write_text("9/9")  # ignored: no listener's name
    sockets._served = None
    started = time.monotonic()
    assert engine.store.lanes_served() is None
    assert time.monotonic() - started < 1


def test_a_takeover_keeps_a_profiles_events_in_order_whatever_their_times(
        engine: InMemoryEngine) -> None:
    """Two accepts read the clock before they take the write lock: a profile's earlier
    event (lower id) may carry the later time. Taken over by time alone, the later event
    went first; now it waits for the earlier one, and both go, in order."""
    engine.worker.lane = Lane(0, 2)  # not listening: the 30 s rule
    theirs = _in_lane(1)
    clock, store = engine.clock, engine.store
    clock.set(T0 + timedelta(seconds=100))
    store.accept_events([normalize({"type": "identify", "userId": theirs,
                                    "traits": {"plan": "first"}},
                                   now=clock.now(), message_id="e1")])
    store.clock = FakeClock(T0)  # the second accept read the clock first
    store.accept_events([normalize({"type": "identify", "userId": theirs,
                                    "traits": {"plan": "second"}},
                                   now=T0, message_id="e2")])
    store.clock = clock
    assert engine.worker.handle_events() == 0  # e2 waited 100 s, but e1, before it, not
    clock.advance(LANE_TAKEOVER)
    assert engine.worker.handle_events() == 2  # both, in order
    profile = store.get_profile(theirs)
    assert profile is not None
    assert profile.traits["plan"] == "second"


def test_a_long_dead_listener_of_another_namespace_is_removed(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """Its own namespace's senders, who alone can find its socket gone, never come (two
    containers on one volume): a file untouched for a minute goes when the lanes served
    are read; one untouched for 20 s stays (dead, but not long)."""
    from engine.store.sql.wake_sockets import FORGOTTEN

    sockets = engine.store._wake_sockets
    assert sockets is not None
    gone = sockets.folder / f"999{sockets.namespace}-1-{secrets.token_hex(6)}"
    kept = sockets.folder / f"999{sockets.namespace}-2-{secrets.token_hex(6)}"
    for path, age in ((gone, FORGOTTEN + 5), (kept, STALE + 10)):
        path.write_text("1/2")
        os.utime(path, (time.time() - age, time.time() - age))
    sockets._served = None
    assert engine.store.lanes_served() == (Lane(0, 2),)
    assert not gone.exists()
    assert kept.exists()


def _write_profile(store: SqlStore, profile_id: str) -> None:
    store.write_changes([WriteRun(profiles={profile_id: Profile(profile_id, {"plan": "a"}, {})})])


def test_a_process_alone_on_the_file_stamps_slot_0_alone_until_another_listens(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """Nobody reads the stamps (no snapshot here, no other listener: `serve` by itself),
    so a write stamps slot 0, which every check reads, not a page per profile."""
    store, key = engine.store, profile_key("u1")
    assert isinstance(store, SqlStore)
    before = _stamps(store, key)
    _write_profile(store, "u1")
    after = _stamps(store, key)
    assert after[ANY_STATE] == before[ANY_STATE] + 1
    assert after[slot_of(key)] == before[slot_of(key)]
    other = listening("1/2")  # a lane worker comes: it reads them
    _write_profile(store, "u1")
    again = _stamps(store, key)
    assert again[slot_of(key)] == after[slot_of(key)] + 1
    assert again[ANY_STATE] == after[ANY_STATE]
    _dead(other)
    store._wake_sockets._served = None  # type: ignore[union-attr]  # read the folder now
    _write_profile(store, "u1")
    assert _stamps(store, key)[ANY_STATE] == again[ANY_STATE] + 1


def test_a_process_that_takes_snapshots_stamps_each_profile_alone_or_not(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    store, key = engine.store, profile_key("u1")
    assert isinstance(store, SqlStore)
    with store.snapshot() as snapshot:  # its own loops check each other's writes
        store.load_states(["u2"])
        store.stamps(snapshot)
    before = _stamps(store, key)
    _write_profile(store, "u1")
    after = _stamps(store, key)
    assert after[slot_of(key)] == before[slot_of(key)] + 1
    assert after[ANY_STATE] == before[ANY_STATE]


def test_a_snapshot_of_another_store_sees_a_write_that_stamped_slot_0_alone(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """Correct whoever reads: a batch that read u1 before it was written alone is done
    again, by slot 0."""
    store = engine.store
    assert isinstance(store, SqlStore)
    reader = SqlStore(store.url, clock=engine.clock)  # not listening: another process's
    try:
        with reader.snapshot() as snapshot:
            reader.load_states(["u1"])
            reader.stamps(snapshot)
        before = _stamps(store, profile_key("u1"))
        _write_profile(store, "u1")
        after = _stamps(store, profile_key("u1"))
        assert after[ANY_STATE] == before[ANY_STATE] + 1  # the write went the slot-0 way
        assert after[slot_of(profile_key("u1"))] == before[slot_of(profile_key("u1"))]
        with reader.transaction(stamped=True):
            assert not reader.unchanged(snapshot)
        # the reader listens on nothing: its own writes stamp each profile
        before = _stamps(reader, profile_key("u2"))
        _write_profile(reader, "u2")
        assert _stamps(reader, profile_key("u2"))[ANY_STATE] == before[ANY_STATE]
    finally:
        reader.close()


def test_not_alone_when_its_own_file_is_stale_beside_a_live_listener(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    """One live listener that is not this process (its heartbeat ended): stamped per
    profile, or that worker's every overlapping batch would be done again."""
    store = engine.store
    assert isinstance(store, SqlStore)
    sockets = store._wake_sockets
    assert sockets is not None
    assert sockets._own is not None
    listening("1/2")
    for _ in range(3):  # its heartbeat may touch its file again meanwhile: look again
        _dead(sockets.folder / sockets._own)
        sockets._served = None
        if sockets.lanes_served() == (Lane(1, 2),):
            break
    assert sockets.lanes_served() == (Lane(1, 2),)
    assert not store._writing_alone()


def test_a_write_of_no_state_stamps_nothing_alone(
        engine: InMemoryEngine, listening: Callable[[str], Path]) -> None:
    store = engine.store
    assert isinstance(store, SqlStore)
    assert store._writing_alone()
    before = _stamps(store)[ANY_STATE]
    store.write_changes([WriteRun()])
    assert _stamps(store)[ANY_STATE] == before
