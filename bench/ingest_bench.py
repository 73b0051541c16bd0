"""Event ingest through the Segment-compatible API, against raw sqlite3 (not run in CI).

    .venv/bin/python bench/ingest_bench.py                 # 20,000 events
    .venv/bin/python bench/ingest_bench.py --events 5000 --track 500

The same N Segment track events (unique messageId each, userId over ~1,000 users, a
realistic properties and context dict), in batches of 100, stored three ways in one run:

1. baseline: the stdlib sqlite3 module on a fresh WAL file (`synchronous=NORMAL`), the
   rows the store writes per event (an `events` row: source, unique message_id,
   profile_id, JSON text body, received_at; and an `inbox` row: profile_id, JSON text
   event, status, attempts, created_at; same indexes), orjson (as the store) for each body in the
   timed loop, `executemany` in one transaction per batch of 100; the median of 3 runs
   (it is short), each on a fresh file;
2. in process: the FastAPI app (`engine.api.create_app`) over a fresh `SqlStore` file,
   called in process through `httpx.AsyncClient` on `httpx.ASGITransport`, posting
   `/v1/batch` bodies of 100 events (serialized before the clock starts); target:
   (2) >= 0.25 x (1). The same through Starlette's `TestClient` is printed too: it runs
   each request through a blocking thread portal, which costs more than the API itself;
3. over real HTTP: the same app under uvicorn (h11, in a thread of this process, on a
   free loopback port, access log off), an `httpx.Client` with keep-alive posting the
   same kind of batches; target: (3) >= 0.1 x (1).

Each API run ends by checking that the store holds exactly N pending inbox rows and N
event rows, and that posting a batch again adds nothing (dedupe on messageId).

Also printed, for information: the baseline with only the events table (one row per
event); `SqlStore.accept_events` called directly with events normalized beforehand (the
store's share of (2)); `/v1/batch` in process through `TestClient` (the harness's
thread portal added to (2)); and
single-event `/v1/track` in process (`--track`, 2,000 events) through both clients.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from engine.api import create_app  # noqa: E402
from engine.core.times import iso  # noqa: E402
from engine.runtime.events import normalize  # noqa: E402
from engine.store import SqlStore  # noqa: E402

BATCH = 100
USERS = 1_000
SOURCE = "bench"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EVENT_NAMES = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed",
               "Page Viewed", "Cart Viewed", "Coupon Applied", "Signed Up")
CATEGORIES = ("shoes", "shirts", "hats", "bags", "socks")
CONTEXT = {"library": {"name": "analytics-python", "version": "2.3.3"},
           "ip": "203.0.113.7", "locale": "en-US", "timezone": "Europe/Berlin",
           "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) Chrome/124.0 Safari/537.36"}

RAW_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY, source VARCHAR(255) NOT NULL, message_id VARCHAR(255) NOT NULL,
    profile_id VARCHAR(255) NOT NULL, body TEXT NOT NULL, received_at DATETIME NOT NULL,
    CONSTRAINT uq_events_source_message UNIQUE (source, message_id));
CREATE INDEX ix_events_profile_id ON events (profile_id);
CREATE TABLE inbox (
    id INTEGER PRIMARY KEY, profile_id VARCHAR(255) NOT NULL, event TEXT NOT NULL,
    status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, lease_owner VARCHAR(255),
    lease_until DATETIME, created_at DATETIME NOT NULL);
CREATE INDEX ix_inbox_profile_id ON inbox (profile_id);
CREATE INDEX ix_inbox_lease_until ON inbox (lease_until);
"""


# --- the workload ----------------------------------------------------------------------

