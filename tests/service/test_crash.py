"""Crash safety: a `journeyman worker` process is SIGKILLed at random points while events
and timers flow, and restarted. Afterwards every accepted event was handled exactly
once, no timer was lost or fired twice, and no step ran twice (asserted on the store
and the outbox, not on the delivery sink, which is at-least-once by design).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.dispatch import SEND_CHUNK
from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.testing import TEST_SECRET
from tests.engine.helpers import stub_email, write_folder

PROFILES = 40
ORDERS = 4  # "Order Completed" events per profile, counted by computed traits
KILLS = 5

JOURNEY = """\
journey: crash
version: 1
entry:
  event: Ping
steps:
  - id: hello
    send: {channel: email, template: note}
  - id: count_one
    update_profile: {increment: {steps_run: 1}}
  - id: pause
    wait: 1s
  - id: count_two
    update_profile: {increment: {steps_run: 1}}
  - id: middle
    send: {channel: email, template: note}
  - id: pause_again
    wait: 2s
  - id: bye
    send: {channel: email, template: note}
"""
SENDS = ("hello", "middle", "bye")


def _events() -> list[dict[str, Any]]:
    raw: list[dict[str, Any]] = []
    for n in range(PROFILES):
        user = f"u{n}"
        raw.append({"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}})
        raw.append({"type": "track", "userId": user, "event": "Ping"})
        raw += [{"type": "track", "userId": user, "event": "Order Completed",
                 "properties": {"revenue": 10}} for _ in range(ORDERS)]
    now = datetime.now(UTC)
    return [normalize(r, now=now, message_id=f"m{i}") for i, r in enumerate(raw)]


class WorkerProcess:
    def __init__(self, folder: Path, url: str, sink: Path, log: Path) -> None:
        self.args = [sys.executable, "-m", "engine", "worker", "--journeys", str(folder),
                     "--db", url, "--sends", f"file:{sink}", "--tick", "0.05", "--lease", "1"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # PostgreSQL needs a configured secret (no generated one beside a file there)
        env = {**os.environ, "JOURNEYMAN_SECRET": TEST_SECRET}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out, env=env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _settled(store: SqlStore) -> bool:
    return (store.inbox_counts().get("pending", 0) == 0 and store.pending_timers() == 0
            and store.outbox_counts().get("pending", 0) == 0
            and sum(store.outbox_counts().values()) == PROFILES * len(SENDS))


@pytest.mark.slow
def test_sigkilled_worker_loses_nothing_and_repeats_nothing(tmp_path: Path,
                                                            store_url: str) -> None:
    folder = write_folder(tmp_path / "journeys", {"crash": JOURNEY}, {"note": stub_email("note")})
    url = store_url
    sink, log = tmp_path / "sends.jsonl", tmp_path / "worker.log"
    store = SqlStore(url, create=True)
    events = _events()
    worker = WorkerProcess(folder, url, sink, log)
    rng = random.Random(int(os.environ.get("CRASH_SEED", "7")))

    def feed() -> None:  # the API's path into the store, in batches, while the worker runs
        for start in range(0, len(events), 20):
            store.accept_events(events[start:start + 20], "site")
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    try:
        worker.start()
        feeder.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.5))
            worker.kill()
            worker.start()
        feeder.join()
        deadline = time.monotonic() + 60
        while not _settled(store):
            assert time.monotonic() < deadline, (store.inbox_counts(), store.pending_timers(),
                                                 store.outbox_counts(), log.read_text()[-3000:])
            time.sleep(0.2)
    finally:
        worker.stop()
        feeder.join()

    try:
        # every accepted event handled exactly once: all acked, and counted once
        assert store.inbox_counts() == {}
        assert store.accept_events(events, "site") == []  # and none is taken again
        for n in range(PROFILES):
            profile = store.get_profile(f"u{n}")
            assert profile is not None
            assert profile.computed["orders_count"] == ORDERS, profile
            assert profile.computed["total_spent"] == 10 * ORDERS, profile
            # no step ran twice: each update_profile step incremented once
            assert profile.traits["steps_run"] == 2, profile
            [enrollment] = store.enrollments(f"u{n}", "crash")
            assert enrollment.status == "completed", enrollment
            assert all(count == 1 for count in enrollment.visits.values()), enrollment.visits
        # no timer lost (all enrollments completed) or fired twice (each send once)
        assert store.pending_timers() == 0
        records = store.outbox_records()
        assert Counter(r.status for r in records) == {"sent": PROFILES * len(SENDS)}
        assert Counter(r.entry.step for r in records) == dict.fromkeys(SENDS, PROFILES)
        assert len({r.entry.key for r in records}) == len(records)
        assert store.recorded_decisions(kinds=("skipped", "deferred", "failed")) == []
        # the decision log tells each send once, however often a kill made it go out
        told = [d.details["key"] for d in store.recorded_decisions(kinds=("sent",))]
        assert sorted(told) == sorted(r.entry.key for r in records)
        # the sink saw every send; a kill between delivery and mark_sent may repeat some,
        # with the same key (at-least-once delivery with idempotency keys)
        delivered = Counter(line.split('"key": "')[1].split('"')[0]
                            for line in sink.read_text().splitlines())
        assert set(delivered) == {r.entry.key for r in records}
        # A kill between a chunk's delivery and the write of its outcomes repeats that
        # chunk: at most SEND_CHUNK sends per kill (a run here repeated 11 with 5 kills).
        assert sum(delivered.values()) - len(delivered) <= KILLS * SEND_CHUNK
    finally:
        store.close()
