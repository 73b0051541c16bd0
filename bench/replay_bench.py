"""Replay throughput: a year of events replayed by `journeyman replay` against the live
ingest-and-handle path, in the same run (not run in CI).

    .venv/bin/python bench/replay_bench.py                     # 25,000 customers, ~90k events
    .venv/bin/python bench/replay_bench.py --customers 2000    # a quick look
    .venv/bin/python bench/replay_bench.py --profile           # + pyinstrument of the replay

The workload (`year_log`, deterministic: every choice is a hash of the customer id):
~25,000 customers arriving over 2026, each with an identify (e-mail, time zone, consent
for 9 in 10, a birthday for 1 in 4), a sign-up (with a referrer for 1 in 12), and by
turns product views, checkouts, orders, a second order months later, NPS answers and
support tickets: ~3.6 events a customer, the bundled journeys' triggers.

1. replay: `engine.qa.replay.run_replay` over the log written as JSON lines (reading
   included), its default backend; everything the year brings runs: every wait, the
   daily birthday check of every profile (a schedule entry), quiet hours, caps, sends.
   Rate: events / seconds.
2. live: the same work on the live path. The year of `--live-customers` customers (by
   the same generator, so the same mix of events over the whole year; 1,000 customers
   by default, since the live path is slower) through the replay's own loop
   (`engine.qa.replay.replay_into`), into a `SqlStore` on a fresh SQLite file with the
   runtime `serve` runs (durable-rules, the decision log): every event accepted and
   handled at its time, every timer fired at its time, every send delivered (to the
   engine's recording channel) when due. Same loop, same clock moves, same results: only the
   store differs. This is what the live service spends to take in a year at this
   volume (~10 events a day per 1,000 customers: each event and each timer comes
   alone, as it would live). Rate: events of the log / seconds.
3. for reference (no RESULT): the live path on events alone, as the bench measured it
   until 2026-12-02: `engine.service.Service`, `store.accept_events` in batches of 100,
   then `worker.handle_events()` until it returns 0, on a clock fixed after the last
   event, so no timer fires and nothing is delivered, on the first `--live-events`
   events. A replay does about three units of work per event (the event, ~1.9 timer
   firings, ~1.7 sends), so this compares unlike work; it is printed to show both.

RESULT replay_vs_live ratio = replay rate / live rate (2.); target 2 (a replay of last
year must take well under the time the live service took to take the year in).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.times import iso, parse_timestamp  # noqa: E402
from engine.ports import Message, WallPaced  # noqa: E402
from engine.qa.replay import read_log, replay_into, run_replay  # noqa: E402
from engine.qa.scenarios import load_journeys  # noqa: E402
from engine.runtime.events import normalize  # noqa: E402
from engine.service import Service  # noqa: E402
from engine.store.sql import SqlStore  # noqa: E402
from engine.testing import InMemoryEngine  # noqa: E402

JOURNEYS = ROOT / "journeys" / "library"
YEAR = datetime(2026, 1, 1, tzinfo=UTC)
ZONES = ("Europe/Madrid", "Europe/London", "America/New_York", "Asia/Tokyo")
SOURCES = ("site", "newsletter", "registered_buyer", "guest_buyer")


def pick(user: str, what: str, n: int) -> int:
    digest = hashlib.blake2b(f"{user}:{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) % n


def year_log(customers: int) -> list[dict[str, Any]]:
    """A year of Segment events for `customers` customers, in time order."""
    events: list[dict[str, Any]] = []
    seconds = 365 * 86400
    for i in range(customers):
        user = f"cust{i:06d}"
        at = YEAR + timedelta(seconds=i * seconds // customers + pick(user, "t", 3600))

        def add(body: dict[str, Any], after: timedelta, user: str = user,
                at: datetime = at) -> None:
            when = at + after
            if when < YEAR + timedelta(days=365):
                events.append({**body, "userId": user, "timestamp": iso(when),
                               "messageId": f"{user}-{len(events)}"})

        traits: dict[str, Any] = {
            "email": f"{user}@example.com", "first_name": user.title(),
            "timezone": ZONES[pick(user, "tz", len(ZONES))],
            "consent": {"email": pick(user, "consent", 10) != 0, "sms": pick(user, "sms", 2) == 0}}
        if pick(user, "bday", 4) == 0:
            traits["birthday"] = f"19{70 + pick(user, 'by', 30)}-{1 + pick(user, 'bm', 12):02d}-" \
                                 f"{1 + pick(user, 'bd', 28):02d}"
        add({"type": "identify", "traits": traits}, timedelta())
        signup: dict[str, Any] = {"source": SOURCES[pick(user, "src", len(SOURCES))]}
        if pick(user, "ref", 12) == 0:
            signup["referrer_id"] = f"cust{pick(user, 'who', max(i, 1)):06d}"
        add({"type": "track", "event": "Signed Up", "properties": signup}, timedelta(minutes=2))
        if pick(user, "view", 3) != 0:
            add({"type": "track", "event": "Product Viewed", "properties": {
                "product_id": f"p-{pick(user, 'p', 90)}", "name": "Trail Runner 2",
                "price": 40 + pick(user, "price", 120)}}, timedelta(hours=5))
        if pick(user, "cart", 5) < 2:
            value = 30 + pick(user, "v", 150)
            add({"type": "track", "event": "Checkout Started",
                 "properties": {"cart_value": value, "cart_items": 1 + pick(user, "n", 3)}},
                timedelta(days=1))
            if pick(user, "buy", 2) == 0:
                add({"type": "track", "event": "Order Completed", "properties": {
                    "order_id": f"o-{user}-1", "revenue": value}}, timedelta(days=1, hours=2))
                if pick(user, "again", 3) == 0:
                    add({"type": "track", "event": "Order Completed", "properties": {
                        "order_id": f"o-{user}-2", "revenue": 15 + pick(user, "v2", 40)}},
                        timedelta(days=40 + pick(user, "gap", 80)))
                if pick(user, "nps", 3) == 0:
                    score = pick(user, "score", 11)
                    add({"type": "track", "event": "NPS Submitted",
                         "properties": {"score": score, "comment": "ok"}}, timedelta(days=10))
                    if score <= 6 and pick(user, "fixed", 2) == 0:
                        add({"type": "track", "event": "Support Ticket Resolved",
                             "properties": {}}, timedelta(days=12))
        if pick(user, "lead", 6) == 0:
            add({"type": "track", "event": "Lead Created", "properties": {}}, timedelta(hours=1))
    events.sort(key=lambda e: e["timestamp"])
    return events


# --- 1. replay -----------------------------------------------------------------------------

def run_the_replay(log: Path, profile: bool) -> tuple[float, Any]:
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    t0 = time.perf_counter()

    def progress(done: int, total: int, now: datetime) -> None:
        if done % 10_000 == 0 or done == total:
            print(f"  replay: {done:>6}/{total} events, fake clock {now:%Y-%m-%d}, "
                  f"{time.perf_counter() - t0:6.1f}s", flush=True)

    report = run_replay(JOURNEYS, read_log(log), progress=progress)
    elapsed = time.perf_counter() - t0
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False)[:12000])
    return elapsed, report


# --- 2. live -------------------------------------------------------------------------------

class FixedClock(WallPaced):
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class CountingChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0

    def send(self, message: Message) -> None:
        self.sent += 1


def run_live_year(customers: int, folder: Path) -> tuple[int, float, int]:
    """(events, seconds, sends delivered) of a year of `customers` taken in by the live
    path: the replay's own loop (`replay_into`: each event at its time, each timer at
    its time, each send when due) on a SqlStore, with the runtime `serve` runs."""
    log = [(parse_timestamp(e["timestamp"]) or YEAR, e) for e in year_log(customers)]
    eng = InMemoryEngine(load_journeys(JOURNEYS), start=log[0][0])  # durable, decisions
    store = SqlStore(f"sqlite:///{folder / 'live-year.db'}", create=True, clock=eng.clock)
    eng.use_store(store)
    try:
        t0 = time.perf_counter()
        rejected = replay_into(eng, log)
        elapsed = time.perf_counter() - t0
        assert not rejected, rejected
        assert not store.inbox_counts(), store.inbox_counts()
        return len(log), elapsed, len(eng.sent)
    finally:
        store.close()


def run_live_events(events: list[dict[str, Any]], folder: Path) -> float:
    last = max(parse_timestamp(e["timestamp"]) or YEAR for e in events)
    now = last + timedelta(minutes=1)
    normalized = [normalize(e, now=now, message_id=e["messageId"]) for e in events]
    channels = {name: CountingChannel(name) for name in ("email", "sms", "push", "webhook")}
    service = Service(JOURNEYS, f"sqlite:///{folder / 'live.db'}", channels=channels,
                      clock=FixedClock(now), lease=3600)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(normalized), 100):
            service.store.accept_events(normalized[start:start + 100], "bench")
        while service.worker.handle_events():
            pass
        elapsed = time.perf_counter() - t0
        # every event handled, and the events the journeys emitted on the way
        assert service.worker.stats.events >= len(events), service.worker.stats
        assert not service.store.inbox_counts(), service.store.inbox_counts()
        assert service.worker.stats.failures == 0, service.worker.stats
        return elapsed
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--live-customers", type=int, default=1_000,
                        help="customers of the live path's year (2.)")
    parser.add_argument("--live-events", type=int, default=5_000,
                        help="events of the events-only reference (3.)")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the replay")
    args = parser.parse_args()

    t0 = time.perf_counter()
    events = year_log(args.customers)
    print(f"workload: {args.customers:,} customers, {len(events):,} events over 2026 "
          f"(generated in {time.perf_counter() - t0:.1f}s)")
    with tempfile.TemporaryDirectory(prefix="jm-replay-bench-") as tmp:
        folder = Path(tmp)
        log = folder / "year.jsonl"
        log.write_text("".join(json.dumps(e) + "\n" for e in events))

        year_events, year_s, year_sends = run_live_year(args.live_customers, folder)
        live_rate = year_events / year_s
        print(f"live (the replay loop on a SqlStore, SQLite): a year of "
              f"{args.live_customers:,} customers, {year_events:,} events, {year_sends:,} "
              f"sends delivered, in {year_s:.1f}s = {live_rate:,.0f} events/s")

        live_events = events[:args.live_events]
        events_s = run_live_events(live_events, folder)
        events_rate = len(live_events) / events_s
        print(f"live, events only (accept_events + worker, no timer due, nothing "
              f"delivered): {len(live_events):,} events in {events_s:.1f}s = "
              f"{events_rate:,.0f} events/s")

        replay_s, report = run_the_replay(log, args.profile)
        replay_rate = len(events) / replay_s
        sent = sum(s["sent"] for j in report.as_json()["journeys"].values()
                   for s in j["steps"].values())
        print(f"replay ({report.backend} backend): {len(events):,} events, "
              f"{report.profiles:,} profiles, {sent:,} sends, to {iso(report.ended_at)} "
              f"in {replay_s:.1f}s = {replay_rate:,.0f} events/s")
    print(f"reference: replay vs the live path on events alone: "
          f"{replay_rate / events_rate:.3g}")
    print(f"RESULT replay_vs_live ratio={replay_rate / live_rate:.3g} target=2")


if __name__ == "__main__":
    main()
