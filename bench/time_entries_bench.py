"""The cost of entries driven by time alone, against events (not run in CI).

    .venv/bin/python bench/time_entries_bench.py                 # 5,000 profiles, SQLite
    .venv/bin/python bench/time_entries_bench.py --profiles 2000 --store memory

Two runs of the same journey step over the same number of existing profiles, on a fake
clock (`engine.testing.InMemoryEngine` on a fresh SQLite file by default: the real
Runner, Worker, unit of work and SqlStore):

- **events**: a journey entered by an event; one `Went Quiet` track event per profile,
  accepted into the inbox in one go, then handled by the worker (timed);
- **time**: a dormant-customer segment, `profile.computed.days_since_last_order: {gte:
  30}`, deployed over the profiles (half past 30 days already, half crossing in the next
  day), with no event: the deploy (each profile evaluated once: a check due at once for
  those in the segment, a timer at the crossing for the others), then a day of the
  clock, every profile entering within the hour it crosses (timed, both). The crossings
  are packed into one day so that the harness's stepping through idle hours (each step
  queries the store for its next due work) does not dominate the figure.

ADR 0009 chose one timer per profile at the instant its condition may next change over
a periodic sweep: the work is one check per profile per change (here: one or two), never
one per profile per tick. `RESULT time_entries_vs_events ratio=<time rate / event rate>
target=0.5`: entering a profile by time may cost at most twice handling the event that
would have entered it (a check at the deploy and one at the crossing, each about an
event's evaluation without its ingest); a sweep over every profile every hour would
cost 24 checks per profile per day whether anything changed or not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.core.model import Profile  # noqa: E402
from engine.core.times import iso  # noqa: E402
from engine.runtime.events import normalize  # noqa: E402
from engine.store import SqlStore  # noqa: E402
from engine.testing import InMemoryEngine  # noqa: E402

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STEP = """
steps:
  - id: tag
    update_profile: {set: {quiet: true}}
"""
BY_EVENT = "journey: by_event\nversion: 1\nentry: {event: Went Quiet}\n" + STEP
BY_TIME = """journey: by_time
version: 1
entry:
  segment:
    when:
      profile.computed.days_since_last_order: {gte: 30}
""" + STEP


def engine(folder: Path, journey: str, store: str, count: int) -> InMemoryEngine:
    (folder / "templates").mkdir(parents=True, exist_ok=True)
    jid = journey.split("\n", 1)[0].split(": ")[1]
    (folder / f"{jid}.yaml").write_text(journey)
    (folder / "policy.yaml").write_text("timezone: UTC\n")
    eng = InMemoryEngine.from_folder(folder, start=START)
    if store == "sqlite":  # as use_store, without its deploy: timed below
        eng.store = SqlStore(f"sqlite:///{folder / 'bench.db'}", create=True, clock=eng.clock)
        eng.worker.store = eng.dispatcher.store = eng.store
    with eng.store.transaction():
        for n in range(count):  # half dormant already, half crossing within a day
            last = START - timedelta(days=29 + 2 * n / count)
            eng.store.put_profile(Profile(f"p{n}", {"email": f"p{n}@example.com"},
                                          {"orders_count": 1, "last_order_at": iso(last)}))
    return eng


def by_events(root: Path, store: str, count: int) -> float:
    eng = engine(root / "events", BY_EVENT, store, count)
    events = [normalize({"type": "track", "userId": f"p{n}", "event": "Went Quiet"},
                        now=START, message_id=f"m{n}") for n in range(count)]
    eng.store.accept_events(events)
    began = time.perf_counter()
    eng.advance(timedelta(0))  # the worker handles the inbox in batches
    took = time.perf_counter() - began
    entered = sum(1 for n in range(count) if eng.enrollments(f"p{n}", "by_event"))
    assert entered == count, entered
    return took


def by_time(root: Path, store: str, count: int) -> float:
    eng = engine(root / "time", BY_TIME, store, count)
    began = time.perf_counter()
    eng.deploy()
    eng.advance(timedelta(days=1, hours=1))  # 25 hourly batches of checks
    took = time.perf_counter() - began
    entered = sum(1 for n in range(count) if eng.enrollments(f"p{n}", "by_time"))
    assert entered == count, entered
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=5000)
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        events = by_events(root, args.store, args.profiles)
        timed = by_time(root, args.store, args.profiles)
    n = args.profiles
    print(f"events: {n} entries in {events:.2f} s ({n / events:.0f}/s)")
    print(f"time:   {n} entries in {timed:.2f} s ({n / timed:.0f}/s), deploy included")
    print(f"RESULT time_entries_vs_events ratio={events / timed:.3g} target=0.5")
    return 0


if __name__ == "__main__":
    sys.exit(main())
