"""Many workers on one PostgreSQL (issue 11): four `journeyman worker` processes share
5,000 profiles' interleaved events and short timers while one of them is SIGKILLed and
restarted every few seconds. Asserted from the database afterwards: every profile's
events were handled in order and exactly once, every timer fired once, no send was
queued twice. And the operations endpoints: `/metrics` parses, `/readyz` follows the
database."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.core import enrollment_id
from engine.ports import OutboxRecord
from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.testing import TEST_SECRET
from tests.engine.helpers import stub_email, write_folder
from tests.net import free_port
from tests.store.conftest import make_pg_store

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PROFILES = 5000
STEPS = 3  # "Step" events per profile, each carrying its sequence number
WORKERS = 4
# Seconds between two SIGKILLs. A restart imports and compiles everything (seconds of
# CPU on a slow 2-core machine), so killing every 1-3 s made restarts most of the work.
KILL_EVERY = (2.0, 5.0)

SEQ = """\
journey: seq
version: 1
entry: {event: Step}
re_entry: always
steps:
  - id: note
    set_data: {seq: "{{ event.properties.seq }}"}
"""
COUNTDOWN = """\
journey: countdown
version: 1
entry: {event: Countdown}
steps:
  - {id: pause, wait: 1s}
  - id: ring
    send: {channel: email, template: note}
"""


def _events() -> list[dict[str, Any]]:
    return steps_after([{"type": "identify", "userId": f"u{n}",
                         "traits": {"email": f"u{n}@example.com"}} for n in range(PROFILES)],
                       PROFILES, STEPS)


def steps_after(raw: list[dict[str, Any]], profiles: int,
                steps: int) -> list[dict[str, Any]]:
    """`raw`, then interleaved: round by round, every profile's next Step (its sequence
    number) and, after the first, a Countdown; normalized as the API would."""
    for step in range(steps):
        raw += [{"type": "track", "userId": f"u{n}", "event": "Step",
                 "properties": {"seq": step}} for n in range(profiles)]
        if step == 0:
            raw += [{"type": "track", "userId": f"u{n}", "event": "Countdown"}
                    for n in range(profiles)]
    now = datetime.now(UTC)
    return [normalize(r, now=now, message_id=f"m{i}") for i, r in enumerate(raw)]


class Worker:
    def __init__(self, folder: Path, url: str, tmp: Path, index: int,
                 http_port: int | None = None) -> None:
        self.args = [sys.executable, "-m", "engine", "worker", "--journeys", str(folder),
                     "--db", url, "--sends", f"file:{tmp / f'sends{index}.jsonl'}",
                     "--tick", "0.5", "--lease", "2", "--name", f"w{index}"]
        if http_port is not None:
            self.args += ["--http-port", str(http_port)]
        self.log = tmp / f"worker{index}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "JOURNEYMAN_SECRET": TEST_SECRET}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=out, env=env)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def feed_while_killing(store: SqlStore, events: list[dict[str, Any]], workers: list[Worker],
                       rng: random.Random, *, sent: int, chunk: int,
                       kill_every: tuple[float, float], seconds: float) -> int:
    """Start the workers, feed `events` through the API's path into the store `chunk`
    at a time while SIGKILLing a random worker (and starting it again) every
    `kill_every` seconds, until the inbox and the timers are empty and `sent` sends
    went out; then stop the workers. Returns how many kills there were."""
    kills = 0
    try:
        for w in workers:
            w.start()
        fed = 0
        next_kill = time.monotonic() + rng.uniform(*kill_every)
        deadline = time.monotonic() + seconds
        while True:
            if fed < len(events):
                store.accept_events(events[fed:fed + chunk], "site")
                fed += chunk
            if time.monotonic() > next_kill:
                victim = rng.choice(workers)
                victim.kill()
                victim.start()
                kills += 1
                next_kill = time.monotonic() + rng.uniform(*kill_every)
            counts = store.outbox_counts()
            if fed >= len(events) and not store.inbox_counts() and \
                    store.pending_timers() == 0 and counts.get("sent", 0) == sent:
                return kills
            assert time.monotonic() < deadline, (store.inbox_counts(), store.pending_timers(),
                                                 counts, workers[0].log.read_text()[-2000:])
            time.sleep(0.2)
    finally:
        for w in workers:
            w.stop()


def check_in_order_and_once(store: SqlStore, profiles: int,
                            steps: int) -> list[OutboxRecord]:
    """The `seq` and `countdown` journeys' enrollments and the outbox, after the run.
    Returns the outbox's records."""
    seq = ("entry_event -> 'properties' ->> 'seq'" if store.dialect == "postgresql"
           else "json_extract(entry_event, '$.properties.seq')")
    engine = create_engine(store.url)
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT profile_id, id, {seq} FROM enrollments "
                                 "WHERE journey = 'seq'")).all()
        countdown = conn.execute(text(
            "SELECT status, count(*) FROM enrollments WHERE journey = 'countdown' "
            "GROUP BY status")).all()
    engine.dispose()
    # Exactly once and in order: the k-th entry of a profile (whose enrollment id is
    # uuid5 of its occurrence k) was made by the event with sequence number k.
    assert len(rows) == profiles * steps
    assert set(Counter(pid for pid, _, _ in rows).values()) == {steps}
    out_of_order = [(pid, eid, seq) for pid, eid, seq in rows
                    if enrollment_id("seq", 1, pid, int(seq)) != eid]
    assert out_of_order == []
    # every timer fired once: every countdown completed, one send queued each
    assert dict(countdown) == {"completed": profiles}
    records = store.outbox_records()
    assert len(records) == profiles
    assert len({r.entry.key for r in records}) == profiles
    assert Counter(r.status for r in records) == {"sent": profiles}
    assert store.failures() == []
    return records


