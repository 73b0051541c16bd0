"""The plumbing of the end-to-end benches (imported by bench/*_bench.py; not a bench).

It drives journeyman only through what users run, so the benches measure whatever the
runtime is: `journeyman keys create`, `journeyman serve` and `journeyman worker` as
subprocesses, the Segment HTTP API, and the store's read-only counts (`SqlStore`) to
know when the work is done. What reaches a channel is counted at the channel: every
process runs with `--sends file:<its own JSON-lines file>` and `Sink` reads those files
as they grow, noting when each line first appeared.

- `Fleet`: the processes a bench started, each in a session of its own, stopped by its
  id (SIGTERM, then SIGKILL) when the bench ends, fails or is interrupted.
- `pg_server`, `pg_database`: a PostgreSQL database of the bench's own, dropped after.
- `bench_library`: the bundled journeys copied to a temporary folder, plus the bench's
  own journeys, with the quiet hours taken out of the policy (the benches run at any
  hour of the day; sends held until 08:00 would never arrive).
- `Deployment`: keys + API + N workers on one database; `run_e2e`: events in through the
  API until every send they cause has reached a channel.

An API alone is `journeyman serve --no-worker`, so a bench can run "an API and exactly N
workers". Every process gets the same `JOURNEYMAN_SECRET` (`BENCH_SECRET`): processes on
one PostgreSQL database must sign and verify unsubscribe links with one secret.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

BUNDLED = ROOT / "journeys" / "library"
PG_ENVS = ("JOURNEYMAN_BENCH_PG", "JOURNEYMAN_TEST_PG")
LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SOURCE_KEY = "bench"


# --- processes -------------------------------------------------------------------------

def exit_on_signals() -> None:
    """SIGTERM/SIGHUP end the bench like Ctrl-C does, so its `finally` blocks (stopping
    processes, dropping databases) run."""
    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def journeyman() -> list[str]:
    """The `journeyman` command of the interpreter running the bench."""
    script = Path(sys.executable).with_name("journeyman")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BENCH_SECRET = "bench-secret-not-for-production-0123456789abcdef"


class Fleet:
    """The processes a bench started. Each runs in a session of its own (its process
    group is its pid), so stopping one reaches its children and nothing else."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "JOURNEYMAN_SECRET": BENCH_SECRET},
                                    preexec_fn=_die_with_parent)  # noqa: PLW1509 - prctl only
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        text_ = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text_.splitlines()[-lines:])

    def wait_for_line(self, name: str, text_: str, timeout: float = 120) -> None:
        """Wait until process `name` has written `text_` to its log."""
        path = self.logs / f"{name}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if path.exists() and text_ in path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not say {text_!r} in {timeout:.0f} s:\n"
                           f"{self.log_tail(name)}")

    def check(self) -> None:
        """Raise if a process ended on its own."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n"
                                   f"{self.log_tail(name)}")

    def stop(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


try:
    _LIBC: Any = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded before any fork
except OSError:
    _LIBC = None


def _die_with_parent() -> None:
    """Linux: SIGTERM this child if the bench dies without cleaning up (SIGKILL)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --- PostgreSQL ------------------------------------------------------------------------

def pg_server(url: str | None = None) -> str | None:
    """The PostgreSQL server to make databases on: `url`, else $JOURNEYMAN_BENCH_PG or
    $JOURNEYMAN_TEST_PG, else the local server if it answers; None if none does."""
    for candidate in (url, *(os.environ.get(n) for n in PG_ENVS), LOCAL_PG):
        if not candidate:
            continue
        server = make_url(candidate).set(drivername="postgresql+psycopg") \
            .render_as_string(hide_password=False)
        probe = create_engine(server, connect_args={"connect_timeout": 3})
        try:
            with probe.connect():
                return server
        except Exception:
            if candidate is url:
                raise
        finally:
            probe.dispose()
    return None


@contextmanager
def pg_database(server: str) -> Iterator[str]:
    """A fresh database for this run (jm_bench_<pid>_<hex>), dropped at the end."""
    name = f"jm_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# --- journeys --------------------------------------------------------------------------

PING_TEMPLATE = """channel: webhook
payload:
  profile: "{{ profile.id }}"
  event: "{{ event.event }}"
"""


def countdown_journey(entry_event: str, delay_s: int) -> str:
    """The peer's job as a journey: an event, `delay_s` later a send."""
    return f"""journey: bench_countdown
version: 1
name: Bench countdown
description: The Celery peer's job as a journey - an event, then a send {delay_s} s later.
entry:
  event: {entry_event}
steps:
  - id: countdown
    wait: {delay_s}s
  - id: ping
    send: {{channel: webhook, template: bench_ping}}
"""