def make_events(n: int, tag: str, seed: int) -> list[dict[str, Any]]:
    """`n` Segment track events as a client library sends them, each messageId unique."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        price = round(rng.uniform(5, 250), 2)
        quantity = rng.randint(1, 4)
        events.append({
            "type": "track",
            "event": rng.choice(EVENT_NAMES),
            "userId": f"user-{rng.randrange(USERS):04d}",
            "messageId": f"{tag}-{i:07d}-{uuid.uuid4().hex}",
            "timestamp": iso(T0 + timedelta(seconds=i * 0.5)),
            "properties": {"product_id": f"sku-{rng.randrange(5000):05d}",
                           "category": rng.choice(CATEGORIES), "price": price,
                           "quantity": quantity, "revenue": round(price * quantity, 2),
                           "currency": "EUR", "coupon": rng.choice((None, "SPRING10")),
                           "cart_id": uuid.uuid4().hex[:12]},
            "context": CONTEXT,
        })
    return events


def batches(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [events[i:i + BATCH] for i in range(0, len(events), BATCH)]


def batch_bodies(events: list[dict[str, Any]]) -> list[bytes]:
    """`/v1/batch` request bodies, serialized up front (the client's cost is not timed)."""
    sent_at = iso(T0 + timedelta(hours=3))
    return [json.dumps({"batch": chunk, "sentAt": sent_at}, separators=(",", ":")).encode()
            for chunk in batches(events)]


# --- 1. raw sqlite3 --------------------------------------------------------------------

def run_raw(path: Path, events: list[dict[str, Any]], *, inbox: bool) -> float:
    """Seconds to store `events`: an events row (+ an inbox row) each, a commit per batch.
    The bodies are serialized with the store's own serializer (engine.jsonfast: orjson),
    so the baseline is as fast as raw code with the same tools can be."""
    from engine.jsonfast import dumps

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(RAW_SCHEMA)
    insert_event = ("INSERT INTO events (source, message_id, profile_id, body, received_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, message_id) DO NOTHING")
    insert_inbox = ("INSERT INTO inbox (profile_id, event, status, attempts, lease_owner, "
                    "lease_until, created_at) VALUES (?, ?, 'pending', 0, NULL, NULL, ?)")
    start = time.perf_counter()
    for chunk in batches(events):
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert_event, [(SOURCE, ev["messageId"], ev["userId"],
                                         dumps(ev), now) for ev in chunk])
        if inbox:
            conn.executemany(insert_inbox, [(ev["userId"], dumps(ev), now)
                                            for ev in chunk])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    rows = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert rows == len(events), (rows, len(events))
    return elapsed


# --- 2. and 3. the API ----------------------------------------------------------------

def new_store(path: Path) -> tuple[SqlStore, str]:
    store = SqlStore(f"sqlite:///{path}", create=True)
    return store, store.create_key(SOURCE)


def new_app(store: SqlStore) -> FastAPI:
    return create_app(store, lambda: datetime.now(UTC), new_id=lambda: uuid.uuid4().hex)


def auth_headers(key: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def event_rows(store: SqlStore) -> int:
    with store.sql_engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())


def check_store(store: SqlStore, n: int, what: str) -> None:
    counts = store.inbox_counts()
    assert counts == {"pending": n}, (what, counts)
    assert event_rows(store) == n, (what, event_rows(store))


def post_all(client: httpx.Client, path: str, bodies: list[bytes],
             headers: dict[str, str]) -> float:
    start = time.perf_counter()
    for body in bodies:
        response = client.post(path, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text}")
    return time.perf_counter() - start


def check_dedupe(client: httpx.Client, store: SqlStore, body: bytes,
                 headers: dict[str, str], n: int, what: str) -> None:
    response = client.post("/v1/batch", content=body, headers=headers)
    assert response.status_code == 200, (what, response.status_code, response.text)
    check_store(store, n, f"{what} after posting a batch again")


def run_inprocess(path: Path, events: list[dict[str, Any]]) -> float:
    store, key = new_store(path)
    headers = auth_headers(key)
    bodies = batch_bodies(events)
    try:
        with TestClient(new_app(store)) as client:
            elapsed = post_all(client, "/v1/batch", bodies, headers)
            check_store(store, len(events), "in process")
            check_dedupe(client, store, bodies[0], headers, len(events), "in process")
    finally:
        store.close()
    return elapsed


def run_track(path: Path, events: list[dict[str, Any]]) -> float:
    store, key = new_store(path)
    headers = auth_headers(key)
    bodies = [json.dumps(ev, separators=(",", ":")).encode() for ev in events]
    try:
        with TestClient(new_app(store)) as client:
            elapsed = post_all(client, "/v1/track", bodies, headers)
            check_store(store, len(events), "single track")
    finally:
        store.close()
    return elapsed


def run_store_direct(path: Path, events: list[dict[str, Any]]) -> float:
    store, _ = new_store(path)
    received = datetime.now(UTC)
    normalized = [normalize(ev, now=received, message_id=uuid.uuid4().hex) for ev in events]
    try:
        start = time.perf_counter()
        for chunk in batches(normalized):
            store.accept_events(chunk, SOURCE)
        elapsed = time.perf_counter() - start
        check_store(store, len(events), "accept_events direct")
    finally:
        store.close()
    return elapsed


async def post_all_async(app: FastAPI, path: str, bodies: list[bytes],
                         headers: dict[str, str]) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        start = time.perf_counter()
        for body in bodies:
            response = await client.post(path, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text}")
        return time.perf_counter() - start


