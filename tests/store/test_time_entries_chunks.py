"""Arming the time-driven entries of a deployed journey over existing profiles, on
SQLite and PostgreSQL (review fixes of issue 14): one transaction per chunk (what is
armed is committed as it goes, so the write lock is never held for the whole arming),
resumed after the last chunk done when a process dies halfway, left to the process
holding the lease; and an event re-arms a profile's time-segment timer only when it
changes what the condition reads."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update

from engine.core.model import Profile
from engine.runtime.events import normalize
from engine.runtime.time_entries import LEASE, SETTING, arm_time_entries
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.runtime.versions import apply
from engine.service import Wiring, wire
from engine.store import SqlStore
from engine.store.sql.tables import table
from engine.testing import TEST_SECRET, FakeClock, RecordingChannel, SequentialIds
from journeys.loader import load_library
from tests.store.helpers import T0, dormant_journey

DAILY = """\
journey: daily
version: 1
entry:
  schedule: "0 9 * * *"
steps:
  - id: hello
    send: {channel: email, template: hello}
"""
DORMANT = dormant_journey()
PROFILES = 1_234


def _wiring(store: SqlStore, tmp_path: Path, journey: str, clock: FakeClock) -> Wiring:
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    (folder / "templates" / "hello.yaml").write_text(
        "channel: email\nsubject: Hi\nhtml: <p>Hi</p>\n")
    (folder / "policy.yaml").write_text("timezone: UTC\n")
    (folder / f"{journey.split()[1]}.yaml").write_text(journey)
    library = load_library(folder)
    store.clock = clock
    apply(library, store, clock.now())
    return wire(library, store=store, clock=clock, channels={"email": RecordingChannel()},
                unsubscribe=UnsubscribeLinks(TEST_SECRET, "https://x.invalid"),
                deployed=True, backend="python")


def _people(store: SqlStore, n: int = PROFILES) -> list[str]:
    ids = [f"p{i:05}" for i in range(n)]
    with store.transaction():
        for pid in ids:
            store.put_profile(Profile(pid, {"email": f"{pid}@example.com"}))
    return ids


def _timers(url: str) -> int:
    """Timers another connection sees (committed ones)."""
    other = create_engine(url)
    try:
        with other.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM timers")).scalar_one())
    finally:
        other.dispose()


def test_each_chunk_is_its_own_transaction(sql_store: SqlStore, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    wiring = _wiring(sql_store, tmp_path, DAILY, clock)
    _people(sql_store)
    runner = wiring.runner
    seen: list[int] = []
    calls = 0
    entry_timer = runner.entry_timer

    def watching(jid: str, profile: Profile, now: Any) -> Any:
        nonlocal calls
        if calls in (500, 1000):  # the first profile of chunks 2 and 3
            seen.append(_timers(sql_store.url))
        calls += 1
        return entry_timer(jid, profile, now)

    runner.entry_timer = watching  # type: ignore[method-assign]
    assert arm_time_entries(runner, sql_store, clock.now(), chunk=500) == PROFILES
    assert seen == [500, 1000]  # committed chunk by chunk (was [0, 0]: one transaction)
    assert sql_store.pending_timers() == PROFILES
    assert sql_store.setting(SETTING.format("daily")) is not None
    assert sql_store.setting(LEASE) is None
    assert arm_time_entries(runner, sql_store, clock.now()) == 0  # nothing left to arm


def test_an_arming_that_fails_halfway_resumes_after_the_last_chunk(
        sql_store: SqlStore, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    wiring = _wiring(sql_store, tmp_path, DAILY, clock)
    _people(sql_store)
    runner = wiring.runner
    entry_timer = runner.entry_timer
    calls = 0

    def dying(jid: str, profile: Profile, now: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 700:  # in the second chunk
            raise RuntimeError("killed")
        return entry_timer(jid, profile, now)

    runner.entry_timer = dying  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        arm_time_entries(runner, sql_store, clock.now(), chunk=500)
    assert sql_store.pending_timers() == 500  # the first chunk stays armed
    assert sql_store.setting(SETTING.format("daily")) is None  # not done
    lease = json.loads(sql_store.setting(LEASE) or "{}")
    assert lease["after"] == "p00499"
    runner.entry_timer = entry_timer  # type: ignore[method-assign]
    assert arm_time_entries(runner, sql_store, clock.now(), chunk=500) == PROFILES - 500
    assert sql_store.pending_timers() == PROFILES
    assert sql_store.setting(SETTING.format("daily")) is not None
    assert sql_store.setting(LEASE) is None


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lease_of_a_killed_process_is_taken_over_and_a_live_one_is_left(
        sql_store: SqlStore, tmp_path: Path) -> None:
    import os
    import socket

    clock = FakeClock(T0)
    wiring = _wiring(sql_store, tmp_path, DAILY, clock)
    _people(sql_store)
    fingerprints = wiring.runner.time_entries()
    until = (clock.now() + timedelta(minutes=10)).timestamp()
    live = {"owner": {"host": socket.gethostname(), "pid": os.getpid(), "id": "other"},
            "fingerprints": fingerprints, "after": None, "until": until}
    sql_store.put_setting(LEASE, json.dumps(live))
    assert arm_time_entries(wiring.runner, sql_store, clock.now()) == 0  # it is arming
    assert sql_store.pending_timers() == 0
    # killed after 1,000 profiles (its lease not expired yet): resumed after them
    dead = {**live, "owner": {**live["owner"], "pid": _dead_pid()}, "after": "p00999"}
    sql_store.put_setting(LEASE, json.dumps(dead))
    assert arm_time_entries(wiring.runner, sql_store, clock.now()) == PROFILES - 1000
    # an expired lease (a process elsewhere that died) is taken over too
    sql_store.put_setting(SETTING.format("daily"), None)
    expired = {**live, "owner": {**live["owner"], "host": "elsewhere"},
               "until": clock.now().timestamp() - 1, "after": "p01199"}
    sql_store.put_setting(LEASE, json.dumps(expired))
    assert arm_time_entries(wiring.runner, sql_store, clock.now()) == PROFILES - 1200
    assert sql_store.setting(LEASE) is None


def test_an_event_rearms_the_time_segment_timer_only_when_its_inputs_change(
        sql_store: SqlStore, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    wiring = _wiring(sql_store, tmp_path, DORMANT, clock)
    ids = SequentialIds("m")

    def event(raw: dict[str, Any]) -> None:
        sql_store.accept_events([normalize({"userId": "u1", **raw}, now=clock.now(),
                                           message_id=ids.new_id)])
        while wiring.worker.handle_events():
            pass

    def due() -> Any:
        (timer,) = [t for t in sql_store.due_timers(T0 + timedelta(days=1000), 10)
                    if t.key == "time:dormant:u1"]
        return timer.due_at

    def set_due(when: Any) -> None:
        timers = table("timers")
        with sql_store.sql_engine.begin() as conn:
            conn.execute(update(timers).where(timers.c.key == "time:dormant:u1")
                         .values(due_at=when))

    event({"type": "track", "event": "Order Completed", "properties": {"revenue": 10}})
    armed = due()
    assert abs((armed - (T0 + timedelta(days=90))).total_seconds()) <= 3600
    marker = T0 + timedelta(days=200)  # an event that re-arms would move it back
    set_due(marker)
    clock.set(T0 + timedelta(hours=1))
    event({"type": "track", "event": "Page Viewed"})
    event({"type": "identify", "traits": {"first_name": "Ana"}})
    assert due() == marker  # nothing the condition reads changed: not re-armed
    clock.set(T0 + timedelta(days=10))
    event({"type": "track", "event": "Order Completed", "properties": {"revenue": 20}})
    assert abs((due() - (T0 + timedelta(days=100))).total_seconds()) <= 3600  # re-armed


def test_a_merge_rearms_the_time_segment_timer_of_the_profile_kept(
        sql_store: SqlStore, tmp_path: Path) -> None:
    """An anonymous visitor orders, then logs in as a known user with no order: the
    merged profile's "90 days since the last order" timer is armed from the visitor's
    order (the visitor's own timer goes with its profile)."""
    clock = FakeClock(T0)
    wiring = _wiring(sql_store, tmp_path, DORMANT, clock)
    ids = SequentialIds("m")

    def event(raw: dict[str, Any]) -> None:
        sql_store.accept_events([normalize(raw, now=clock.now(), message_id=ids.new_id)])
        while wiring.worker.handle_events():
            pass

    event({"type": "identify", "userId": "u1", "traits": {"email": "u1@example.com",
                                                           "consent": {"email": True}}})
    event({"type": "track", "anonymousId": "a1", "event": "Order Completed",
           "properties": {"revenue": 10}})
    clock.set(T0 + timedelta(hours=1))
    event({"type": "track", "userId": "u1", "anonymousId": "a1", "event": "Signed In"})
    assert sql_store.get_profile("u1").computed.get("last_order_at") is not None  # merged
    keys = {t.key: t.due_at for t in sql_store.due_timers(T0 + timedelta(days=1000), 10)}
    assert abs((keys["time:dormant:u1"] - (T0 + timedelta(days=90))).total_seconds()) <= 3600


def test_a_profile_being_handled_elsewhere_is_armed_after_its_transaction(
        sql_store: SqlStore, tmp_path: Path) -> None:
    """Another process holds a profile (an event changing its time zone, not committed
    yet): the arming waits for it and arms 09:00 in the new zone, not the old one."""
    import threading

    clock = FakeClock(T0)  # 09:00 UTC: the next firing is tomorrow's
    wiring = _wiring(sql_store, tmp_path, DAILY, clock)
    _people(sql_store, 20)
    other = SqlStore(sql_store.url)
    holding, done = threading.Event(), threading.Event()

    def handle_elsewhere() -> None:
        try:
            with other.transaction():
                assert other.try_lock_profiles(["p00007"]) == {"p00007"}
                other.put_profile(Profile("p00007", {"email": "p7@example.com",
                                                     "timezone": "Asia/Tokyo"}))
                holding.set()
                done.wait(0.5)  # still handling when the arming starts
        finally:
            other.close()

    thread = threading.Thread(target=handle_elsewhere)
    thread.start()
    try:
        assert holding.wait(10)
        assert arm_time_entries(wiring.runner, sql_store, clock.now()) == 20
    finally:
        done.set()
        thread.join(10)
    due = {t.profile_id: t.due_at for t in sql_store.due_timers(T0 + timedelta(days=3), 100)}
    assert due["p00007"] == T0 + timedelta(hours=24 - 9)  # 09:00 in Tokyo is 00:00 UTC
    assert due["p00006"] == T0 + timedelta(days=1)