def immediate_journey(entry_event: str) -> str:
    """A send at once, for every event of that name (latency from ingest to channel)."""
    return f"""journey: bench_immediate
version: 1
name: Bench immediate
description: A send at once, for every {entry_event} event.
entry:
  event: {entry_event}
re_entry: always
steps:
  - id: ping
    send: {{channel: webhook, template: bench_ping}}
"""


def bench_library(folder: Path, journeys: dict[str, str], *, bundled: bool = True,
                  timezone: str | None = None) -> Path:
    """A journeys folder: the bundled library (or none of it) plus `journeys` (file name
    -> YAML) and the `bench_ping` webhook template; the policy without quiet hours."""
    if bundled:
        shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        policy = (folder / "policy.yaml").read_text()
    else:
        (folder / "templates").mkdir(parents=True)
        policy = "timezone: UTC\n"
    policy = re.sub(r"(?m)^quiet_hours:.*\n", "", policy)
    if timezone is not None:
        policy = re.sub(r"(?m)^timezone:.*$", f"timezone: {timezone}", policy)
    (folder / "policy.yaml").write_text(policy)
    (folder / "templates" / "bench_ping.yaml").write_text(PING_TEMPLATE)
    for name, body in journeys.items():
        (folder / name).write_text(body)
    return folder


# --- what reached the channels ---------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Delivery:
    at: float  # time.perf_counter() when the bench first saw the line
    journey: str
    profile_id: str
    key: str


class Sink:
    """The `file:` channel's JSON lines (one file per process) read as they grow, every
    `interval` seconds in a thread: each send that reached a channel, with the time it
    was first seen here.

    A poll looks only at the files `path` named (one `stat` each) and reads a file only
    when it grew, parsing the lines with orjson. Why: the bench shares the two cores with
    the deployment it measures, and the first version (a glob of the folder, every file
    opened and read, `json.loads` of each ~2 KB line, every 10 ms) used ~0.12 CPU-s of
    a 3 s race, a twentieth of the race's CPU, taken from the engine's processes. The
    times are the same: a line is stamped with the poll that first saw it."""

    def __init__(self, folder: Path, interval: float = 0.01) -> None:
        self.folder = folder
        self.interval = interval
        self.deliveries: list[Delivery] = []
        self._paths: list[Path] = []
        self._offsets: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, process: str) -> Path:
        path = self.folder / f"sends-{process}.jsonl"
        if path not in self._paths:
            self._paths.append(path)
        return path

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for path in self._paths:
                start = self._offsets.get(path, 0)
                try:
                    if os.stat(path).st_size <= start:
                        continue
                    with path.open("rb") as fh:
                        fh.seek(start)
                        chunk = fh.read()
                except FileNotFoundError:  # nothing sent by that process yet
                    continue
                end = chunk.rfind(b"\n") + 1  # whole lines only
                if not end:
                    continue
                self._offsets[path] = start + end
                now = time.perf_counter()
                for line in chunk[:end].splitlines():
                    rec = orjson.loads(line)
                    self.deliveries.append(Delivery(now, rec["journey"], rec["profile_id"],
                                                    rec["key"]))

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def count(self, journey: str | None = None) -> int:
        with self._lock:
            if journey is None:
                return len(self.deliveries)
            return sum(1 for d in self.deliveries if d.journey == journey)

    def duplicates(self) -> int:
        keys = Counter(d.key for d in self.snapshot())
        return sum(n - 1 for n in keys.values() if n > 1)


# --- the API ---------------------------------------------------------------------------

class Api:
    """A Segment client of one `serve` (HTTP Basic with the write key)."""

    def __init__(self, url: str, key: str, timeout: float = 60) -> None:
        self.url, self.key = url, key
        self.client = httpx.Client(base_url=url, auth=(key, ""), timeout=timeout)

    def wait_ready(self, fleet: Fleet, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fleet.check()
            for path in ("/readyz", "/health"):
                with contextlib.suppress(httpx.TransportError):
                    if self.client.get(path).status_code == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"the API at {self.url} did not answer in {timeout:.0f} s")

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, float]:
        """(status, seconds): a transport error or timeout is status 0."""
        start = time.perf_counter()
        try:
            status = self.client.post(path, json=body).status_code
        except httpx.TransportError:
            status = 0
        return status, time.perf_counter() - start

    def post_batch(self, events: list[dict[str, Any]], sent_at: str | None = None) -> float:
        body: dict[str, Any] = {"batch": events}
        if sent_at is not None:
            body["sentAt"] = sent_at
        status, elapsed = self.post("/v1/batch", body)
        if status != 200:
            raise RuntimeError(f"POST /v1/batch answered {status}")
        return elapsed

    def close(self) -> None:
        self.client.close()


