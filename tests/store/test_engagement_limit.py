"""Concurrent replays of one tracked link, over real HTTP, on SQLite and PostgreSQL:
every request is redirected, and exactly RECORD_LIMIT clicks are recorded. The count
runs under a lock of the message's outbox row (PostgreSQL; SQLite has one writer at a
time): without it, requests counted at once each saw room for one more."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx

from engine.ports import OutboxEntry
from engine.runtime.tracking import RECORD_LIMIT
from engine.store import SqlStore
from journeys.templating import Rendered
from tests.api.test_engagement_api import LINKS, NOW, path, served


def test_concurrent_replays_record_exactly_the_bound(sql_store: SqlStore) -> None:
    sql_store.enqueue_send(OutboxEntry("s1", "e1", "ana", "cart", "reminder", "email",
                                       "ana@example.com", Rendered("cart_reminder", "email"),
                                       NOW - timedelta(hours=1)))
    sql_store.mark_sent("s1", NOW - timedelta(hours=1))
    link = path(LINKS.click_url("s1", 1, "https://shop.example/cart"))
    with served(sql_store) as client:
        port = client.base_url.port

        def replay(_: int) -> int:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"User-Agent": "Mozilla/5.0"}) as own:
                return sum(own.get(link).status_code == 302 for _ in range(8))

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(replay, range(8))) == 64  # every request redirected
    clicks = [e for e in sql_store.engagements() if e.kind == "click"]
    assert len(clicks) == RECORD_LIMIT
