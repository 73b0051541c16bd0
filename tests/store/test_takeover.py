"""A SQLite lane worker's takeover of the lanes nobody serves (engine/runtime/takeover.py):
each listening process names its lane in the wake-ups' folder
(engine/store/sql/wake_sockets.py), so a lane without a live worker is taken at once,
and a lane whose worker lives is left to it. Another process is stood for by its file
in the folder (fresh: alive; an old mtime: dead); the real processes are in
tests/service/test_sqlite_lanes.py."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from engine.ports import Lane
from engine.runtime.takeover import LANE_TAKEOVER, LIVE_LANE_TAKEOVER, serve_every_profile
from engine.store.sql.lanes import lane_of, unserved
from engine.store.sql.wake_sockets import STALE, WakeSockets
from engine.testing import InMemoryEngine
from tests.store.test_isolation import LATER
from tests.store.test_stamps import _in_lane, _on_a_file

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="abstract sockets are Linux's")

@pytest.fixture
def engine(sqlite_template: Path, tmp_path: Path) -> Iterator[InMemoryEngine]:
    yield from _on_a_file(sqlite_template, tmp_path, {"later": LATER})


@pytest.fixture
def listening(engine: InMemoryEngine) -> Iterator[Callable[[str, str], Path]]:
    """The engine's worker serves lane 0 of 2 and listens, as `journeyman worker --lane
    0/2` does; the function returned stands another process's file in the folder (its
    token, its lane)."""
    engine.worker.lane = Lane(0, 2)
    sockets = engine.store._wake_sockets
    assert sockets is not None
    stop = engine.store.listen({}, serves=engine.worker.lane)

    def other(token: str, lane: str) -> Path:
        marker = sockets.folder / f"{sockets.namespace}-{token}"
        marker.write_text(lane)
        sockets._served = None  # read the folder again now
        return marker

    yield other
    stop()


def _dead(marker: Path) -> None:
    old = time.time() - STALE - 5
    os.utime(marker, (old, old))


def test_a_lane_whose_worker_lives_is_left_to_it_however_long_its_events_wait(
        engine: InMemoryEngine, listening: Callable[[str, str], Path]) -> None:
    listening("1-a", "1/2")
    theirs = _in_lane(1)
    engine.identify(theirs, {"plan": "b"})
    engine.clock.advance(LANE_TAKEOVER * 2)
    assert engine.worker.handle_events() == 0  # lane 1's worker is behind, not gone
    engine.clock.advance(LIVE_LANE_TAKEOVER)
    assert engine.worker.handle_events() == 1  # stuck that long: taken over
    assert engine.store.get_profile(theirs) is not None


def test_a_dead_workers_lane_is_taken_over_at_once(
        engine: InMemoryEngine, listening: Callable[[str, str], Path]) -> None:
    _dead(listening("1-a", "1/2"))  # SIGKILLed: its file stays, no longer touched
    theirs = _in_lane(1)
    engine.identify(theirs, {"plan": "b"})  # handled as it comes (InMemoryEngine)
    profile = engine.store.get_profile(theirs)  # no wait
    assert profile is not None
    assert profile.traits["plan"] == "b"


def test_profiles_in_no_live_lane_are_taken_at_once_the_others_left(
        engine: InMemoryEngine, listening: Callable[[str, str], Path]) -> None:
    """`--lane 0/2` beside `--lane 1/3`: a profile in lane 1 of 2 and lane 1 of 3 is
    the other worker's; one in lane 1 of 2 but not lane 1 of 3 is nobody's."""
    listening("1-a", "1/3")
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
        engine: InMemoryEngine, listening: Callable[[str, str], Path]) -> None:
    marker = listening("1-a", "1/2")
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
        engine: InMemoryEngine, listening: Callable[[str, str], Path]) -> None:
    """An empty file (a journeyman before 2026-12-06): which lanes are served is not
    known, so events of any lane are taken once they have waited `LANE_TAKEOVER`."""
    listening("1-a", "")
    assert engine.store.lanes_served() is None
    theirs = _in_lane(1)
    engine.identify(theirs, {"plan": "b"})
    assert engine.worker.handle_events() == 0
    engine.clock.advance(LANE_TAKEOVER)
    assert engine.worker.handle_events() == 1


def test_lanes_served_are_the_live_listeners_own_included(
        engine: InMemoryEngine, listening: Callable[[str, str], Path]) -> None:
    assert engine.store.lanes_served() == (Lane(0, 2),)
    listening("1-a", "1/2")
    _dead(listening("2-b", "1/3"))
    assert sorted(map(str, engine.store.lanes_served() or ())) == ["0/2", "1/2"]


def test_a_process_that_does_not_listen_knows_no_lanes(tmp_path: Path) -> None:
    sockets = WakeSockets(tmp_path)
    (tmp_path / f"{sockets.namespace}-1-a").write_text("0/1")
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


@pytest.mark.parametrize(("lanes", "every"), [
    (["0/2", "1/2"], True), (["0/1"], True), (["0/2"], False), (["0/2", "1/3"], False),
    (["0/2", "0/3", "1/3", "2/3"], True), ([], False)])
def test_every_profile_served(lanes: list[str], every: bool) -> None:
    assert serve_every_profile(map(Lane.parse, lanes)) is every


def test_unserved_agrees_with_the_lanes() -> None:
    for n in range(50):
        pid = f"p{n}"
        assert unserved(pid, "") == 1
        assert unserved(pid, "0/1") == 0
        assert unserved(pid, "0/2 1/2") == 0
        assert unserved(pid, "0/2") == int(lane_of(pid, 2) != 0)
        assert unserved(pid, "0/2 1/3") == int(lane_of(pid, 2) != 0 and lane_of(pid, 3) != 1)
