"""A timer storm on SQLite: 100,000 timers due at one minute while a client posts events
to `journeyman serve` (not run in CI).

    .venv/bin/python bench/storm_bench.py                   # 100,000 profiles
    .venv/bin/python bench/storm_bench.py --profiles 20000  # a smaller storm

The timers are a daily cron journey over every profile, the realistic shape of the
issue's "09:00 birthday cron over 100k profiles" (without the birthday condition, so
every profile gets its message): `bench_storm`, `entry: {schedule: "M H * * *"}` (UTC),
`re_entry: always`, one webhook send. journeyman keeps a cron entry as one timer row per
profile, armed when the profile is first seen, so N profiles are N timers due at the
same minute; firing one enrolls the profile, queues its send and arms tomorrow's timer.

1. Seed (untimed): N profiles, each from a Segment identify (email, name), handled by the
   runtime's own Runner (`Service(...).runner.handle`, the code `journeyman worker` runs)
   in transactions of 1,000 events to save time: the profiles, identities and cron timer
   rows are those the worker writes. The minute `M H` is chosen before seeding from a
   calibration run on 2,000 profiles, so that seeding ends at least `--before` (30 s)
   seconds before it; the bench stops with a clear message if seeding ran late.
2. `journeyman keys create`, then `journeyman serve` on that database (API, event worker,
   timer ticker, outbox dispatcher in one process; `--sends file:...`, read by the bench).
3. One client posts `POST /v1/track` (a Page Viewed of a random seeded profile) every
   `--interval` (50 ms; the next request waits if one takes longer), from the moment the
   API answers until the storm is over, and records each request's latency. A request
   that fails (an answer other than 200, a timeout after 60 s) counts as infinitely slow.
   Before = requests started in the `--before` seconds (at least) before the minute;
   during = requests started from the minute until the last storm send reached the
   channel (timers fired, sends delivered).
4. Checked: every profile got exactly one `bench_storm` send at the channel (none
   missing, none twice: each timer fired once), and N cron timers are pending again
   (armed for the next day).

`RESULT storm_ingest_p99 ratio=<p99 before / p99 during> target=0.25` (during the storm
the API's p99 stays within 4x of its p99 before it).
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import e2e  # noqa: E402

from engine.runtime.events import normalize  # noqa: E402
from engine.service import Service  # noqa: E402

SEED_TX = 1_000  # identify events per seeding transaction
CALIBRATE = 2_000


def storm_journey(at: datetime) -> str:
    return f"""journey: bench_storm
