"""A dashboard over a real SqlStore filled by the real engine (on a fake clock), served
by uvicorn on a free port: shared by the dashboard's HTTP tests and its browser tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import text

from engine.api import create_app
from engine.api.dashboard import Dashboard
from engine.api.dashboard.auth import hash_password
from engine.ports import DeployedVersion
from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.testing import InMemoryEngine, SequentialIds
from journeys.library import bundled_library
from tests.api.test_api import free_port

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PEOPLE = 40
PASSWORD = "correct horse battery"
SECRET = "dashboard-test-secret"


@dataclass
class World:
    store: SqlStore
    engine: InMemoryEngine
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    parked_id: int
    clients: list[httpx.Client] = field(default_factory=list)

    def sql(self, query: str, **params: object) -> int:
        """A direct SQL count on the same store (what the page must agree with)."""
        with self.store.sql_engine.connect() as conn:
            return int(conn.execute(text(query), params).scalar() or 0)

    def client(self) -> httpx.Client:
        made = httpx.Client(base_url=self.url, timeout=10)
        self.clients.append(made)
        return made

    def close(self) -> None:
        for made in self.clients:
            made.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


def build_world(tmp: Path, *, open_local: bool = False) -> World:
    store = SqlStore(f"sqlite:///{tmp / 'dashboard.db'}", create=True)
    engine = InMemoryEngine.from_folder(bundled_library(), start=START,
                                        only=["first_purchase"])
    engine.use_store(store)
    store.clock = engine.clock
    ids = SequentialIds("msg")

    def accept(events: list[dict[str, object]]) -> None:
        """Many events in one batch: as fast as the worker goes, not one at a time."""
        store.accept_events([normalize(e, now=engine.now, message_id=ids.new_id)
                             for e in events])
        engine.advance(timedelta(seconds=1))

    accept([{"type": "identify", "userId": f"user{i}",
             "traits": {"email": f"user{i}@example.com", "first_name": f"U{i}"}}
            for i in range(PEOPLE)])
    accept([{"type": "track", "userId": f"user{i}", "event": "Signed Up"}
            for i in range(PEOPLE)])
    engine.advance(timedelta(days=4))  # past first_look: the split has run
    accept([{"type": "track", "userId": f"user{i}", "event": "Order Completed",
             "properties": {"revenue": 20}} for i in range(0, PEOPLE, 3)])
    engine.advance(timedelta(hours=1))
    journey = engine.runner.journeys["first_purchase"]
    store.deploy_version(DeployedVersion("first_purchase", journey.model.version, "0" * 64,
                                         "", "first_purchase.yaml", START, "active"))
    store.create_user("ed", hash_password(PASSWORD), "editor")
    store.create_user("vi", hash_password(PASSWORD), "viewer")
    parked = store.park("event", "999", profile_id="user1", journey="first_purchase",
                        step="push", error="boom", stack="Traceback...", attempts=5,
                        at=engine.now)
    url, server, thread = start_server(store, engine, open_local=open_local)
    return World(store, engine, url, server, thread, parked)


def start_server(store: SqlStore, engine: InMemoryEngine, *, open_local: bool = False,
                 secure_cookies: bool = False) -> tuple[str, uvicorn.Server, threading.Thread]:
    """The dashboard (and the API) over `store` on a free port, in a thread."""
    dashboard = Dashboard(store, engine.runner.journeys, lambda: engine.now, SECRET,
                          open_local=open_local, secure_cookies=secure_cookies)
    app = create_app(store, lambda: engine.now, new_id=SequentialIds("srv").new_id,
                     dashboard=dashboard)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread
