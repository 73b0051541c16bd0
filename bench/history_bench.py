"""Work per event as one profile's history grows, on SQLite (not run in CI).

    .venv/bin/python bench/history_bench.py                  # the 50th vs the 2,000th event
    .venv/bin/python bench/history_bench.py --kb 2           # smaller orders
    .venv/bin/python bench/history_bench.py --late 500       # a shorter run

One customer's orders through the real runtime: `engine.service.Service` (SqlStore on a
fresh SQLite file, the bundled journeys, Runner, Worker, Dispatcher into counting
channels) driven synchronously on a fake clock (`engine.testing.FakeClock`). For each
event, `store.accept_events` (the store's half of the ingest path; the HTTP half costs
the same for every event and is left out) and then `worker.handle_events()`, which is
what is timed: the claim, and the event's transaction (identity, profile, computed
traits, the 12 journeys, enrollments, timers, outbox rows, the inbox ack). Between two
events, untimed, the clock moves on a day and due timers fire and due sends go out, as
`serve` would do in that day.

The workload: an identify (email, consent, time zone), then `Order Completed` events of
the same user, each about `--kb` (32) KB: the order's line items (product id, name,
category, price, quantity, image URL, attributes) up to that size. 32 KB is Segment's
limit per event and the size the issue measured; real orders are often a few KB
(`--kb 2`). The bundled `win_back` re-enters on every order (it exits on Order
Completed and has `re_entry: always`), `post_purchase` about every two weeks, so the
profile's enrollments, and the entry events stored with them, grow with its orders.

Figures: the median handling time of the profile's events `--early` +/- `--window`
(the 50th: events 40-60) and `--late` +/- `--window` (the 2,000th: 1,990-2,010),
`RESULT history_growth ratio=<t50/t2000> target=0.5` (the 2,000th may cost at most
twice the 50th); also the median every 250 events and the database size.

`--budget` (300 s): a runtime whose work grows with history needs about an hour to
reach the 2,000th event (0.4 s an event at the 300th, on the runtime of 2026-12-01), so
the run stops when the budget is spent and reports the last full window reached instead:
since that cost only grows, t50 / t_last is an upper bound of t50 / t2000. The RESULT is
printed with that bound when it is already under the target (a certain miss), and left
out otherwise (inconclusive: raise the budget). `--budget 0` always runs to the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.ports import Message  # noqa: E402
from engine.runtime.events import normalize  # noqa: E402
from engine.service import Service  # noqa: E402
from engine.testing import FakeClock  # noqa: E402

JOURNEYS = ROOT / "journeys" / "library"
CHANNELS = ("email", "sms", "push", "webhook")
START = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)  # 10:00 in Madrid: outside quiet hours
USER = "customer-0001"
CATEGORIES = ("shoes", "shirts", "hats", "bags", "socks", "jackets")


@dataclass
class CountingChannel:
    name: str
    sent: int = 0

    def send(self, message: Message) -> None:
        self.sent += 1


def order(n: int, kb: float) -> dict[str, Any]:
    """The n-th Order Completed of the customer, about `kb` KB of JSON."""
    products: list[dict[str, Any]] = []
    props: dict[str, Any] = {"order_id": f"o-{n:06d}", "checkout_id": f"c-{n:06d}",
                             "affiliation": "web", "currency": "EUR", "coupon": None,
                             "shipping": 4.9, "tax": 0.0, "products": products}
    i = 0
    while len(json.dumps(props)) < kb * 1024 - 400:
        price = round(5 + (n * 31 + i * 17) % 200 + 0.99, 2)
        products.append({
            "product_id": f"sku-{(n * 7 + i) % 9000:05d}", "sku": f"SKU{(n + i) % 9000:05d}",
            "name": f"Trail Runner {i % 9 + 1} - {CATEGORIES[i % 6]}", "price": price,
            "category": CATEGORIES[(n + i) % 6], "quantity": 1 + i % 3, "position": i + 1,
            "url": f"https://shop.example/p/sku-{(n * 7 + i) % 9000:05d}",
            "image_url": f"https://cdn.shop.example/img/{(n * 7 + i) % 9000:05d}/main.jpg",
            "attributes": {"size": 36 + i % 12, "colour": ("black", "white", "red")[i % 3],
                           "material": "mesh", "warehouse": f"wh-{i % 4}"}})
        i += 1
    props["revenue"] = round(sum(p["price"] * p["quantity"] for p in products), 2)
    props["total"] = props["revenue"] + props["shipping"]
    return {"type": "track", "event": "Order Completed", "userId": USER, "properties": props}


def identify() -> dict[str, Any]:
    return {"type": "identify", "userId": USER, "traits": {
        "email": "customer-0001@example.com", "first_name": "Ada",
        "timezone": "Europe/Madrid", "consent": {"email": True, "sms": True}}}


def run(db: str, total: int, kb: float, budget: float) -> tuple[list[float], Service]:
    """Handle the customer's `total` events, or as many as `budget` seconds allow (0: no
    limit); seconds per event (index 0 = the 1st event)."""
    clock = FakeClock(START)
    channels = {name: CountingChannel(name) for name in CHANNELS}
    service = Service(JOURNEYS, db, channels=channels, clock=clock, lease=3600)
    store, worker, dispatcher = service.store, service.worker, service.dispatcher
    times: list[float] = []
    started = time.perf_counter()
    for n in range(total):
        if budget and time.perf_counter() - started > budget:
            print(f"  stopped after the {ordinal(n)} event: the {budget:.0f} s budget is spent",
                  flush=True)
            break
        raw = identify() if n == 0 else order(n, kb)
        event = normalize(raw, now=clock.now(), message_id=f"h-{n:06d}")
        store.accept_events([event], "bench")
        start = time.perf_counter()
        handled = worker.handle_events()
        times.append(time.perf_counter() - start)
        assert handled == 1, (n, handled)
        clock.advance(timedelta(days=1))
        worker.fire_timers()
        dispatcher.dispatch_due()
        if (n + 1) % 250 == 0:
            print(f"  event {n + 1:>5,}: median of the last 250 "
                  f"{1e3 * statistics.median(times[-250:]):6.1f} ms", flush=True)
    assert worker.stats.failures == 0, worker.stats
    assert not store.inbox_counts(), store.inbox_counts()
    return times, service


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def window(times: list[float], at: int, half: int) -> float:
    """Median seconds of the events at-half .. at+half (1-based, as "the 50th")."""
    return statistics.median(times[max(0, at - half - 1):at + half])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--early", type=int, default=50, help="the early event (50th)")
    parser.add_argument("--late", type=int, default=2_000, help="the late event (2,000th)")
    parser.add_argument("--window", type=int, default=10, help="events either side")
    parser.add_argument("--kb", type=float, default=32.0, help="size of an order event")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="stop after this many seconds (0: never); see below")
    parser.add_argument("--dir", type=Path, default=None, help="where the database goes")
    args = parser.parse_args()
    total = args.late + args.window

    workdir = Path(tempfile.mkdtemp(prefix="history_bench_", dir=args.dir))
    try:
        size = len(json.dumps(order(1, args.kb)))
        print(f"One customer: an identify, then {total - 1:,} orders of {size / 1024:.1f} KB "
              f"each, a day apart (fake clock), the bundled journeys, SQLite in {workdir}")
        start = time.perf_counter()
        times, service = run(f"sqlite:///{workdir / 'history.db'}", total, args.kb,
                             args.budget)
        elapsed = time.perf_counter() - start
        enrollments = service.store.profile_enrollments(USER)
        sent = service.store.outbox_counts()
        service.stop()
        early = window(times, args.early, args.window)
        reached = len(times) >= total
        late_at = args.late if reached else len(times) - args.window
        late = window(times, late_at, args.window)
        db_mb = sum(p.stat().st_size for p in workdir.glob("history.db*")) / 2**20
        print(f"  {len(times):,} events in {elapsed:.0f} s; the profile ends with "
              f"{len(enrollments):,} enrollments; outbox {sent}; database {db_mb:.0f} MiB")
        print(f"  handling the {ordinal(args.early)} event (median of "
              f"{args.early - args.window}-{args.early + args.window}): {1e3 * early:.1f} ms; "
              f"the {ordinal(late_at)} "
              f"({late_at - args.window:,}-{late_at + args.window:,}): {1e3 * late:.1f} ms "
              f"= {late / early:.1f} x")
        ratio = early / late
        if not reached:
            # Work per event that grows with history only grows further: the 2,000th
            # costs at least what the last one reached did, so early/late is an upper
            # bound of t50/t2000. A bound under the target is a definite miss.
            print(f"  the {ordinal(args.late)} event was not reached within --budget "
                  f"{args.budget:.0f} s: t{args.early}/t{args.late} <= {ratio:.3g} if the "
                  "cost per event does not fall as history grows")
            if ratio >= 0.5:
                print("  inconclusive: run with a larger --budget (0: no limit)")
                return
        print(f"RESULT history_growth ratio={ratio:.3g} target=0.5")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