def run_asgi(path: Path, events: list[dict[str, Any]], route: str) -> float:
    """In process without TestClient: httpx.AsyncClient on ASGITransport, one event loop."""
    store, key = new_store(path)
    if route == "/v1/batch":
        bodies = batch_bodies(events)
    else:
        bodies = [json.dumps(ev, separators=(",", ":")).encode() for ev in events]
    try:
        elapsed = asyncio.run(post_all_async(new_app(store), route, bodies, auth_headers(key)))
        check_store(store, len(events), f"{route} on ASGITransport")
    finally:
        store.close()
    return elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn in a thread on a free loopback port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def run_http(path: Path, events: list[dict[str, Any]]) -> float:
    store, key = new_store(path)
    headers = auth_headers(key)
    bodies = batch_bodies(events)
    try:
        with serving(new_app(store)) as url, httpx.Client(base_url=url, timeout=30) as client:
            elapsed = post_all(client, "/v1/batch", bodies, headers)
            check_store(store, len(events), "over HTTP")
            check_dedupe(client, store, bodies[0], headers, len(events), "over HTTP")
    finally:
        store.close()
    return elapsed


def run_raw_median(workdir: Path, events: list[dict[str, Any]], *, inbox: bool,
                   runs: int = 3) -> float:
    name = "raw" if inbox else "raw_events"
    return statistics.median(run_raw(workdir / f"{name}_{i}.db", events, inbox=inbox)
                             for i in range(runs))


def line(what: str, n: int, elapsed: float, unit: str = "events") -> float:
    rate = n / elapsed
    print(f"  {what:<48} {n:>7,} in {elapsed:6.2f} s = {rate:>9,.0f} {unit}/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per run")
    parser.add_argument("--track", type=int, default=2_000,
                        help="events for the single-event /v1/track run")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args()
    n = args.events

    workdir = Path(tempfile.mkdtemp(prefix="ingest_bench_", dir=args.dir))
    try:
        print(f"SQLite {sqlite3.sqlite_version}; {n:,} Segment track events over {USERS:,} "
              f"users, batches of {BATCH}; files in {workdir}")
        events = make_events(n, "inproc", seed=1)
        size = sum(len(b) for b in batch_bodies(events)) / n
        print(f"  about {size:,.0f} bytes of JSON per event")

        raw_s = run_raw_median(workdir, events, inbox=True)
        raw_rate = line("raw sqlite3 executemany, events + inbox rows", n, raw_s)
        print(f"  {'':<48} {'':>7}    {'':>6}   = {2 * n / raw_s:>9,.0f} rows/s")
        line("raw sqlite3, events rows only (info)", n,
             run_raw_median(workdir, events, inbox=False))
        direct = line("SqlStore.accept_events direct (info)", n,
                      run_store_direct(workdir / "direct.db", events))
        inproc = line("API /v1/batch in process (TestClient, info)", n,
                      run_inprocess(workdir / "inproc.db", events))
        asgi = line("API /v1/batch in process (ASGITransport)", n,
                    run_asgi(workdir / "asgi.db", make_events(n, "asgi", seed=4), "/v1/batch"))
        http = line("API /v1/batch over HTTP (uvicorn + httpx)", n,
                    run_http(workdir / "http.db", make_events(n, "http", seed=2)))
        track = line("API /v1/track in process, TestClient (info)", args.track,
                     run_track(workdir / "track.db", make_events(args.track, "track", 3)))
        track_asgi = line("API /v1/track in process, ASGITransport (info)", args.track,
                          run_asgi(workdir / "track_asgi.db",
                                   make_events(args.track, "track_asgi", 5), "/v1/track"))
        print(f"  checks: {n:,} pending inbox rows and {n:,} event rows after each batch run, "
              "unchanged after posting a batch again")
        print(f"  accept_events is {direct / raw_rate:.2f} x raw; the API in process is "
              f"{inproc / direct:.2f} x accept_events ({asgi / direct:.2f} without TestClient); "
              f"HTTP is {http / inproc:.2f} x in process")
        print(f"  per request: /v1/batch of {BATCH} {1e3 * BATCH / inproc:.2f} ms in process "
              f"(TestClient), {1e3 * BATCH / asgi:.2f} ms (ASGITransport), "
              f"{1e3 * BATCH / http:.2f} ms over HTTP; /v1/track "
              f"{1e3 / track:.2f} ms (TestClient), {1e3 / track_asgi:.2f} ms (ASGITransport)")
        # In process is the ASGI app called in this process (httpx.ASGITransport).
        # Starlette's TestClient adds a thread-portal hop per request (~2 ms here, more
        # than the whole API layer): a property of the test harness, shown for reference.
        print(f"  in process through TestClient instead (info): {inproc / raw_rate:.3g} x raw")
        print(f"RESULT ingest_inprocess_vs_raw_sqlite ratio={asgi / raw_rate:.3g} target=0.25")
        print(f"RESULT ingest_http_vs_raw_sqlite ratio={http / raw_rate:.3g} target=0.1")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
