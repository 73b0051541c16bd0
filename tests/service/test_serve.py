"""`journeyman serve` as a real process: keys made by the CLI, events over HTTP (by hand
and by Segment's own Python client), enrollments read back through the admin profile
endpoint and sends read from the `--sends file:` sink.

Each test runs its own server on a free port with its own SQLite file. Profiles get a
timezone where it is now about noon and email consent, so the global policy (quiet
hours 21:00-08:00, consent_required) never holds a send back, whenever the suite runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.net import free_port

pytestmark = pytest.mark.slow

T = TypeVar("T")
START_TIMEOUT = 20.0
SETTLE_TIMEOUT = 15.0


def noon_zone() -> str:
    """An IANA zone where the local time is now between 12:00 and 13:00."""
    offset = 12 - datetime.now(UTC).hour  # hours east of UTC; -11..12
    if offset == 0:
        return "UTC"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX signs are inverted


def journeyman(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def create_key(db: str, name: str, cwd: Path, *, admin: bool = False) -> str:
    done = journeyman("keys", "create", name, *(["--admin"] if admin else []), "--db", db,
                      cwd=cwd)
    assert done.returncode == 0, done.stderr
    key = done.stdout.splitlines()[-1].strip()
    assert key, done.stdout
    assert " " not in key, done.stdout
    return key


class Served:
    """One `journeyman serve` process; its stdout+stderr go to a log file."""

    def __init__(self, tmp: Path, db: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        args = [sys.executable, "-m", "engine", "serve", "--db", db, "--host", "127.0.0.1",
                "--port", str(self.port), "--tick", "0.1", *extra]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, cwd=tmp, stdout=out, stderr=out)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def why(self, what: str) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"{what} (server {state}); server output:\n{self.output()}"

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(self.why("the server exited before it was healthy"))
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(self.why(f"/health did not answer within {START_TIMEOUT}s"))
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def eventually(self, probe: Callable[[], T | None], what: str,
                   timeout: float = SETTLE_TIMEOUT) -> T:
        """Poll `probe` until it returns something other than None."""
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found is not None:
                return found
            if self.proc.poll() is not None:
                pytest.fail(self.why(f"the server died while waiting for {what}"))
            if time.monotonic() > deadline:
                pytest.fail(self.why(f"no {what} within {timeout}s"))
            time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start `journeyman serve` (waiting for /health); every process is stopped after."""
    started: list[Served] = []

    def start(db: str, *extra: str) -> Served:
        server = Served(tmp_path, db, *extra)
        started.append(server)
        server.wait_healthy()
        return server

    yield start
    for server in started:
        server.stop()


