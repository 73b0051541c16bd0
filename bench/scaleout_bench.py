"""Scale-out and latency on PostgreSQL, end to end through real processes (not run in CI).

    .venv/bin/python bench/scaleout_bench.py                   # 3,000 events; 1 vs 2 workers
    .venv/bin/python bench/scaleout_bench.py --events 20000 --workers 1,2,4 --pings 300

Every run uses a database of its own on the PostgreSQL server (`--pg URL`, else
JOURNEYMAN_BENCH_PG or JOURNEYMAN_TEST_PG, else the local server), dropped at the end;
an API process (`journeyman serve --no-worker`: the API alone) and N `journeyman worker`
processes, each sending to a JSON-lines file of its own (`--sends file:...`) that the
bench reads as it grows. The journeys: the bundled library plus `bench_countdown`
(Signed Up, `wait: 2s`, a webhook send) and `bench_immediate` (every `Bench Ping` event:
a webhook send at once), copied to a temporary folder with the quiet hours taken out of
the policy (sends held until 08:00 would never arrive).

1. Throughput with 1, 2, 1, 2 and again 1 worker (`--workers 1,2`, `--rounds 2`: the runs
   with fewer workers bracket the others, and each count's rate is the geometric mean of
   its runs, so a change of load on the shared machine weighs on both, and the two-worker
   figure is not one draw of the machine's minute: run_all read 1.14 in one round where
   the same bench by hand read 1.93), each on a fresh database: the
   journey bench's end-to-end workload, `--events` realistic Segment events (identify,
   Signed Up, Product Viewed, Checkout Started, Order Completed of synthetic visitors)
   posted to `/v1/batch` in calls of 100 by one client as fast as the API answers, until
   every send they cause has reached a channel (inbox empty, no short timer due, no
   pending outbox row, as many lines at the channel as sent rows; the countdown sends
   checked one per Signed Up, no send twice). Rate = N / (elapsed - 2 s), as the Celery
   peer of journey_bench.py counts. `RESULT scaleout_2_vs_1 ratio=<2 workers / 1> target=1.5`.
2. Latency from ingest to send for an immediate send, on the deployment with the most
   workers, once its throughput run is over. Latency = from the start of a `POST /v1/track` of a
   `Bench Ping` (a new profile each) to the moment its line appears at the channel (the
   bench reads the files every 5 ms):
   - idle: `--pings` (150) pings, one at a time: the next goes after the previous one
     reached the channel and a random pause of 0-300 ms (so the pings sample every
     phase of the workers' polling); `RESULT latency_idle_p99_ms ratio=<500/p99> target=1`;
   - under load: a ping every 200 ms for `--load-seconds` (20) while a second client
     posts the realistic stream at `--load` (50%) of the throughput measured in 1. with
     that many workers, in `/v1/batch` calls of 10; p50 and p99 printed (no target).
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e

DELAY = 2.0
PING = "Bench Ping"


def library(folder: Path) -> Path:
    return e2e.bench_library(folder, {
        "bench_countdown.yaml": e2e.countdown_journey("Signed Up", int(DELAY)),
        "bench_immediate.yaml": e2e.immediate_journey(PING)})


def ping(dep: e2e.Deployment, profile: str, posted: dict[str, float]) -> None:
    assert dep.api is not None
    posted[profile] = time.perf_counter()
    status, _ = dep.api.post("/v1/track", {"userId": profile, "event": PING,
                                           "messageId": f"m-{profile}"})
    if status != 200:
        raise RuntimeError(f"POST /v1/track answered {status}")


def latencies(dep: e2e.Deployment, posted: dict[str, float], timeout: float = 60) -> list[float]:
    """Milliseconds from each ping's POST to its line at the channel (waits for all)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {d.profile_id: d.at for d in dep.sink.snapshot() if d.journey == "bench_immediate"}
        if all(p in seen for p in posted):
            return [1e3 * (seen[p] - t) for p, t in posted.items()]
        dep.fleet.check()
        time.sleep(0.05)
    missing = [p for p in posted if p not in seen]
    raise RuntimeError(f"{len(missing)} pings never reached the channel, e.g. {missing[:3]}")


def idle_latency(dep: e2e.Deployment, pings: int) -> list[float]:
    rng = random.Random(7)
    result: list[float] = []
    for i in range(pings):
        posted: dict[str, float] = {}
        ping(dep, f"idle-{i:05d}", posted)
        result += latencies(dep, posted)
        time.sleep(rng.uniform(0, 0.3))
    return result