def test_four_workers_one_killed_again_and_again_keep_order_and_exactly_once(
        tmp_path: Path, pg_database: str) -> None:
    make_pg_store(pg_database).close()  # emptied
    folder = write_folder(tmp_path / "journeys", {"seq": SEQ, "countdown": COUNTDOWN},
                          {"note": stub_email("note")})
    store = SqlStore(pg_database)
    events = _events()
    workers = [Worker(folder, pg_database, tmp_path, i) for i in range(WORKERS)]
    rng = random.Random(int(os.environ.get("CRASH_SEED", "11")))
    feed_while_killing(store, events, workers, rng, sent=PROFILES, chunk=500,
                       kill_every=KILL_EVERY, seconds=400)

    try:
        engine = create_engine(pg_database)
        with engine.connect() as conn:
            # The dashboard's rollup (triggers, migration 0012; with the deltas not yet
            # folded, 0014), written by four workers' concurrent transactions, some
            # killed midway, agrees with the table.
            rollup = conn.execute(text(
                "SELECT journey, bucket, kind, step, variant, sum(n) FROM ("
                "SELECT journey, bucket, kind, step, variant, n FROM journey_rollup "
                "UNION ALL SELECT journey, bucket, kind, step, variant, n "
                "FROM journey_rollup_delta) r GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0 "
                "ORDER BY 1, 2, 3, 4, 5")).all()
            direct = conn.execute(text(
                "SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM enrollments e, LATERAL "
                "jm_rollup_rows(e.journey, e.entered_at, e.status, e.goal_reached_at IS NOT "
                "NULL, e.visits, e.variants, 1) r GROUP BY 1, 2, 3, 4, 5 "
                "ORDER BY 1, 2, 3, 4, 5")).all()
        engine.dispose()
        assert [tuple(r) for r in rollup] == [tuple(r) for r in direct]
        assert sum(r[5] for r in rollup if r[2] == "entered") == PROFILES * (STEPS + 1)
        records = check_in_order_and_once(store, PROFILES, STEPS)
        assert store.recorded_decisions(kinds=("skipped", "deferred", "failed")) == []
        # the decision log tells each send once, however often a kill made it go out
        told = [d.details["key"] for d in store.recorded_decisions(kinds=("sent",))]
        assert sorted(told) == sorted(r.entry.key for r in records)
    finally:
        store.close()


