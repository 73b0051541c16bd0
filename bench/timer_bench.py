"""Timer claim-and-fire throughput on SQLite (not run in CI).

    .venv/bin/python bench/timer_bench.py               # 1,000,000 pending, 100,000 due
    .venv/bin/python bench/timer_bench.py --timers 100000

Three ways to fire the timers that came due, in the same run:

1. `SqlStore.claim_due_timers` in batches, each batch claimed in one `transaction()`,
   each timer handed to a trivial callback;
2. the same claim written by hand with the sqlite3 module on the same schema (a copy of
   the same file): `DELETE ... WHERE id IN (SELECT ... ORDER BY due_at LIMIT n)
   RETURNING ...`, one transaction per batch; target: (1) >= 0.5 x (2);
3. one APScheduler 3.x job per delay (BackgroundScheduler, MemoryJobStore, date
   trigger, the settings design.md asks for): each delay costs an `add_job` on the
   running scheduler and a firing, so its rate is 1 / (1/add_rate + 1/fire_rate). It is
   measured on a smaller N (`--aps`, 20,000 jobs, the same share due) and the rates are
   taken as if they held at the full N, which flatters it (the job store's inserts and
   removals are O(n)); target: (1) >= 20 x (3).
   For fairness the run also prints SqlStore's own insert rate (`add_timer`, one per
   transaction, as the runtime does) and insert + claim-and-fire against (3).

Also printed: bytes per pending timer (database file size / rows, after a checkpoint).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.model import ScheduleTimer  # noqa: E402
from engine.store import SqlStore  # noqa: E402

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DATETIME on SQLite (UTC)
NS = uuid.UUID("6f1d7c1e-3f0a-4c1b-9a55-4a4d1b0c0001")
JOURNEYS = ("cart_abandonment", "welcome_series", "win_back", "post_purchase")


def build(path: Path, total: int, due: int, seed: int = 7) -> datetime:
    """A migrated database with `total` timers, `due` of them due at the returned time."""
    SqlStore(f"sqlite:///{path}", create=True).close()
    rng = random.Random(seed)
    now = T0 + timedelta(days=1)
    # `due` timers spread over the day before `now`, the rest over the 30 days after it
    offsets = [-(i + 1) * 86400.0 / due for i in range(due)]
    offsets += [(i + 1) * 30 * 86400.0 / max(1, total - due) for i in range(total - due)]
    rng.shuffle(offsets)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN")
    rows = []
    for i, off in enumerate(offsets):
        enrollment = str(uuid.uuid5(NS, f"e{i}"))
        step = f"wait_{i % 5}"
        rows.append((f"{enrollment}:{step}:0", enrollment, f"user-{i % (total // 3 + 1)}",
                     JOURNEYS[i % len(JOURNEYS)], step, 0,
                     (now + timedelta(seconds=off)).astimezone(UTC).strftime(SQLITE_FORMAT)))
        if len(rows) == 50_000:
            _insert(conn, rows)
            rows = []
    _insert(conn, rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return now


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.executemany("INSERT INTO timers (key, enrollment_id, profile_id, journey, step, "
                     "occurrence, due_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def size_per_row(path: Path, rows: int) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size / rows


def run_store(path: Path, now: datetime, batch: int) -> tuple[int, float]:
    store = SqlStore(f"sqlite:///{path}")
    fired = 0

    def fire(timer: ScheduleTimer) -> None:
        nonlocal fired
        fired += 1

    start = time.perf_counter()
    while True:
        with store.transaction():
            claimed = store.claim_due_timers(now, batch)
            for timer in claimed:
                fire(timer)
        if not claimed:
            break
    elapsed = time.perf_counter() - start
    store.close()
    return fired, elapsed


def run_raw(path: Path, now: datetime, batch: int) -> tuple[int, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")  # as SqlStore: a fair baseline
    stamp = now.astimezone(UTC).strftime(SQLITE_FORMAT)
    # The same claim as SqlStore's, by the table's primary key (due_at, key).
    sql = ("DELETE FROM timers WHERE (due_at, key) IN (SELECT due_at, key FROM timers "
           "WHERE due_at <= ? ORDER BY due_at, key LIMIT ?) RETURNING key, enrollment_id, "
           "profile_id, journey, step, occurrence, due_at")
    fired = 0

    def fire(row: tuple[object, ...]) -> None:
        nonlocal fired
        fired += 1

    start = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(sql, (stamp, batch)).fetchall()
        for row in rows:
            fire(row)
        conn.execute("COMMIT")
        if not rows:
            break
    elapsed = time.perf_counter() - start
    conn.close()
    return fired, elapsed


_FIRED = 0
_DONE = threading.Event()
_DUE = 0
_LOCK = threading.Lock()


def _fire(key: str) -> None:
    """The job APScheduler runs (module level: a persistent job store pickles a reference)."""
    global _FIRED  # noqa: PLW0603 - a bench counter shared with APScheduler's threads
    with _LOCK:
        _FIRED += 1
        if _FIRED == _DUE:
            _DONE.set()


def run_apscheduler(n: int, due: int, jobstore_db: Path | None = None) -> tuple[float, float]:
    """(add_job rate on a running scheduler growing to `n` pending jobs, firing rate of
    `due` jobs that are due among them). Both phases are what one job per delay costs.
    With `jobstore_db`, jobs live in APScheduler's SQLAlchemyJobStore on that SQLite file:
    the durable setup, comparable with a timers table; without, in memory (lost on a
    restart, so not an alternative for delays of days, but shown for scale)."""
    global _FIRED, _DUE
    from apscheduler.schedulers.background import BackgroundScheduler

    _FIRED, _DUE = 0, due
    _DONE.clear()
    stores: dict[str, object] = {}
    if jobstore_db is not None:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        stores["default"] = SQLAlchemyJobStore(url=f"sqlite:///{jobstore_db}")
    scheduler = BackgroundScheduler(timezone=UTC, jobstores=stores, job_defaults={
        "misfire_grace_time": None, "coalesce": True, "max_instances": 1})
    scheduler.start()
    future = datetime.now(UTC) + timedelta(days=1)
    start = time.perf_counter()
    for i in range(n - due):  # as in production: delays are added to a running scheduler
        scheduler.add_job(_fire, "date", run_date=future + timedelta(seconds=i),
                          args=(f"k{i}",), id=f"k{i}")
    add_rate = (n - due) / (time.perf_counter() - start)
    scheduler.pause()
    base = datetime.now(UTC) - timedelta(seconds=1)
    for i in range(due):  # these are due: time only how fast they fire
        scheduler.add_job(_fire, "date", run_date=base + timedelta(microseconds=i),
                          args=(f"d{i}",), id=f"d{i}")
    start = time.perf_counter()
    scheduler.resume()
    finished = _DONE.wait(timeout=600)
    fire_rate = _FIRED / (time.perf_counter() - start)
    scheduler.shutdown(wait=False)
    if not finished:
        print(f"  APScheduler fired only {_FIRED} of {due} in 600 s")
    return add_rate, fire_rate


def run_store_inserts(path: Path, n: int) -> float:
    """add_timer one at a time, a transaction each (how the runtime schedules a wait)."""
    store = SqlStore(f"sqlite:///{path}")
    now = T0 + timedelta(days=90)
    start = time.perf_counter()
    for i in range(n):
        with store.transaction():
            store.add_timer(ScheduleTimer(f"bench-{i}:wait:0", f"bench-{i}", f"user-{i}",
                                          "cart_abandonment", "wait", 0,
                                          now + timedelta(seconds=i)))
    rate = n / (time.perf_counter() - start)
    store.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timers", type=int, default=1_000_000, help="pending timers")
    parser.add_argument("--due", type=int, default=None, help="how many are due (10%%)")
    parser.add_argument("--batch", type=int, default=500, help="timers per claim")
    parser.add_argument("--aps", type=int, default=20_000, help="APScheduler jobs to time")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()
    total = args.timers
    due = args.due if args.due is not None else max(1, total // 10)

    workdir = Path(tempfile.mkdtemp(prefix="timer_bench_", dir=args.dir))
    try:
        print(f"SQLite {sqlite3.sqlite_version}; {total:,} pending timers, {due:,} due; "
              f"claims of {args.batch}; files in {workdir}")
        store_db, raw_db = workdir / "store.db", workdir / "raw.db"
        t = time.perf_counter()
        now = build(store_db, total, due)
        print(f"  built in {time.perf_counter() - t:.1f} s (sqlite3 executemany)")
        per_row = size_per_row(store_db, total)
        print(f"  database: {store_db.stat().st_size / 2**20:.1f} MiB, "
              f"{per_row:.0f} bytes per pending timer (the table, clustered by due time, "
              "and its key index)")
        shutil.copyfile(store_db, raw_db)

        fired, elapsed = run_store(store_db, now, args.batch)
        assert fired == due, (fired, due)
        store_rate = fired / elapsed
        print(f"  SqlStore.claim_due_timers : {fired:,} fired in {elapsed:.2f} s "
              f"= {store_rate:,.0f} timers/s")

        fired, elapsed = run_raw(raw_db, now, args.batch)
        assert fired == due, (fired, due)
        raw_rate = fired / elapsed
        print(f"  raw sqlite3 DELETE..RETURNING: {fired:,} fired in {elapsed:.2f} s "
              f"= {raw_rate:,.0f} timers/s")

        aps_n = args.aps
        aps_due = max(1, aps_n * due // total)
        add_rate, fire_rate = run_apscheduler(aps_n, aps_due)
        print(f"  APScheduler, a job per delay, MemoryJobStore ({aps_n:,} jobs, {aps_due:,} due; "
              f"rates scaled as if they held at {total:,}, which flatters it):")
        print(f"      add_job on a running scheduler {add_rate:,.0f}/s, firing {fire_rate:,.0f}/s "
              f"(claim-and-fire is {store_rate / fire_rate:.1f} x; jobs in memory are lost on "
              "a restart)")
        durable_n = max(10, aps_n // 4)
        durable_due = max(1, durable_n * due // total)
        d_add, d_fire = run_apscheduler(durable_n, durable_due, workdir / "apscheduler.db")
        print(f"  APScheduler, a job per delay, SQLAlchemyJobStore on SQLite ({durable_n:,} jobs, "
              f"{durable_due:,} due): add_job {d_add:,.0f}/s, firing {d_fire:,.0f}/s")

        insert_rate = run_store_inserts(store_db, min(20_000, total))
        both = 1 / (1 / insert_rate + 1 / store_rate)
        d_both = 1 / (1 / d_add + 1 / d_fire)
        print(f"  SqlStore.add_timer one per transaction: {insert_rate:,.0f}/s; insert + "
              f"claim-and-fire {both:,.0f} timers/s vs durable APScheduler add + fire "
              f"{d_both:,.0f}/s = {both / d_both:.1f} x")

        print(f"RESULT timer_claim_vs_raw ratio={store_rate / raw_rate:.2f} target=0.5")
        print(f"RESULT timer_claim_vs_apscheduler ratio={store_rate / d_fire:.1f} target=20")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
