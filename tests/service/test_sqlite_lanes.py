"""Two `journeyman worker` processes on one SQLite file, one lane each (`--lane 0/2`,
`--lane 1/2`), handling batches outside the write lock and checking them before they
write (engine/store/sql/stamps.py), while one of them is SIGKILLed and restarted every
few seconds (issue 11). Some visitors are anonymous first and identify (or are aliased)
later, so their two ids fall in different lanes and the workers meet on one profile. Asserted from the
database afterwards: every profile's events handled in order and exactly once, every
timer fired once, no send queued twice, and no visitor's traits lost in a merge."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.takeover import LANE_TAKEOVER
from engine.store import SqlStore
from engine.store.sql.lanes import lane_of
from engine.store.sql.wake_sockets import STALE
from tests.engine.helpers import stub_email, write_folder
from tests.service.test_scaleout import (
    COUNTDOWN,
    SEQ,
    Worker,
    check_in_order_and_once,
    feed_while_killing,
    steps_after,
)

pytestmark = [pytest.mark.slow]

PROFILES = 3000
STEPS = 3
ANONYMOUS_EVERY = 5  # every fifth visitor browses anonymously before identifying
KILL_EVERY = (2.0, 4.0)


def _events() -> list[dict[str, Any]]:
    raw: list[dict[str, Any]] = []
    for n in range(PROFILES):  # an anonymous visit just before its identify: two lanes
        if n % ANONYMOUS_EVERY == 0:
            anonymous = {"type": "identify", "anonymousId": f"a{n}",
                         "traits": {"landing": f"/p{n}"}}
            if n % (2 * ANONYMOUS_EVERY):  # the identify names the visitor
                raw += [anonymous, {"type": "identify", "userId": f"u{n}",
                                    "anonymousId": f"a{n}",
                                    "traits": {"email": f"u{n}@example.com"}}]
            else:  # an alias names the visitor after the identify
                raw += [anonymous, {"type": "identify", "userId": f"u{n}",
                                    "traits": {"email": f"u{n}@example.com"}},
                        {"type": "alias", "previousId": f"a{n}", "userId": f"u{n}"}]
        else:
            raw.append({"type": "identify", "userId": f"u{n}",
                        "traits": {"email": f"u{n}@example.com"}})
    return steps_after(raw, PROFILES, STEPS)


def test_two_sqlite_lanes_one_killed_again_and_again_keep_order_and_exactly_once(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jm.db'}"
    folder = write_folder(tmp_path / "journeys", {"seq": SEQ, "countdown": COUNTDOWN},
                          {"note": stub_email("note")})
    store = SqlStore(url, create=True)
    events = _events()
    # the anonymous and the known id of some visitors are in different lanes
    assert any(lane_of(f"a{n}", 2) != lane_of(f"u{n}", 2)
               for n in range(0, PROFILES, ANONYMOUS_EVERY))
    workers = [Worker(folder, url, tmp_path, i) for i in range(2)]
    for index, worker in enumerate(workers):
        worker.args += ["--lane", f"{index}/2"]
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))
    kills = feed_while_killing(store, events, workers, rng, sent=PROFILES, chunk=250,
                               kill_every=KILL_EVERY, seconds=300)
    assert kills >= 2, kills
    try:
        check_in_order_and_once(store, PROFILES, STEPS)
        # the anonymous visits reached the known profile, whichever lane came first
        for n in range(0, PROFILES, ANONYMOUS_EVERY):
            assert store.profile_for("anonymous_id", f"a{n}") == f"u{n}"
            profile = store.get_profile(f"u{n}")
            assert profile is not None, n
            assert profile.traits.get("landing") == f"/p{n}", n
            assert store.get_profile(f"a{n}") is None
        logs = "".join(w.log.read_text() for w in workers)
        assert "Traceback" not in logs, logs[-3000:]
    finally:
        store.close()


def _wait_for(done: Callable[[], bool], seconds: float, what: str) -> float:
    """Seconds until `done()`; fails after `seconds`."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < seconds, what
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_killed_lane_workers_lane_is_taken_over_once_its_heartbeat_stops(
        tmp_path: Path) -> None:
    """The live lane worker takes a SIGKILLed one's lane about `STALE` (10 s) after its
    last heartbeat, and from then on each of its events at once, not after each has
    waited `LANE_TAKEOVER` (30 s) as before 2026-12-06 (engine/runtime/takeover.py)."""
    url = f"sqlite:///{tmp_path / 'jm.db'}"
    folder = write_folder(tmp_path / "journeys", {"seq": SEQ}, {"note": stub_email("note")})
    store = SqlStore(url, create=True)
    wakes = Path(f"{os.path.realpath(tmp_path / 'jm.db')}-wake")
    workers = [Worker(folder, url, tmp_path, i) for i in range(2)]
    theirs = [f"u{n}" for n in range(400) if lane_of(f"u{n}", 2) == 1]

    def identify(profiles: list[str]) -> None:
        store.accept_events([{"type": "identify", "userId": p, "messageId": f"m-{p}",
                              "traits": {"email": f"{p}@example.com"}} for p in profiles],
                            "site")

    try:
        for index, worker in enumerate(workers):
            worker.args += ["--lane", f"{index}/2"]
            worker.start()
        _wait_for(lambda: sorted(p.read_text() for p in wakes.glob("[!.]*")) == ["0/2", "1/2"],
                  60, "both workers listening, each naming its lane")
        _wait_for(lambda: all("running" in w.log.read_text() for w in workers), 60,
                  "both workers running")
        workers[1].kill()
        killed = time.monotonic()
        identify(theirs[:20])
        _wait_for(lambda: not store.inbox_counts(), 25, "lane 1 taken over")
        assert STALE - 2 < time.monotonic() - killed < LANE_TAKEOVER.total_seconds()
        assert all(store.get_profile(p) is not None for p in theirs[:20])
        identify(theirs[20:40])  # lane 1 is now the live worker's: no wait
        assert _wait_for(lambda: not store.inbox_counts(), 10, "taken at once") < 3
        assert "Traceback" not in workers[0].log.read_text()
    finally:
        for worker in workers:
            worker.stop()
        store.close()