def test_worker_metrics_parse_and_readyz_follows_the_database(
        tmp_path: Path, pg_database: str) -> None:
    make_pg_store(pg_database).close()
    folder = write_folder(tmp_path / "journeys", {"countdown": COUNTDOWN},
                          {"note": stub_email("note")})
    port = free_port()
    worker = Worker(folder, pg_database, tmp_path, 0, http_port=port)
    store = SqlStore(pg_database)
    name = make_url(pg_database).database
    admin = create_engine(make_url(pg_database).set(database="postgres"),
                          isolation_level="AUTOCOMMIT")
    base = f"http://127.0.0.1:{port}"
    try:
        worker.start()
        _wait_for(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200)
        assert httpx.get(f"{base}/readyz", timeout=5).json() == {"ready": True}
        first = _scrape(f"{base}/metrics")  # nothing done yet: the known series, at 0
        for series in [("journeyman_failures_total", (("kind", "event"),)),
                       ("journeyman_sends_total", (("channel", "email"), ("outcome", "failed"))),
                       ("journeyman_transient_errors_total", (("kind", "statistics"),)),
                       ("journeyman_inbox_events", (("status", "parked"),)),
                       ("journeyman_journey_enrollments",
                        (("journey", "countdown"), ("status", "active")))]:
            assert first[series] == 0, series
        now = datetime.now(UTC)
        store.accept_events([normalize({"type": "track", "userId": f"p{i}", "event": "Countdown"},
                                       now=now, message_id=f"c{i}") for i in range(20)], "site")
        _wait_for(lambda: store.outbox_counts().get("skipped", 0) == 20)  # no address: skipped

        metrics = _scrape(f"{base}/metrics")
        assert metrics[("journeyman_events_handled_total", ())] == 20
        assert metrics[("journeyman_timers_fired_total", ())] == 20
        assert metrics[("journeyman_sends_total", (("channel", "email"), ("outcome", "skipped")))
                       ] == 20
        # the store's levels: read at most every 5 s (the first scrape's are kept so long)
        skipped = ("journeyman_outbox_rows", (("status", "skipped"),))
        _wait_for(lambda: _scrape(f"{base}/metrics")[skipped] == 20, seconds=15)
        metrics = _scrape(f"{base}/metrics")
        assert metrics[("journeyman_timers_pending", ())] == 0
        assert metrics[("journeyman_journey_enrollments",
                        (("journey", "countdown"), ("status", "completed")))] == 20
        assert ("journeyman_batch_size_count", (("kind", "events"),)) in metrics
        assert ("journeyman_handling_lag_seconds_count", ()) in metrics

        with admin.connect() as conn:  # the database goes away...
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"),
                         {"name": name})
        down = httpx.get(f"{base}/readyz", timeout=10)
        assert down.status_code == 503
        assert down.json()["ready"] is False
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # still up
        # /metrics still answers (it was a 500): the counters, and no levels but a 0
        up = ("journeyman_store_levels_up", ())
        _wait_for(lambda: _scrape(f"{base}/metrics")[up] == 0, seconds=20)
        during = _scrape(f"{base}/metrics")
        assert during[("journeyman_events_handled_total", ())] == 20
        assert ("journeyman_outbox_rows", (("status", "skipped"),)) not in during
        with admin.connect() as conn:  # ...and comes back
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        _wait_for(lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200)
        _wait_for(lambda: _scrape(f"{base}/metrics")[up] == 1, seconds=20)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        worker.stop()
        store.close()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(url, timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


def _wait_for(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
