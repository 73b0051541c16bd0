"""What the whole decision log costs the runtime: handling throughput with it on (the
default) against the same runtime with it off, in the same run (not run in CI).

    .venv/bin/python bench/decisions_bench.py                 # 1,500 events, 3 runs each
    .venv/bin/python bench/decisions_bench.py --events 3000 --runs 5

The workload: the first N events of `engine.qa.demo.synthetic_events` (the bundled
journeys' triggers: identifies, sign-ups, product views, checkouts, orders), normalized
as bench/journey_bench.py does. Each run is `engine.service.Service` on a fresh SQLite
file, driven synchronously:

1. events: `store.accept_events` in batches of 100 (not timed), then
   `worker.handle_events()` until it returns 0 and `dispatcher.dispatch_due()`, on a
   clock fixed at 13:00 UTC after the last event (so most sends go out at once);
2. time: the clock moves 8 days on, `worker.fire_timers()` fires every wait and
   timeout that came due (resumes, branches, splits, more sends, exits) and the
   dispatcher delivers what they queued.

Rate: (events handled + timers fired) / the CPU seconds this process spent on 1. and
2. together (`time.process_time`: what other work on a shared machine does not skew;
the SQLite file is written with `synchronous=NORMAL` in WAL mode, so the run hardly
waits on the disk); the wall-clock rate is printed too. The runs alternate (off, on,
off, on, ...) so a change in the machine's load weighs on both; each side is the median
of its runs. With the log on, every entry, refusal, wait,
resume, branch, split, goal, exit and send is a row of the `decisions` table, written
in the same batched insert as the unit's other rows.

RESULT decision_log_overhead ratio = rate with the log / rate without (per CPU second);
target 0.9 (the log costs at most 10% of the throughput). `decision_log_overhead_wall`:
the same by the wall clock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from journey_bench import CHANNELS, JOURNEYS, CountingChannel, make_events  # noqa: E402

from engine.ports import WallPaced  # noqa: E402
from engine.runtime.unsubscribe import SigningSecret  # noqa: E402
from engine.service import Service  # noqa: E402
from engine.testing import TEST_SECRET  # noqa: E402

BATCH = 100


class MovableClock(WallPaced):
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@dataclass
class Run:
    work: int  # events handled + timers fired
    seconds: float  # wall clock
    cpu: float  # this process's CPU time (what other work on the machine does not skew)
    decisions: int
    sent: int

    @property
    def rate(self) -> float:
        return self.work / self.seconds

    @property
    def cpu_rate(self) -> float:
        return self.work / self.cpu


def run(events: list[dict[str, object]], now: datetime, *, decision_log: bool,
        folder: Path) -> Run:
    clock = MovableClock(now)
    channels = {name: CountingChannel(name) for name in CHANNELS}
    db = f"sqlite:///{folder / ('on' if decision_log else 'off')}-{time.monotonic_ns()}.db"
    service = Service(JOURNEYS, db, channels=channels, clock=clock, lease=3600,
                      secrets=[SigningSecret(TEST_SECRET)], decision_log=decision_log)
    store, worker, dispatcher = service.store, service.worker, service.dispatcher
    try:
        for start in range(0, len(events), BATCH):
            store.accept_events(events[start:start + BATCH], "bench")
        t0, c0 = time.perf_counter(), time.process_time()
        while worker.handle_events():
            pass
        dispatcher.dispatch_due()
        clock.at = now + timedelta(days=8)
        fired = worker.fire_timers()
        dispatcher.dispatch_due()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert worker.stats.events == len(events), (worker.stats.events, len(events))
        assert worker.stats.failures == 0, worker.stats
        return Run(len(events) + fired, elapsed, cpu, len(store.recorded_decisions()),
                   sum(ch.sent for ch in channels.values()))
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3, help="runs of each side")
    args = parser.parse_args()
    events, visitors, now = make_events(args.events)
    print(f"{len(events)} events, {visitors} visitors, clock {now.isoformat()}", flush=True)
    runs: dict[bool, list[Run]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="jm-decisions-") as tmp:
        for i in range(args.runs):
            for flag in (False, True):
                result = run(events, now, decision_log=flag, folder=Path(tmp))
                runs[flag].append(result)
                print(f"run {i + 1} log {'on ' if flag else 'off'}: {result.work} items in "
                      f"{result.seconds:.2f} s = {result.rate:.0f}/s "
                      f"(CPU {result.cpu:.2f} s = {result.cpu_rate:.0f}/s), "
                      f"{result.decisions} decisions, {result.sent} sent", flush=True)
    off = statistics.median(r.cpu_rate for r in runs[False])
    on = statistics.median(r.cpu_rate for r in runs[True])
    wall_off = statistics.median(r.rate for r in runs[False])
    wall_on = statistics.median(r.rate for r in runs[True])
    print(f"median per CPU second: off {off:.0f}/s, on {on:.0f}/s; wall clock: off "
          f"{wall_off:.0f}/s, on {wall_on:.0f}/s; decisions per item: "
          f"{runs[True][0].decisions / runs[True][0].work:.2f} on, "
          f"{runs[False][0].decisions / runs[False][0].work:.2f} off")
    print(f"RESULT decision_log_overhead ratio={on / off:.3f} target=0.9")
    print(f"RESULT decision_log_overhead_wall ratio={wall_on / wall_off:.3f} target=0.9")
    return 0


if __name__ == "__main__":
    sys.exit(main())
