"""Fixtures for the trust tests: the real HTTP API over a real store (in memory, SQLite,
PostgreSQL), and the worker that handles what it accepted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.ports import Store
from engine.runtime.worker import Worker
from engine.testing import InMemoryEngine
from tests.api.test_api import NOW
from tests.api.test_unsubscribe import serve_app
from tests.engine.helpers import write_folder
from tests.store.conftest import pg_database, pg_server, sql_store, sqlite_template, store

__all__ = ["pg_database", "pg_server", "sql_store", "sqlite_template", "store"]

SHOP = """
journey: thanks
version: 1
entry: {event: Order Completed}
re_entry: always
steps:
  - id: thank
    send: {channel: email, template: thank}
"""


@dataclass
class Api:
    """The API at `url` with a server key, a public key and an admin key; `handle()` runs
    the worker over what it accepted."""

    url: str
    store: Store
    engine: InMemoryEngine
    keys: dict[str, str]

    def post(self, path: str, body: dict[str, Any], key: str = "server") -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, auth=(self.keys[key], ""))

    def send(self, path: str, body: dict[str, Any], key: str = "server") -> None:
        answer = self.post(path, body, key)
        assert answer.status_code == 200, answer.text
        self.handle()

    def handle(self) -> None:
        worker = Worker(self.engine.runner, self.store, self.engine.clock, name="test")
        worker.handle_events()
        assert worker.stats.failures == 0
        self.engine.dispatcher.store = self.store
        self.engine.advance("1m")


@pytest.fixture
def api(tmp_path: Path, store: Store) -> Iterator[Api]:
    yield from _api(tmp_path, store)


@pytest.fixture
def sql_api(tmp_path: Path, sql_store: Store) -> Iterator[Api]:
    yield from _api(tmp_path, sql_store)


def _api(tmp_path: Path, store: Store) -> Iterator[Api]:
    folder = write_folder(tmp_path / "j", {"thanks": SHOP}, {
        "thank": "channel: email\nsubject: Thanks {{ profile.traits.first_name }}\ntext: hi\n"},
        policy="consent_required: []\nquiet_hours: null\n")
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.use_store(store)
    eng.runner.identity_traits = ("email", "phone")
    keys = {"server": store.create_key("server"), "admin": store.create_key("ops", admin=True)}
    for url in serve_app(store, eng.unsubscribe, eng.clock.now):
        yield Api(url, store, eng, keys)
