"""Tracked-click redirects per second against a bare 302 in the same server (not run in CI).

    .venv/bin/python bench/click_bench.py                  # 4 s per phase, 3 rounds
    .venv/bin/python bench/click_bench.py --seconds 2 --rounds 1 --concurrency 8

One server process (uvicorn, the API of `create_app` over a SqlStore on a SQLite file,
tracking on) serves two endpoints:

1. baseline: `GET /bare` -- a route added to the same app that answers 302 to a fixed
   URL and does nothing else;
2. the engine: `GET /c/<token>` -- a tracked link of a message marked sent an hour ago:
   the token is verified (HMAC), the message looked up, the scanner rule applied (a
   browser's User-Agent, long after delivery: a person's click), the engagement row and
   the person's `Email Clicked` event (events + inbox rows) written in one transaction,
   then the 302.

The client, in this process, runs `--concurrency` asyncio tasks over one httpx
connection pool for `--seconds` per phase, phases alternating bare/tracked each round;
the rates are medians over `--rounds`. Every tracked answer must be a 302 to the URL in
its token, and the store must afterwards hold one click engagement per tracked request.
Target: tracked >= 0.5 x bare (`RESULT click_redirect_vs_bare ratio=<x> target=0.5`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-" + "x" * 32
MESSAGES = 200
TARGET = "https://shop.example/cart?utm_source=bench"


def _prepare(db: str, base_url: str) -> list[str]:
    """A store with MESSAGES sent messages to MESSAGES people; their click paths."""
    from engine.core.model import Enrollment, Profile
    from engine.ports import OutboxEntry
    from engine.runtime.tracking import TrackingLinks
    from engine.runtime.unsubscribe import SigningSecret
    from engine.store import SqlStore
    from journeys.templating import Rendered

    sent_at = datetime.now(UTC) - timedelta(hours=1)
    store = SqlStore(db, create=True)
    links = TrackingLinks([SigningSecret(SECRET)], base_url)
    paths = []
    with store.transaction():
        for i in range(MESSAGES):
            pid, key = f"p{i}", f"enr{i}:reminder:1"
            store.put_profile(Profile(pid, {"email": f"{pid}@example.com"}))
            store.link_identity("user_id", pid, pid)
            store.put_enrollment(Enrollment(f"enr{i}", "abandoned_cart", 1, pid, "clicked",
                                            "active", sent_at, sent_at, {}))
            store.enqueue_send(OutboxEntry(key, f"enr{i}", pid, "abandoned_cart", "reminder",
                                           "email", f"{pid}@example.com",
                                           Rendered("cart_reminder", "email", "s"), sent_at))
            store.mark_sent(key, sent_at)
            paths.append(links.click_url(key, 1, TARGET).removeprefix(base_url))
    store.close()
    return paths


def serve(db: str, port: int) -> None:
    """The server process: the API with tracking, plus the bare 302 route."""
    import uvicorn
    from fastapi.responses import Response

    from engine.api import create_app
    from engine.ports import SystemClock, UuidIds
    from engine.runtime.tracking import TrackingLinks
    from engine.runtime.unsubscribe import SigningSecret
    from engine.store import SqlStore

    store = SqlStore(db)
    links = TrackingLinks([SigningSecret(SECRET)], f"http://127.0.0.1:{port}")
    app = create_app(store, SystemClock().now, new_id=UuidIds().new_id, tracking=links)

    @app.get("/bare")
    async def bare() -> Response:
        return Response(status_code=302, headers={"Location": TARGET})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _hammer(url: str, paths: list[str], seconds: float, concurrency: int) -> int:
    done = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30,
                                 headers={"User-Agent": "Mozilla/5.0 (bench)"}) as client:

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.monotonic() < stop:
                answer = await client.get(paths[i % len(paths)])
                if answer.status_code != 302 or answer.headers["location"] != TARGET:
                    raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text}")
                done += 1
                i += concurrency

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    url = f"http://127.0.0.1:{port}"
    folder = Path(tempfile.mkdtemp(prefix="click-bench-"))
    db = f"sqlite:///{folder / 'clicks.db'}"
    paths = _prepare(db, url)
    server = subprocess.Popen([sys.executable, __file__, "--serve", db, str(port)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the bench server did not start")
            time.sleep(0.1)
        bare_rates, tracked_rates, tracked_total = [], [], 0
        for _ in range(args.rounds):
            n = asyncio.run(_hammer(url, ["/bare"], args.seconds, args.concurrency))
            bare_rates.append(n / args.seconds)
            n = asyncio.run(_hammer(url, paths, args.seconds, args.concurrency))
            tracked_rates.append(n / args.seconds)
            tracked_total += n
    finally:
        server.terminate()
        server.wait(10)

    from engine.store import SqlStore

    store = SqlStore(db)
    clicks = [e for e in store.engagements("abandoned_cart") if e.kind == "click" and e.human]
    store.close()
    if len(clicks) != tracked_total:
        raise SystemExit(f"{tracked_total} tracked redirects but {len(clicks)} clicks recorded")
    bare, tracked = statistics.median(bare_rates), statistics.median(tracked_rates)
    print(f"bare 302:      {bare:8.0f} redirects/s  (rounds: "
          f"{', '.join(f'{r:.0f}' for r in bare_rates)})")
    print(f"tracked click: {tracked:8.0f} redirects/s  (rounds: "
          f"{', '.join(f'{r:.0f}' for r in tracked_rates)}; {len(clicks)} clicks recorded)")
    print(f"RESULT click_redirect_vs_bare ratio={tracked / bare:.3g} target=0.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