def loaded_latency(dep: e2e.Deployment, rate: float, seconds: float) -> tuple[list[float], int]:
    """Pings every 200 ms while another client posts the realistic stream at `rate`
    events/s in batches of 10; (latencies, events posted by the load client)."""
    assert dep.api is not None
    load_api = e2e.Api(dep.api.url, dep.api.key)
    events = e2e.realistic_events(max(10, int(rate * seconds * 1.2) + 10), "load")
    sent_at = max(str(ev["timestamp"]) for ev in events)
    stop = threading.Event()
    posted_load = 0
    errors: list[BaseException] = []

    def load() -> None:
        nonlocal posted_load
        start = time.perf_counter()
        try:
            for i in range(0, len(events), 10):
                if stop.is_set():
                    return
                wait = start + i / rate - time.perf_counter()
                if wait > 0:
                    stop.wait(wait)
                load_api.post_batch(events[i:i + 10], sent_at)
                posted_load += len(events[i:i + 10])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=load, name="load", daemon=True)
    thread.start()
    posted: dict[str, float] = {}
    try:
        end = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < end:
            ping(dep, f"load-{i:05d}", posted)
            i += 1
            time.sleep(max(0.0, 0.2 - (time.perf_counter() - posted[f"load-{i - 1:05d}"])))
    finally:
        stop.set()
        thread.join(30)
        load_api.close()
    if errors:
        raise errors[0]
    return latencies(dep, posted, timeout=300), posted_load


def database_size(dep: e2e.Deployment) -> str:
    """The database's size on disk, and its largest tables (for sizing)."""
    with dep.store.sql_engine.connect() as conn:
        total = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        tables = conn.exec_driver_sql(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_statio_user_tables "
            "ORDER BY 2 DESC LIMIT 4").all()
    return (f"database {total / 2**20:.1f} MiB (" + ", ".join(
        f"{name} {size / 2**20:.1f}" for name, size in tables) + " MiB)")


def summary(label: str, values: list[float]) -> str:
    return (f"  latency {label}: {len(values)} pings, p50 {e2e.percentile(values, 50):.0f} ms, "
            f"p90 {e2e.percentile(values, 90):.0f} ms, p99 {e2e.percentile(values, 99):.0f} ms, "
            f"max {max(values):.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3_000, help="events per throughput run")
    parser.add_argument("--workers", default="1,2",
                        help="worker counts to measure, comma-separated (needs 1 and 2 for "
                             "the RESULT)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of the largest worker count, each between runs of fewer")
    parser.add_argument("--pings", type=int, default=150, help="pings for the idle latency")
    parser.add_argument("--load", type=float, default=0.5,
                        help="the load, as a share of the measured throughput")
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--pg", default=None, help="PostgreSQL server URL")
    parser.add_argument("--dir", type=Path, default=None, help="where the work files go")
    args = parser.parse_args()
    e2e.exit_on_signals()
    counts = sorted({int(x) for x in args.workers.split(",")})

    server = e2e.pg_server(args.pg)
    if server is None:
        print("PostgreSQL did not answer: give --pg URL or set JOURNEYMAN_BENCH_PG; skipped")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="scaleout_bench_", dir=args.dir))
    try:
        journeys = library(workdir / "journeys")
        events = e2e.realistic_events(args.events, "scale")
        countdowns = sum(1 for ev in events if ev.get("event") == "Signed Up")
        print(f"PostgreSQL at {e2e.safe_url(server)}; {len(events):,} events ({countdowns:,} "
              f"Signed Up, each causing a send {DELAY:g} s later) per run; files in {workdir}")
        rates: dict[int, list[float]] = {}
        idle: list[float] = []
        # 1, 2, 1, 2, 1: the runs with fewer workers bracket the others (the machine is
        # shared; load that changes meanwhile then weighs on both sides).
        order = list(counts)
        for _ in range(max(1, args.rounds) - 1):
            order += counts[-2::-1] + counts[1:]
        order += counts[-2::-1]
        for step, n in enumerate(order):
            run_dir = workdir / f"run{step}-w{n}"
            run_dir.mkdir()
            with e2e.pg_database(server) as url, e2e.Deployment(
                    url, journeys, run_dir, workers=n, api="api-only",
                    sink_interval=0.005) as dep:
                run = e2e.run_e2e(dep, events, delay=DELAY,
                                  expect={"bench_countdown": countdowns})
                rates.setdefault(n, []).append(run.rate)
                print(run.line(f"{n} worker{'s' if n > 1 else ''}"), flush=True)
                print(f"      {database_size(dep)}")
                if step != len(counts) - 1:
                    continue
                idle = idle_latency(dep, args.pings)
                print(summary(f"idle ({n} workers, one ping at a time)", idle), flush=True)
                load_rate = max(1.0, args.load * run.rate)
                loaded, load_events = loaded_latency(dep, load_rate, args.load_seconds)
                print(summary(f"under load ({load_events:,} events at {load_rate:,.0f}/s = "
                              f"{args.load:.0%} of the measured rate, {n} workers)", loaded))
                print(f"  latency_load_p50_ms {e2e.percentile(loaded, 50):.0f}  "
                      f"latency_load_p99_ms {e2e.percentile(loaded, 99):.0f}", flush=True)
        rate = {n: math.prod(r) ** (1 / len(r)) for n, r in rates.items()}
        print("  events/s by workers (geometric mean of the runs): " + ", ".join(
            f"{n}: {rate[n]:,.0f}" for n in sorted(rate)))
        if 1 in rates and 2 in rates:
            print(f"RESULT scaleout_2_vs_1 ratio={rate[2] / rate[1]:.3g} target=1.5")
        p99 = e2e.percentile(idle, 99)
        print(f"RESULT latency_idle_p99_ms ratio={500 / p99:.3g} target=1")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
