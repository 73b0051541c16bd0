"""The log lines of real `journeyman worker` and `journeyman serve` processes, as an
operator's log pipeline reads them (docs/deploy.md, "Watching it"; docs/service.md,
"Operations"): with `--log-format json`, every line of stdout and stderr is one JSON
object, naming the process (`worker`) and the ids of the event or send it is about,
never a person's data."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.testing import TEST_SECRET
from tests.engine.helpers import write_folder
from tests.net import free_port
from tests.service.test_serve import create_key
from tests.store.conftest import make_pg_store

pytestmark = pytest.mark.slow

REDACTED = "[redacted]"

HOOKED = """
journey: hooked
version: 1
entry: {event: Signed Up}
steps:
  - id: to_crm
    send: {channel: webhook, template: crm}
"""
TEMPLATES = {"crm": "channel: webhook\npayload: {customer_id: '{{ profile.id }}'}\n"}


class Process:
    """A journeyman process; stdout and stderr each go to a file of their own."""

    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        env = {**os.environ, "JOURNEYMAN_SECRET": TEST_SECRET}  # PostgreSQL needs one
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=tmp,
                                         stdout=out, stderr=err, env=env)

    def text(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """Every line of stdout and stderr, each parsed as JSON (fails on one that is not)."""
        parsed = []
        for line in self.text().splitlines():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}\n{self.text()[-3000:]}")
        return parsed

    def eventually(self, probe: Callable[[], Any], what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found:
                return found
            if self.proc.poll() is not None:
                pytest.fail(f"exited {self.proc.returncode} waiting for {what}:\n"
                            f"{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout}s:\n{self.text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def run(name: str, *args: str) -> Process:
        process = Process(tmp_path, name, *args)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


class Answers:
    """An HTTP server on 127.0.0.1 that answers every POST with `status` and `body`."""

    def __init__(self, status: int, body: bytes) -> None:
        answers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                answers.requests += 1
                self.send_response(answers.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answers.body)))
                self.end_headers()
                self.wfile.write(answers.body)

            def log_message(self, *_: Any) -> None:
                pass

        self.status, self.body, self.requests = status, body, 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _setup(tmp_path: Path, hook_url: str) -> tuple[str, Path, Path]:
    """A migrated SQLite store, the journeys folder and channels.yaml."""
    folder = write_folder(tmp_path / "journeys", {"hooked": HOOKED},
                          TEMPLATES)
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"webhook: {{adapter: webhook, url: '{hook_url}', secret: s3cret}}\n")
    db = f"sqlite:///{tmp_path / 'logs.db'}"
    SqlStore(db, create=True).close()
    return db, folder, channels


def _accept(db: str, *events: dict[str, Any]) -> None:
    store = SqlStore(db)
    try:
        now = datetime.now(UTC)
        store.accept_events([normalize(e, now=now, message_id=f"m{i}")
                             for i, e in enumerate(events)], "site")
    finally:
        store.close()


def test_a_workers_json_lines_name_it_and_the_ids_of_the_failed_event_and_send(
        tmp_path: Path, start: Callable[..., Process]) -> None:
    hook = Answers(422, b'{"error": "rejected"}')
    try:
        db, folder, channels = _setup(tmp_path, hook.url)
        worker = start("worker", "worker", "--db", db, "--journeys", str(folder),
                       "--channels", str(channels), "--name", "w-7", "--tick", "0.2",
                       "--log-format", "json")
        order = {"type": "track", "userId": "ana@example.com", "event": "Order Completed",
                 "properties": {"revenue": 1e308}}
        _accept(db, order, order,  # the second overflows total_spent: it fails
                {"type": "track", "userId": "bob", "event": "Signed Up"})

        def about(kind: str) -> list[dict[str, Any]]:
            return [line for line in worker.lines() if line.get("kind") == kind]

        [event, *_] = worker.eventually(lambda: about("event"), "the failed event's line")
        [send] = worker.eventually(lambda: about("send"), "the failed send's line")
    finally:
        hook.close()
    # an e-mail address as a profile id is redacted in the field as in the message
    assert event["profile_id"] == REDACTED, event
    assert "ana@example.com" not in worker.text()
    assert (event["level"], event["logger"]) == ("warning", "journeyman.worker"), event
    assert {"journey", "step", "send_key"}.isdisjoint(event), event  # not known for an event
    assert send["level"] == "error", send
    assert (send["profile_id"], send["journey"], send["step"]) == ("bob", "hooked", "to_crm")
    assert ":to_crm:" in send["send_key"], send
    assert send["send_key"] in send["message"], send
    assert {line["worker"] for line in worker.lines()} == {"w-7"}


def test_every_line_of_serve_is_json_uvicorns_and_its_tracebacks_too(
        tmp_path: Path, start: Callable[..., Process]) -> None:
    """Junk bytes (uvicorn: `Invalid HTTP request received.`) and a request that fails
    (the inbox table gone: a 500, `Exception in ASGI application` and its traceback):
    every line on stdout and stderr is a JSON object, the start line too."""
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    key = create_key(db, "web", tmp_path)
    port = free_port()
    served = start("serve", "serve", "--db", db, "--port", str(port), "--tick", "0.2",
                   "--sends", f"file:{tmp_path / 'sends.jsonl'}", "--log-format", "json")
    served.eventually(lambda: "API on http://" in served.text(), "the start line")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as junk:
        junk.sendall(b"\x16\x03\x01\x02\x00 not http at all\r\n\r\n")
        junk.recv(1024)
    with sqlite3.connect(tmp_path / "serve.db", timeout=10) as conn:
        conn.execute("DROP TABLE inbox")
    answer = httpx.post(f"http://127.0.0.1:{port}/v1/track", auth=(key, ""), timeout=10,
                        json={"userId": "ana@example.com", "event": "Signed Up"})
    assert answer.status_code == 500, answer.text

    def said(message: str) -> list[dict[str, Any]]:
        return [line for line in served.lines() if message in line["message"]]

    served.eventually(lambda: said("Invalid HTTP request"), "uvicorn's warning")
    [failed, *_] = served.eventually(lambda: said("Exception in ASGI application"),
                                     "uvicorn's error")
    served.stop()
    lines = served.lines()  # each one parsed: none is plain text
    [started] = [line for line in lines if "API on http://" in line["message"]]
    assert (started["level"], started["logger"]) == ("info", "journeyman.cli"), started
    assert (failed["level"], failed["logger"]) == ("error", "uvicorn.error"), failed
    assert "no such table: inbox" in failed["exception"], failed
    assert "Traceback" in failed["exception"], failed
    assert {"ts", "level", "logger", "message", "worker"} <= set(failed)
    assert "ana@example.com" not in served.text()


def test_a_providers_answer_stays_out_of_the_log_and_is_kept_with_the_send(
        tmp_path: Path, start: Callable[..., Process]) -> None:
    """A CRM answering 422 with the record it refused: the worker's log says the status
    and its reason, not the body, which `journeyman outbox` still shows."""
    hook = Answers(422, b'{"record": {"last_name": "Secretsurname", "name": "Ivanhoe"}}')
    try:
        db, folder, channels = _setup(tmp_path, hook.url)
        worker = start("worker", "worker", "--db", db, "--journeys", str(folder),
                       "--channels", str(channels), "--tick", "0.2", "--log-format", "json")
        _accept(db, {"type": "track", "userId": "bob", "event": "Signed Up"})
        [send] = worker.eventually(
            lambda: [line for line in worker.lines() if line.get("kind") == "send"],
            "the failed send's line")
    finally:
        hook.close()
    assert "HTTP 422 Unprocessable Entity" in send["message"], send
    worker.stop()
    for secret in ("Secretsurname", "Ivanhoe", "last_name"):
        assert secret not in worker.text()
    shown = subprocess.run([sys.executable, "-m", "engine", "outbox", "--db", db, "--status",
                            "failed", "--json"], capture_output=True, text=True, timeout=60,
                           check=True)
    [row] = json.loads(shown.stdout)["rows"]
    assert row["last_error"].endswith(
        'HTTP 422 Unprocessable Entity: {"record": {"last_name": "Secretsurname", '
        '"name": "Ivanhoe"}}'), row
    store = SqlStore(db)
    try:
        [decision] = [d for d in store.recorded_decisions("bob") if d.what == "failed"]
    finally:
        store.close()
    assert "Secretsurname" in decision.details["error"], decision


@contextlib.contextmanager
def database_away(url: str) -> Iterator[None]:
    """No connection to `url`'s database while inside (those open are ended)."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"),
                         {"name": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.mark.postgres
def test_a_worker_says_when_the_database_answers_again(
        tmp_path: Path, pg_database: str, start: Callable[..., Process]) -> None:
    """docs/service.md: warnings at the 1st, 2nd, 4th, 8th... transient error in a row,
    and an info line when the database answers again after two or more; the same from
    the listener for wake-ups (LISTEN), which tries again every second."""
    make_pg_store(pg_database).close()
    folder = write_folder(tmp_path / "journeys", {"hooked": HOOKED}, TEMPLATES)
    worker = start("worker", "worker", "--db", pg_database, "--journeys", str(folder),
                   "--sends", f"file:{tmp_path / 'sends.jsonl'}", "--tick", "0.2",
                   "--name", "w-pg", "--log-format", "json")
    worker.eventually(lambda: "w-pg running" in worker.text(), "the start line")
    def listener() -> list[dict[str, Any]]:
        return [line for line in worker.lines() if line["logger"] == "journeyman.notify"]

    with database_away(pg_database):  # 5 to 6 tries of the listener's
        worker.eventually(lambda: "(4 in a row)" in str(listener()), "4 failed listens",
                          timeout=15)
        time.sleep(1.5)

    def again() -> list[dict[str, Any]]:
        return [line for line in worker.lines() if "answers again" in line["message"]]

    [*_, back] = worker.eventually(again, "the info line of a database back")
    assert back["level"] == "info", back
    assert back["worker"] == "w-pg", back
    [*failed, listens] = worker.eventually(
        lambda: (found := listener()) and found[-1]["level"] == "info" and found,
        "the listener's info line")
    assert [line["level"] for line in failed] == ["warning"] * 3, failed
    assert [line["message"].split(" in a row")[0].split("(")[1] for line in failed] == [
        "1", "2", "4"], failed
    assert listens["message"].startswith("listening for wake-ups again after "), listens
