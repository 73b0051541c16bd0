"""Instructions per event, counted: the engine's in-process handling against the raw
sqlite3 baseline of bench/journey_bench.py, both run under valgrind's callgrind.

    .venv/bin/python bench/instructions_bench.py                 # 1,000 events
    .venv/bin/python bench/instructions_bench.py --events 2000

Why: CPU seconds on these shared machines vary by 20-30% between identical runs, so a
change of a few percent cannot be seen in events/s (docs/benchmarks.md, the tenth
session). The count of instructions a run executes is the same on every run, to the
instruction, with `PYTHONHASHSEED=0`. Each side is run twice, with the events and with
one event, and the difference divided by the extra events is its cost per event
(start-up, imports and loading the journeys cancel out).

The engine side is journey_bench.py's `run_engine` (ingest, handling, timers due,
dispatch: the bundled journeys, a SQLite file, the fixed clock); the baseline is its
`run_raw_sqlite` (a hand-written transaction per event). Prints
`RESULT journey_instructions_vs_raw ratio=<raw per event / engine per event>
target=0.1`, journey_sqlite_vs_raw's target counted in instructions.

`--countdown` also counts what the end-to-end race asks of the workers beyond that run
(journey_bench.py's part 3, without the processes): the bundled journeys plus the
race's 2 s countdown journey, quiet hours off, the events handled and their sends
delivered, then the clock moved past the countdown, its timers fired and their sends
delivered. The timers and their sends are a fifth of the workers' time in the race,
and the run above has none (its clock stands still). Needs valgrind
(Debian: `apt-get install valgrind`); without it, says so and prints no RESULT. Takes
a few minutes (callgrind runs Python ~50 times slower).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from engine.ports import WallPaced  # noqa: E402


class SteppedClock(WallPaced):
    """A fixed clock the countdown run moves once."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def run_countdown(folder: Path, events: list[dict[str, Any]], now: datetime) -> None:
    """The race's work in process: handle, deliver, then past the countdown: fire,
    deliver (see the module's docstring)."""
    import e2e
    import journey_bench as jb

    from engine.runtime.unsubscribe import SigningSecret
    from engine.service import Service
    from engine.testing import TEST_SECRET

    library = e2e.bench_library(folder / "journeys", {
        "bench_countdown.yaml": e2e.countdown_journey(jb.COUNTDOWN_ENTRY, 2)})
    channels = {name: jb.CountingChannel(name) for name in jb.CHANNELS}
    clock = SteppedClock(now)
    service = Service(library, f"sqlite:///{folder / 'countdown.db'}", channels=channels,
                      clock=clock, lease=3600, secrets=[SigningSecret(TEST_SECRET)])
    try:
        for chunk in jb.batches(events):
            service.store.accept_events(chunk, jb.SOURCE)
        while service.worker.handle_events():
            pass
        service.dispatcher.dispatch_due()
        clock.at = now + timedelta(seconds=3)
        fired = service.worker.fire_timers()
        service.dispatcher.dispatch_due()
        expected = sum(1 for ev in events if ev.get("event") == jb.COUNTDOWN_ENTRY)
        assert fired >= expected, (fired, expected)
        assert service.store.inbox_counts() == {}, service.store.inbox_counts()
        assert not service.store.outbox_counts().get("pending"), service.store.outbox_counts()
    finally:
        service.stop()


def child(side: str, n: int) -> None:
    """What runs under callgrind: one side on `n` events (in a temporary folder)."""
    import journey_bench as jb

    from engine.store import SqlStore

    # The WAL checkpointer thread wakes by the wall clock, which callgrind slows ~50
    # times: how often it ran changed the count by ~1% between identical runs. Without
    # it, the commits checkpoint the WAL themselves at a size (deterministic).
    SqlStore.checkpoint_in_background = lambda self: (lambda: None)  # type: ignore[method-assign]
    events, _, now = jb.make_events(max(n, 1))
    folder = Path(tempfile.mkdtemp(prefix="instructions_bench_"))
    try:
        if side == "engine":
            jb.run_engine(f"sqlite:///{folder / 'engine.db'}", events[:n], now)
        elif side == "countdown":
            run_countdown(folder, events[:n], now)
        else:
            jb.run_raw_sqlite(folder / "raw.db", events[:n], now)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def instructions(side: str, n: int) -> int:
    """Instructions callgrind counted for `side` on `n` events, start-up included."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", side, "--events", str(n)],
        capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind of {side} ({n} events) failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_event(n: int, sides: tuple[str, ...] = ("engine", "raw")) -> dict[str, float]:
    """Instructions per event of each side, the runs two at a time (2 cores)."""
    runs = [(side, count) for side in sides for count in (n, 1)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(runs, pool.map(lambda run: instructions(*run), runs), strict=True))
    return {side: (counts[(side, n)] - counts[(side, 1)]) / (n - 1) for side in sides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--countdown", action="store_true",
                        help="also count the race's work: the countdown's timers and sends")
    parser.add_argument("--child", choices=("engine", "raw", "countdown"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.events)
        return
    if args.events < 2:
        parser.error("--events must be at least 2")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind): no RESULT")
        return
    counted = per_event(args.events, ("engine", "raw", "countdown") if args.countdown
                        else ("engine", "raw"))
    engine, raw = counted["engine"], counted["raw"]
    print(f"engine in process on SQLite: {engine:,.0f} instructions per event "
          f"({args.events:,} events: ingest, handling, timers, dispatch)")
    print(f"raw sqlite3, a transaction per event: {raw:,.0f} instructions per event")
    if "countdown" in counted:
        print(f"the race's work in process (+ the countdown's timers and sends, no quiet "
              f"hours): {counted['countdown']:,.0f} instructions per event")
    print(f"RESULT journey_instructions_vs_raw ratio={raw / engine:.3g} target=0.1")


if __name__ == "__main__":
    main()