def create_key(db: str, name: str = SOURCE_KEY) -> str:
    """`journeyman keys create NAME --db URL` (it also migrates a fresh database)."""
    done = subprocess.run([*journeyman(), "keys", "create", name, "--db", db],
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"keys create failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


class Deployment:
    """An API and `workers` worker processes on one database, each process sending to a
    JSON-lines file of its own. `api="serve"` is `journeyman serve` (the API plus an
    event worker, timer ticker and dispatcher in one process: the SQLite deployment);
    `api="api-only"` serves the same app without those loops, so exactly `workers`
    processes do the work. `lanes`: SQLite workers each take a lane of the inbox
    (`--lane K/N`, engine/store/sql/lanes.py)."""

    def __init__(self, db: str, journeys: Path, workdir: Path, *, workers: int = 0,
                 api: str = "serve", sink_interval: float = 0.01, lanes: bool = False) -> None:
        self.db, self.journeys, self.workdir = db, journeys, workdir
        self.workers, self.api_mode, self.lanes = workers, api, lanes
        self.fleet = Fleet(workdir)
        self.sink = Sink(workdir, sink_interval)
        self.api: Api | None = None
        self._store: Any = None
        self.drained_at: float | None = None  # perf_counter when the inbox was last seen empty

    def __enter__(self) -> Deployment:
        try:
            key = create_key(self.db)
            port = free_port()
            common = ["--journeys", str(self.journeys), "--db", self.db]
            if self.api_mode == "serve":
                self.fleet.start("serve", [*journeyman(), "serve", *common, "--port", str(port),
                                           "--sends", f"file:{self.sink.path('serve')}"])
            else:
                self.fleet.start("api", [*journeyman(), "serve", "--no-worker", *common,
                                         "--port", str(port)])
            for i in range(1, self.workers + 1):
                lane = ["--lane", f"{i - 1}/{self.workers}"] if self.lanes else []
                self.fleet.start(f"worker{i}", [*journeyman(), "worker", *common, *lane,
                                                "--name", f"bench-w{i}",
                                                "--sends", f"file:{self.sink.path(f'w{i}')}"])
            self.api = Api(f"http://127.0.0.1:{port}", key)
            self.api.wait_ready(self.fleet)
            # The clock starts when every process is up, as the peer's does after its
            # worker has started: on a slow machine, three processes importing at once
            # took over 10 s, and the first runs counted it as handling time.
            for i in range(1, self.workers + 1):
                self.fleet.wait_for_line(f"worker{i}", "running; Ctrl-C stops it")
            self.sink.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.fleet.stop_all()
        self.sink.stop()
        if self.api is not None:
            self.api.close()
        if self._store is not None:
            self._store.close()

    @property
    def store(self) -> Any:
        """A SqlStore on the database, for the read-only counts."""
        if self._store is None:
            from engine.store import SqlStore

            self._store = SqlStore(self.db)
        return self._store

    def describe(self) -> str:
        api = "`journeyman serve`" if self.api_mode == "serve" else "an API-only process"
        workers = f" + {self.workers} `journeyman worker`" if self.workers else ""
        return f"{api}{workers}"

    def wait_done(self, delay: float, expect: dict[str, int] | None = None,
                  timeout: float = 600) -> float:
        """Wait until every send the posted events cause has reached a channel; return
        when the last one was seen (perf_counter). Done means: no pending inbox row;
        `delay` (the journeys' short waits) past the moment the inbox emptied, no timer
        due now (cron timers aside); no pending outbox row (with quiet hours off, a
        pending row is due or in flight); as many lines at the sinks as `sent` rows; and
        at least `expect[journey]` lines of each journey named there (so a runtime that
        empties its inbox before its work is committed is not taken for done).
        """
        store = self.store
        deadline = time.monotonic() + timeout
        emptied: float | None = None
        self.drained_at = None
        while time.monotonic() < deadline:
            self.fleet.check()
            inbox = store.inbox_counts()
            if inbox.get("failed"):
                raise RuntimeError(f"inbox rows failed: {inbox}")
            if inbox.get("pending"):
                emptied = None
            elif emptied is None:
                emptied = time.monotonic()
                self.drained_at = time.perf_counter()
            elif time.monotonic() >= emptied + delay + 0.3:
                now = datetime.now(UTC)
                due = store.next_timer_at(include_cron=False)
                outbox = store.outbox_counts()
                if outbox.get("failed"):
                    raise RuntimeError(f"outbox rows failed: {outbox}")
                if ((due is None or due > now) and not outbox.get("pending")
                        and self.sink.count() >= outbox.get("sent", 0)
                        and all(self.sink.count(j) >= n for j, n in (expect or {}).items())):
                    self.sink.poll()
                    seen = self.sink.snapshot()
                    return max((d.at for d in seen), default=time.perf_counter())
            time.sleep(0.1)
        raise RuntimeError(f"not done after {timeout:.0f} s: inbox {store.inbox_counts()}, "
                           f"outbox {store.outbox_counts()}, {self.sink.count()} at the sinks")


# --- the workload ----------------------------------------------------------------------

def realistic_events(n: int, tag: str) -> list[dict[str, Any]]:
    """The first `n` (by time) Segment events of `engine.qa.demo.synthetic_events`:
    identify, Signed Up, Product Viewed, Checkout Started, Order Completed of synthetic
    visitors, as a client library sends them (raw, with a unique messageId each)."""
    from engine.qa.demo import synthetic_events

    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    visitors = max(1, n // 3)
    while len(raw := synthetic_events(visitors, start)) < n:
        visitors += max(1, (n - len(raw)) // 3)
    return [{**ev, "messageId": f"{tag}-{i:07d}"} for i, ev in enumerate(raw[:n])]


@dataclass
class E2eRun:
    events: int
    seconds: float  # first POST to the last send seen at a channel
    delay: float
    setup: str
    sends: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    posted: float = math.nan  # first POST to the last answer
    drained: float = math.nan  # first POST to the inbox first seen empty (polled every 0.1 s)
    late: list[float] = field(default_factory=list)  # countdown sends queued past their time

    @property
    def rate(self) -> float:
        """Events per second, as the peer counts them: N / (elapsed - the delay)."""
        return self.events / max(self.seconds - self.delay, 1e-9)

    def line(self, label: str) -> str:
        sends = ", ".join(f"{k} {v:,}" for k, v in sorted(self.sends.items()))
        return (f"  engine ({label}, {self.setup}): {self.events:,} events, all their sends "
                f"at the channel after {self.seconds:.2f} s = {self.rate:,.0f} events/s "
                f"(N / (elapsed - {self.delay:g} s)); sends: {sends}; duplicates "
                f"{self.duplicates}; outbox {dict(sorted(self.outbox.items()))}; timeline: "
                f"posted {self.posted:.2f} s, inbox empty {self.drained:.2f} s, last send "
                f"{self.seconds:.2f} s{self._lateness()}")

    def _lateness(self) -> str:
        if not self.late:
            return ""
        return (f"; countdown timers fired late by {sum(self.late) / len(self.late):.3f} s "
                f"on average, at most {max(self.late):.3f} s, the last one {self.late[-1]:.3f} s")


def countdown_lateness(store: Any, delay: float) -> list[float]:
    """How long after its time each `bench_countdown` send was queued (its timer fired):
    the send row's creation against its enrollment's entry plus `delay`, in entry order
    (the database's own timestamps, so the figure does not depend on the sink's polls)."""
    from engine.store.sql.tables import table

    outbox, enrollments = table("outbox"), table("enrollments")
    query = (select(outbox.c.created_at, enrollments.c.entered_at)
             .join(enrollments, enrollments.c.id == outbox.c.enrollment_id)
             .where(outbox.c.journey == "bench_countdown")
             .order_by(enrollments.c.entered_at))
    with store.sql_engine.connect() as conn:
        return [(created - entered).total_seconds() - delay
                for created, entered in conn.execute(query)]


def run_e2e(deployment: Deployment, events: list[dict[str, Any]], *, delay: float,
            expect: dict[str, int], batch: int = 100, timeout: float = 900) -> E2eRun:
    """Post `events` through the API in batches of `batch` (one client, as fast as it
    answers; `sentAt` = the newest event's timestamp, so they read as recent history)
    and wait until every send they cause has reached a channel. `expect`: sends per
    journey that must arrive exactly once each."""
    assert deployment.api is not None
    sent_at = max(str(ev["timestamp"]) for ev in events)
    t0 = time.perf_counter()
    for start in range(0, len(events), batch):
        deployment.api.post_batch(events[start:start + batch], sent_at)
    t_posted = time.perf_counter()
    t_end = deployment.wait_done(delay, expect, timeout)
    seen = deployment.sink.snapshot()
    sends = Counter(d.journey for d in seen)
    run = E2eRun(len(events), t_end - t0, delay, deployment.describe(), sends,
                 deployment.sink.duplicates(), deployment.store.outbox_counts(),
                 t_posted - t0, (deployment.drained_at or math.nan) - t0,
                 countdown_lateness(deployment.store, delay))
    for journey, n in expect.items():
        if sends[journey] != n:
            raise RuntimeError(f"{journey}: {sends[journey]} sends at the channel, expected {n}")
    if run.duplicates:
        raise RuntimeError(f"{run.duplicates} sends reached a channel twice")
    return run


# --- small helpers -------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; inf counts as the largest value."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(q / 100 * len(ordered))) - 1)]


if __name__ == "__main__":
    sys.exit(__doc__)
