"""The dashboard's profile search finds a person whose only rows are events not handled
yet (accepted, waiting for a worker or parked, before their profile was made), as
`journeyman profiles export` does (engine/runtime/privacy.py `people_named`)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from engine.api.dashboard.auth import hash_password
from engine.runtime.events import normalize
from engine.runtime.worker import Worker
from engine.store import SqlStore
from engine.testing import InMemoryEngine, SequentialIds
from tests.api.dashboard_world import PASSWORD, START, start_server
from tests.engine.helpers import write_folder
from tests.store.conftest import pg_database, pg_server, sql_store, sqlite_template

__all__ = ["pg_database", "pg_server", "sql_store", "sqlite_template"]

SHOP = """
journey: thanks
version: 1
entry: {event: Order Completed}
steps:
  - id: thank
    send: {channel: email, template: thank}
"""


def test_search_finds_people_whose_events_are_not_handled_yet(
        sql_store: SqlStore, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"thanks": SHOP},
                          {"thank": "channel: email\nsubject: Thanks\ntext: hi\n"})
    engine = InMemoryEngine.from_folder(folder, start=START)
    engine.use_store(sql_store)
    sql_store.create_user("ed", hash_password(PASSWORD), "editor")
    ids = SequentialIds("msg")
    sql_store.accept_events([normalize(e, now=engine.now, message_id=ids.new_id) for e in (
        {"type": "track", "userId": "ana", "event": "Order Completed"},
        {"type": "page", "anonymousId": "dev-7", "name": "Home"})])
    url, server, thread = start_server(sql_store, engine)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            form = client.get("/login")
            token = re.search(r'name="login_token" value="([^"]+)"', form.text)
            assert token is not None
            client.post("/login", data={"name": "ed", "password": PASSWORD, "next": "/",
                                        "login_token": token.group(1)})
            for who, what in (("ana", "Order Completed"), ("dev-7", "page")):
                found = client.get("/profiles", params={"q": who})
                assert found.status_code == 200
                assert "not handled yet" in found.text, who
                assert what in found.text
                assert "No profile for" in found.text  # none made yet, and it says so
            listed = client.get("/profiles", params={"q": "ana", "csv": "not_handled"})
            assert "Order Completed,pending,0" in listed.text
            assert "No profile for nobody." in client.get(
                "/profiles", params={"q": "nobody"}).text
            Worker(engine.runner, sql_store, engine.clock, name="t").handle_events()
            handled = client.get("/profiles", params={"q": "ana"})
            assert "not handled yet" not in handled.text
            assert "Profile ana" in handled.text
    finally:
        server.should_exit = True
        thread.join(10)