version: 1
name: Bench storm
description: A daily message to every profile at {at:%H:%M} UTC (the bench's timer storm).
entry:
  schedule: "{at.minute} {at.hour} * * *"
re_entry: always
steps:
  - id: daily
    send: {{channel: webhook, template: bench_ping}}
"""


def library(folder: Path, at: datetime, bundled: bool) -> Path:
    return e2e.bench_library(folder, {"bench_storm.yaml": storm_journey(at)}, bundled=bundled,
                             timezone="UTC")


def profile_id(i: int) -> str:
    return f"storm-{i:06d}"


def seed(journeys: Path, db: str, n: int) -> float:
    """N profiles, each from an identify accepted into the store's inbox and handled by
    the worker in batches, as `journeyman worker` does; returns seconds taken."""
    service = Service(journeys, db, channels={})
    try:
        now = datetime.now(UTC)
        events = [normalize({"type": "identify", "userId": profile_id(i), "traits": {
            "email": f"{profile_id(i)}@example.com", "first_name": "Storm"}},
            now=now, message_id=f"seed-{i}") for i in range(n)]
        start = time.perf_counter()
        for first in range(0, n, SEED_TX):
            service.store.accept_events(events[first:first + SEED_TX], "seed")
            while service.worker.handle_events():
                pass
        return time.perf_counter() - start
    finally:
        service.stop()


@dataclass(frozen=True, slots=True)
class Request:
    started: float  # perf_counter
    elapsed: float  # seconds until the answer (or the failure)
    status: int  # the HTTP status; 0 for a timeout or a transport error

    @property
    def latency(self) -> float:
        """Seconds to a 200; a failed request counts as infinitely slow."""
        return self.elapsed if self.status == 200 else math.inf


class Client:
    """Posts a track event every `interval` seconds in a thread, one request at a time."""

    def __init__(self, api: e2e.Api, profiles: int, interval: float) -> None:
        self.api, self.profiles, self.interval = api, profiles, interval
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)

    def _run(self) -> None:
        rng = random.Random(11)
        i = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            status, elapsed = self.api.post("/v1/track", {
                "userId": profile_id(rng.randrange(self.profiles)), "event": "Page Viewed",
                "messageId": f"client-{i:07d}", "properties": {"path": f"/p/{i % 500}"}})
            self.requests.append(Request(started, elapsed, status))
            i += 1
            self._stop.wait(max(0.0, self.interval - (time.perf_counter() - started)))

    def samples(self, start: float, end: float) -> list[float]:
        """Latencies of the request slots (one every `interval`) from `start` to `end`,
        corrected for coordinated omission: a request that took L seconds also stands for
        the slots it kept the client from using, with latencies L - interval,
        L - 2 interval, ... (HdrHistogram's recordValueWithExpectedInterval). Without
        it, a client stuck 30 s on a locked database would record one slow request
        where a steady stream of clients would have recorded 600."""
        values = []
        for r in list(self.requests):
            if start <= r.started < end:
                values.append(r.latency)
            missing, slot = r.elapsed - self.interval, r.started + self.interval
            while missing >= self.interval:
                if start <= slot < end:
                    values.append(missing)
                missing -= self.interval
                slot += self.interval
        return values

    def between(self, start: float, end: float) -> list[Request]:
        return [r for r in list(self.requests) if start <= r.started < end]

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time between two answers of 200 in the window."""
        ok = [start] + [r.started + r.elapsed for r in self.between(start, end)
                        if r.status == 200] + [end]
        return max(b - a for a, b in itertools.pairwise(ok))


def describe(label: str, client: Client, start: float, end: float) -> str:
    requests = client.between(start, end)
    values = [1e3 * v for v in client.samples(start, end)]
    failed = Counter(r.status for r in requests if r.status != 200)
    fails = ("; failed: " + ", ".join(f"{n} x {'timeout/transport' if s == 0 else s}"
                                      for s, n in failed.items())) if failed else ""
    return (f"  ingest {label}: {len(requests):,} requests ({len(values):,} slots of "
            f"{client.interval * 1e3:.0f} ms), p50 {e2e.percentile(values, 50):.1f} ms, p99 "
            f"{e2e.percentile(values, 99):.1f} ms, slowest answer "
            f"{1e3 * max((r.elapsed for r in requests), default=0):.0f} ms, longest time "
            f"without a 200 {client.longest_gap(start, end):.1f} s{fails}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=100_000, help="profiles = timers")
    parser.add_argument("--before", type=float, default=30.0,
                        help="seconds of ingest measured before the storm (at least)")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between posts")
    parser.add_argument("--max-storm", type=float, default=3600.0,
                        help="give up if the storm's sends are not all delivered by then")
    parser.add_argument("--bundled", action="store_true",
                        help="also load the bundled journeys (slower seeding)")
    parser.add_argument("--dir", type=Path, default=None, help="where the work files go")
    args = parser.parse_args()
    e2e.exit_on_signals()
    n = args.profiles

    workdir = Path(tempfile.mkdtemp(prefix="storm_bench_", dir=args.dir))
    try:
        far = datetime.now(UTC) + timedelta(hours=12)
        rate = CALIBRATE / seed(library(workdir / "calibrate", far, args.bundled),
                                f"sqlite:///{workdir / 'calibrate.db'}", CALIBRATE)
        lead = n / rate * 1.4 + 20 + args.before
        at = (datetime.now(UTC) + timedelta(seconds=lead + 60)).replace(second=0, microsecond=0)
        print(f"{n:,} profiles, a cron timer each due at {at:%H:%M} UTC; seeding at "
              f"~{rate:,.0f} profiles/s (calibrated); files in {workdir}", flush=True)
        journeys = library(workdir / "journeys", at, args.bundled)
        db = f"sqlite:///{workdir / 'storm.db'}"
        took = seed(journeys, db, n)
        print(f"  seeded in {took:.0f} s", flush=True)
        if datetime.now(UTC) > at - timedelta(seconds=args.before + 10):
            raise RuntimeError("seeding ran past its time: the storm minute is too close now "
                               "(the machine is slower than calibrated; retry, or use fewer "
                               "--profiles)")
        with e2e.Deployment(db, journeys, workdir, api="serve", sink_interval=0.05) as dep:
            store = dep.store
            assert store.pending_timers() == n, store.pending_timers()
            assert store.next_timer_at() == at, (store.next_timer_at(), at)
            assert dep.api is not None
            client = Client(e2e.Api(dep.api.url, dep.api.key), n, args.interval)
            client.start()
            ready = time.perf_counter()
            storm = ready + (at - datetime.now(UTC)).total_seconds()
            print(f"  serve up; the client posts every {args.interval * 1e3:.0f} ms; the storm "
                  f"is {storm - ready:.0f} s away", flush=True)
            fired = done = None
            try:
                deadline = storm + args.max_storm
                while time.perf_counter() < deadline:
                    dep.fleet.check()
                    now = time.perf_counter()
                    if fired is None and now > storm:
                        due = store.next_timer_at()
                        if due is None or due > at:
                            fired = now
                    if dep.sink.count("bench_storm") >= n:
                        done = max(d.at for d in dep.sink.snapshot())
                        break
                    time.sleep(0.5)
            finally:
                client.stop()
            if done is None:
                raise RuntimeError(f"after {args.max_storm:.0f} s only "
                                   f"{dep.sink.count('bench_storm'):,} of {n:,} storm sends "
                                   "reached the channel")
            per_profile = Counter(d.profile_id for d in dep.sink.snapshot()
                                  if d.journey == "bench_storm")
            missing = n - len(per_profile)
            twice = sum(1 for c in per_profile.values() if c > 1)
            rearmed = store.pending_timers()
        fired_in = f"{fired - storm:.1f} s" if fired is not None else "?"
        print(f"  storm: all timers fired {fired_in} after the minute (the first poll that "
              f"found none due), the last send at the channel {done - storm:.1f} s after it")
        print(f"  timers: {n - missing:,} of {n:,} profiles got exactly one storm send "
              f"({missing} missing, {twice} twice); {rearmed:,} cron timers armed for "
              "tomorrow")
        print(describe(f"before ({storm - ready:.0f} s)", client, ready, storm))
        print(describe(f"during ({done - storm:.0f} s)", client, storm, done))
        if missing or twice or rearmed != n:
            print("  FAILED: not every timer fired exactly once")
            return 1
        p99_before = e2e.percentile(client.samples(ready, storm), 99)
        p99_during = e2e.percentile(client.samples(storm, done), 99)
        print(f"RESULT storm_ingest_p99 ratio={p99_before / p99_during:.3g} target=0.25")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