def profile_of(server: Served, admin: str, user_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{server.url}/v1/profiles/{user_id}", auth=(admin, ""), timeout=5)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, server.why(f"{response.status_code} {response.text}")
    found: dict[str, Any] = response.json()
    return found


def enrollment(server: Served, admin: str, user_id: str,
               journey: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until `user_id` is enrolled in `journey`; (profile, enrollment)."""

    def probe() -> tuple[dict[str, Any], dict[str, Any]] | None:
        profile = profile_of(server, admin, user_id) or {"enrollments": []}
        found = [item for item in profile["enrollments"] if item["journey"] == journey]
        return (profile, found[0]) if found else None

    return server.eventually(probe, f"{journey} enrollment of {user_id!r}")


def sends(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_serve_handles_events_end_to_end(tmp_path: Path,
                                         serve: Callable[..., Served]) -> None:
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    write = create_key(db, "web", tmp_path)
    admin = create_key(db, "ops", tmp_path, admin=True)
    assert write != admin
    sink = tmp_path / "sends.jsonl"
    server = serve(db, "--identify-by", "email", "--sends", f"file:{sink}")
    email = "ana@example.com"

    with httpx.Client(base_url=server.url, auth=(write, ""), timeout=5) as api:
        identify = api.post("/v1/identify", json={
            "userId": "ana", "messageId": "identify-ana-1",
            "traits": {"email": email, "first_name": "Ana", "timezone": noon_zone(),
                       "consent": {"email": True}}})
        assert identify.status_code == 200, server.why(identify.text)
        signup = {"userId": "ana", "event": "Signed Up", "messageId": "signup-ana-1",
                  "properties": {"source": "site"}}
        tracked = api.post("/v1/track", json=signup)
        assert tracked.status_code == 200, server.why(tracked.text)
        assert tracked.json() == {"success": True}

        # keys: an unknown one is 401 everywhere, a write key may not read profiles
        wrong = httpx.post(f"{server.url}/v1/track", json=signup, auth=("jm_not_a_key", ""),
                           timeout=5)
        assert wrong.status_code == 401, server.why(wrong.text)
        assert httpx.get(f"{server.url}/v1/profiles/ana", auth=("jm_not_a_key", ""),
                         timeout=5).status_code == 401
        assert api.get("/v1/profiles/ana").status_code == 403

        profile, welcome = enrollment(server, admin, "ana", "welcome")
        assert welcome["version"] == 1, welcome
        assert welcome["status"] == "active", welcome
        assert profile["id"] == "ana"
        assert profile["traits"]["email"] == email
        identities = {(i["kind"], i["value"]) for i in profile["identities"]}
        assert {("user_id", "ana"), ("email", email)} <= identities, identities

        def welcome_sends() -> list[dict[str, Any]]:
            return [s for s in sends(sink) if s["journey"] == "welcome"]

        [line] = server.eventually(lambda: welcome_sends() or None, f"welcome send in {sink}")
        assert line["to"] == email, line
        assert line["journey"] == "welcome", line
        assert line["channel"] == "email", line
        assert line["profile_id"] == "ana", line
        assert line["step"] == "welcome_site", line  # source=site picks this branch
        assert line["rendered"]["template"] == "welcome_site", line
        assert "Ana" in line["rendered"]["subject"], line

        # the same messageId again is accepted (Segment clients retry) but not handled
        # again; an order posted twice with one messageId shows it on a counter too
        again = api.post("/v1/track", json=signup)
        assert again.status_code == 200, server.why(again.text)
        order = {"userId": "ana", "event": "Order Completed", "messageId": "order-ana-1",
                 "properties": {"order_id": "o-1", "revenue": 30}}
        for _ in range(2):
            assert api.post("/v1/track", json=order).status_code == 200
        checkpoint = api.post("/v1/identify", json={"userId": "ana", "messageId": "cp-1",
                                                    "traits": {"checkpoint": 1}})
        assert checkpoint.status_code == 200

    # events of one profile are handled in order: once the checkpoint shows, all are done
    settled = server.eventually(
        lambda: (p if (p := profile_of(server, admin, "ana")) and
                 p["traits"].get("checkpoint") == 1 else None), "checkpoint trait")
    assert settled["computed"]["orders_count"] == 1, settled["computed"]
    assert settled["computed"]["total_spent"] == 30, settled["computed"]
    time.sleep(0.5)  # five outbox ticks: a second welcome send would be in the file by now
    assert [s["step"] for s in welcome_sends()] == ["welcome_site"], welcome_sends()


def test_segment_python_client_works_unchanged(tmp_path: Path, serve: Callable[..., Served],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():  # the client's own import-time warnings are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        import segment.analytics as analytics

    db = f"sqlite:///{tmp_path / 'jm.db'}"
    write = create_key(db, "segment-python", tmp_path)
    admin = create_key(db, "ops", tmp_path, admin=True)
    sink = tmp_path / "sends.jsonl"
    server = serve(db, "--sends", f"file:{sink}")

    errors: list[object] = []
    # module-level settings and the lazily made default client: restored after the test
    monkeypatch.setattr(analytics, "default_client", None)
    monkeypatch.setattr(analytics, "write_key", write)
    monkeypatch.setattr(analytics, "host", server.url)
    monkeypatch.setattr(analytics, "on_error", lambda error, batch: errors.append(error))
    monkeypatch.setattr(analytics, "max_retries", 0)
    monkeypatch.setattr(analytics, "timeout", 5)
    assert hasattr(analytics, "sync_mode"), "segment-analytics-python without sync_mode"
    monkeypatch.setattr(analytics, "sync_mode", True)  # each call posts before it returns

    visitor, user, email = "anon-7f3a", "bea", "bea@example.com"
    analytics.identify(anonymous_id=visitor, traits={"landing_page": "/spring-sale"})
    analytics.identify(user, {"email": email, "first_name": "Bea", "timezone": noon_zone(),
                              "consent": {"email": True}})
    analytics.track(user, "Signed Up", {"source": "newsletter"})
    analytics.alias(visitor, user)
    analytics.flush()  # a no-op in sync mode; what an app calls before it exits
    assert errors == []
    assert isinstance(analytics.default_client, analytics.Client)
    assert analytics.default_client.sync_mode

    def merged() -> dict[str, Any] | None:
        profile = profile_of(server, admin, user)
        kinds = {(i["kind"], i["value"]) for i in (profile or {}).get("identities", [])}
        return profile if profile and ("anonymous_id", visitor) in kinds else None

    profile = server.eventually(merged, f"alias of {visitor!r} to {user!r}")
    assert profile["id"] == user
    identities = {(i["kind"], i["value"]) for i in profile["identities"]}
    assert {("user_id", user), ("anonymous_id", visitor)} <= identities, identities
    assert profile["traits"]["email"] == email, profile["traits"]
    assert profile["traits"]["first_name"] == "Bea", profile["traits"]
    # the visitor's traits came along when the alias folded its profile into the user's
    assert profile["traits"]["landing_page"] == "/spring-sale", profile["traits"]
    journeys = {e["journey"]: e for e in profile["enrollments"]}
    assert "welcome" in journeys, profile["enrollments"]
    assert journeys["welcome"]["status"] == "active", journeys["welcome"]
    # the visitor's id now finds the same person
    by_visitor = profile_of(server, admin, visitor)
    assert by_visitor is not None
    assert by_visitor["id"] == user

    [line] = server.eventually(
        lambda: [s for s in sends(sink) if s["journey"] == "welcome"] or None, "welcome send")
    assert line["to"] == email, line
    assert line["step"] == "welcome_newsletter", line
    assert errors == []


BROKEN_JOURNEY = """\
journey: broken
version: 1
entry:
  event: Signed Up
steps:
  - id: hello
    send: {channel: email, template: hello
"""


def test_serve_rejects_a_bad_journeys_folder_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "broken.yaml").write_text(BROKEN_JOURNEY)
    db_file = tmp_path / "jm.db"
    started = time.monotonic()
    done = journeyman("serve", "--journeys", str(folder), "--db", f"sqlite:///{db_file}",
                      "--port", str(free_port()), "--host", "127.0.0.1", cwd=tmp_path, timeout=20)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert elapsed < 10, f"took {elapsed:.1f}s to refuse a broken folder"
    assert "Traceback" not in done.stderr, done.stderr
    assert "Traceback" not in done.stdout, done.stdout
    first = done.stderr.strip().splitlines()[0]
    path, line, column, message = first.split(":", 3)
    # the loader names files relative to the journeys folder's parent: journeys/broken.yaml
    assert (folder.parent / path).resolve() == (folder / "broken.yaml").resolve(), first
    assert int(line) >= 7, first  # the flow mapping opened on line 7 is never closed
    assert int(column) >= 1, first
    assert message.strip(), first
    assert "API on" not in done.stderr, done.stderr  # it never got as far as serving


def test_api_only_serve_leaves_events_to_a_worker(tmp_path: Path,
                                                  serve: Callable[..., Served]) -> None:
    """`serve --no-worker` accepts events and handles none; a `journeyman worker` on the
    same store handles them (the deployment of API replicas in front of workers)."""
    db = f"sqlite:///{tmp_path / 'split.db'}"
    key = create_key(db, "app", tmp_path)
    sink = tmp_path / "sends.jsonl"
    server = serve(db, "--no-worker", "--sends", f"file:{sink}")
    assert "(API only)" in server.output()
    event = {"userId": "u-split", "event": "Signed Up", "messageId": "m-split-1",
             "context": {"timezone": noon_zone()},
             "properties": {}, "traits": {"email": "u@example.com"}}
    response = httpx.post(f"{server.url}/v1/track", json=event, auth=(key, ""), timeout=5)
    assert response.status_code == 200, response.text

    def pending() -> int:
        from engine.store import SqlStore

        store = SqlStore(db)
        try:
            return sum(store.inbox_counts().values())
        finally:
            store.close()

    time.sleep(1.0)  # a serve with a worker handles an event within its 0.1 s tick
    assert pending() == 1, server.why("the API-only server handled an event")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--db", db,
                                   "--tick", "0.1", "--sends", f"file:{sink}"], cwd=tmp_path,
                                  stdout=log, stderr=log)
    try:
        server.eventually(lambda: True if pending() == 0 else None, "the worker's handling")
    finally:
        worker.terminate()
        worker.wait(10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
def test_a_worker_on_sqlite_is_woken_by_the_api_process_not_by_its_tick(
        tmp_path: Path, serve: Callable[..., Served]) -> None:
    """An API process and a worker process on one SQLite file: the API's commit wakes
    the worker at once (engine/store/sql/wake_sockets.py), as NOTIFY does on
    PostgreSQL. The worker's safety net is a minute away, so only the wake-up can have
    handled the event and sent its welcome within seconds."""
    db = f"sqlite:///{tmp_path / 'woken.db'}"
    key = create_key(db, "app", tmp_path)
    sink = tmp_path / "sends.jsonl"
    server = serve(db, "--no-worker")
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--db", db,
                                   "--tick", "60", "--sends", f"file:{sink}"], cwd=tmp_path,
                                  stdout=log, stderr=log)
    try:
        server.eventually(lambda: True if "running; Ctrl-C" in log_path.read_text() else None,
                          "the worker's start", timeout=60)
        time.sleep(0.5)  # its first runs at start are over: it sleeps on its tick
        for n in range(3):
            posted = time.monotonic()
            user = f"u-woken-{n}"
            batch = {"batch": [
                {"type": "identify", "userId": user, "messageId": f"m-wi{n}",
                 "traits": {"email": f"w{n}@example.com", "timezone": noon_zone(),
                            "consent": {"email": True}}},
                {"type": "track", "userId": user, "event": "Signed Up",
                 "messageId": f"m-wt{n}", "properties": {"source": "site"}}]}
            response = httpx.post(f"{server.url}/v1/batch", json=batch, auth=(key, ""),
                                  timeout=5)
            assert response.status_code == 200, response.text
            server.eventually(lambda n=n: True if sink.exists() and len(sends(sink)) > n
                              else None, f"send {n + 1} (worker log: "
                              f"{log_path.read_text()[-2000:]})", timeout=10)
            assert time.monotonic() - posted < 5, "handled on the tick, not on the wake-up"
    finally:
        worker.terminate()
        worker.wait(10)
    assert worker.returncode == 0, log_path.read_text()[-2000:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux's")
@pytest.mark.parametrize(("signum", "times"), [(signal.SIGTERM, 1), (signal.SIGINT, 1),
                                              (signal.SIGTERM, 2)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM twice"])
def test_serve_stops_cleanly_on_sigterm_as_on_sigint(tmp_path: Path, signum: int, times: int,
                                                      serve: Callable[..., Served]) -> None:
    """SIGTERM (what systemd and Docker send) stops `serve` as Ctrl-C does: `stop()` runs
    (the running batch commits, channels close, the wake-up file goes) and it exits 0.
    uvicorn raises the signal again after its own shutdown, and the default handler
    killed the process there (exit 143), leaving its `<db>-wake/` file behind. A second
    SIGTERM while it stops changes nothing."""
    db = f"sqlite:///{tmp_path / 'stop.db'}"
    server = serve(db)
    wake = tmp_path / "stop.db-wake"
    assert len(list(wake.iterdir())) == 1, server.why("no wake-up file while running")
    for _ in range(times):
        server.proc.send_signal(signum)
        time.sleep(0.05)
    try:
        code = server.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(server.why("still running 20 s after the signal"))
    assert code == 0, server.why(f"exit code {code}")
    assert list(wake.iterdir()) == [], server.why("the wake-up file was left behind")
    assert "Traceback" not in server.output(), server.why("a traceback on the way out")


def test_a_client_sending_its_body_slowly_does_not_hold_a_stop(
        tmp_path: Path, serve: Callable[..., Served]) -> None:
    """SIGTERM with a request under way whose client has sent half its body and waits
    (a slow or stalled client; an operator's trial, 2026-12-08): uvicorn waited for it
    with no bound, so the API did not stop until the client went away, or systemd's
    TimeoutStopSec (60 s) killed it, a `failed` stop on every upgrade. A stop now waits
    GRACEFUL_SHUTDOWN seconds for requests under way, then closes them and exits 0."""
    import socket

    from engine.service import GRACEFUL_SHUTDOWN

    db = f"sqlite:///{tmp_path / 'slow.db'}"
    server = serve(db, "--no-worker", "--log-format", "json")
    key = create_key(db, "web", tmp_path)
    head = (f"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n\r\n{{\"writeKey\": \"{key}\", \"userId\": ")
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(head.encode())
        time.sleep(0.5)  # the request is being read
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(GRACEFUL_SHUTDOWN + 15)
        except subprocess.TimeoutExpired:
            pytest.fail(server.why(f"still running {GRACEFUL_SHUTDOWN + 15} s after SIGTERM"))
        took = time.monotonic() - start
    assert code == 0, server.why(f"exit code {code}")
    assert GRACEFUL_SHUTDOWN - 1 < took < GRACEFUL_SHUTDOWN + 15, took
    # the request closed is said as a warning, without a traceback: uvicorn logged it as
    # two errors, one with CancelledError's traceback (an alert on errors counted them)
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.strip()]
    assert [line["level"] for line in lines if line["level"] in ("error", "critical")] == [], \
        server.why("error lines for a stop that went as meant")
    assert "Traceback" not in server.log.read_text(), server.why("a traceback on the way out")
    assert any("closed by the stop" in line["message"] for line in lines), server.why("")
