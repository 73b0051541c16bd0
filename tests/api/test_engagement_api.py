"""The tracking and deliverability endpoints under hostile input, on a real uvicorn over
an in-memory store: tokens that are not ours, tokens for messages the store no longer
has, a pixel that never breaks, and provider bodies that are refused whole."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from engine.api import create_app
from engine.ports import OutboxEntry, Store
from engine.runtime.metrics import Metrics
from engine.runtime.tracking import PIXEL, RECORD_LIMIT, RECORD_WINDOW, TrackingLinks
from engine.runtime.unsubscribe import SigningSecret, UnsubscribeLinks
from engine.store import SqlStore
from engine.testing import InMemoryStore, SequentialIds
from journeys.templating import Rendered
from tests.api.test_api import free_port

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SECRET = [SigningSecret("k" * 32)]
LINKS = TrackingLinks(SECRET, "https://jm.example")


@pytest.fixture
def api() -> Iterator[tuple[httpx.Client, InMemoryStore, str, str]]:
    store = InMemoryStore()
    store.link_identity("user_id", "ana", "ana")
    store.enqueue_send(OutboxEntry("s1", "e1", "ana", "cart", "reminder", "email",
                                   "ana@example.com", Rendered("cart_reminder", "email"),
                                   NOW - timedelta(hours=1)))
    store.mark_sent("s1", NOW - timedelta(hours=1))
    admin, write = store.create_key("ops", admin=True), store.create_key("web")
    with served(store) as client:
        yield client, store, admin, write


@contextmanager
def served(store: Store, now: Callable[[], datetime] = lambda: NOW,
           metrics: Metrics | None = None) -> Iterator[httpx.Client]:
    """The API over `store` (tracking and unsubscribe links on) on a free port, in a
    thread, and a browser-like client of it."""
    port = free_port()
    app = create_app(store, now, new_id=SequentialIds("t").new_id, metrics=metrics,
                     unsubscribe=UnsubscribeLinks(SECRET, "https://jm.example"),
                     tracking=LINKS)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          headers={"User-Agent": "Mozilla/5.0"}) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def path(url: str) -> str:
    return url.removeprefix("https://jm.example")


def test_hostile_click_tokens_are_404_and_record_nothing(
        api: tuple[httpx.Client, InMemoryStore, str, str]) -> None:
    client, store, _, _ = api
    for token in ("x", "a.b", "é.é", "%00.%00", "." * 5000, "YzE.", path(LINKS.open_url("s1"))[3:]):
        answer = client.get(f"/c/{token}")
        assert answer.status_code == 404, token
        assert "location" not in answer.headers
    assert store.engagements() == []
    assert store.inbox_counts().get("pending", 0) == 0


def test_a_click_on_a_message_the_store_no_longer_has_still_redirects(
        api: tuple[httpx.Client, InMemoryStore, str, str]) -> None:
    client, store, _, _ = api
    answer = client.get(path(LINKS.click_url("gone", 1, "https://shop.example/")))
    assert (answer.status_code, answer.headers["location"]) == (302, "https://shop.example/")
    assert store.engagements() == []


@pytest.mark.parametrize(("url", "location"), [
    ("https://shop.example/?n=Łukasz", "https://shop.example/?n=%C5%81ukasz"),
    ("https://shop.example/café au lait", "https://shop.example/caf%C3%A9%20au%20lait"),
    ("https://shop.example/a\r\nSet-Cookie: x=1", "https://shop.example/a%0D%0ASet-Cookie:%20x=1"),
    ("https://shop.example/\x00\x7f", "https://shop.example/%00%7F"),
])
def test_a_click_redirects_to_a_url_beyond_ascii_percent_encoded(
        api: tuple[httpx.Client, InMemoryStore, str, str], url: str, location: str) -> None:
    """A rendered link carries whatever a trait held (`&#10;` in an href unescapes to a
    line break): it answered 500 beyond Latin-1, and with a control character the
    connection closed with no answer; and no header of the URL's own is ever sent."""
    client, store, _, _ = api
    answer = client.get(path(LINKS.click_url("s1", 1, url)))
    assert (answer.status_code, answer.headers["location"]) == (302, location)
    assert "set-cookie" not in answer.headers
    [click] = store.engagements()
    assert (click.kind, click.url) == ("click", url)


def test_a_click_and_an_open_are_recorded_for_the_person(
        api: tuple[httpx.Client, InMemoryStore, str, str]) -> None:
    client, store, _, _ = api
    assert client.get(path(LINKS.click_url("s1", 2, "https://shop.example/a"))).status_code == 302
    assert client.head(path(LINKS.click_url("s1", 2, "https://shop.example/a"))).status_code == 302
    pixel = client.get(path(LINKS.open_url("s1")))
    assert (pixel.status_code, pixel.content, pixel.headers["content-type"]) == (
        200, PIXEL, "image/gif")
    assert client.get("/o/not-a-token").content == PIXEL  # an image, whatever the token
    kinds = [(e.kind, e.human, e.reason, e.position) for e in store.engagements("cart")]
    assert kinds == [("click", True, None, 2), ("click", False, "head_request", 2),
                     ("open", True, None, None)]
    events = [row.event for row in store.inbox.values()]
    assert [(e["event"], e["userId"], e["properties"]["step"]) for e in events] == [
        ("Email Clicked", "ana", "reminder"), ("Email Opened", "ana", "reminder")]


@pytest.mark.parametrize(("body", "status"), [
    (b"not json", 400),
    (b"[]", 400),
    (b'{"events": "no"}', 400),
    (b'{"events": [{"type": "bounce"}]}', 400),
    (b'{"events": [{"type": "unsub", "email": "a@b.c"}]}', 400),
    (b'{"events": [{"type": "bounce", "email": "a@b.c", "reason": "x\\u0000"}]}', 400),
    (b'{"events": [{"type": "bounce", "email": "a@b.c", "extra": 1}]}', 400),
    (b'{"events": [{"type": "bounce", "email": 7}]}', 400),
    (b'{"events": [' + b",".join([b'{"type": "complaint", "email": "a@b.c"}'] * 1001) + b"]}",
     400),
])
def test_a_bad_provider_body_is_refused_whole(
        api: tuple[httpx.Client, InMemoryStore, str, str], body: bytes, status: int) -> None:
    client, store, admin, _ = api
    answer = client.post("/v1/deliverability", content=body, auth=(admin, ""),
                         headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.json()["success"] is False
    assert store.suppressions() == []


def test_deliverability_needs_an_admin_key_and_counts_against_the_message(
        api: tuple[httpx.Client, InMemoryStore, str, str]) -> None:
    client, store, admin, write = api
    body = {"events": [
        {"type": "bounce", "email": "Ana@example.com", "message": "s1", "reason": "550"},
        {"type": "bounce", "bounce_type": "soft", "email": "bo@example.com"},
        {"type": "complaint", "email": "ana@example.com"}]}
    assert client.post("/v1/deliverability", json=body).status_code == 401
    assert client.post("/v1/deliverability", json=body, auth=(write, "")).status_code == 403
    answer = client.post("/v1/deliverability", json=body, auth=(admin, ""))
    assert answer.json() == {"success": True, "recorded": 3, "suppressed": 1}
    assert [(s.address, s.reason) for s in store.suppressions()] == [
        ("ana@example.com", "hard_bounce")]
    assert [(e.kind, e.message_key) for e in store.engagements()] == [("bounce", "s1")]


def test_a_click_and_an_open_answer_as_ever_while_the_database_is_locked(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A person clicking a link in an email while the store could not be written got
    the API's 503 JSON ("send the request again"), and the open pixel a broken image:
    the token alone decides the answer; the lost click is logged."""
    db = tmp_path / "journeyman.db"
    store = SqlStore(f"sqlite:///{db}", create=True, busy_timeout_ms=100)
    store.enqueue_send(OutboxEntry("s1", "e1", "ana", "cart", "reminder", "email",
                                   "ana@example.com", Rendered("cart_reminder", "email"),
                                   NOW - timedelta(hours=1)))
    store.mark_sent("s1", NOW - timedelta(hours=1))
    try:
        with served(store) as client, caplog.at_level("WARNING", logger="journeyman.api"):
            lock = sqlite3.connect(db, isolation_level=None, timeout=1)
            lock.execute("BEGIN EXCLUSIVE")  # another process holds the file
            try:
                click = client.get(path(LINKS.click_url("s1", 1, "https://shop.example/")))
                assert (click.status_code, click.headers["location"]) == (
                    302, "https://shop.example/")
                pixel = client.get(path(LINKS.open_url("s1")))
                assert (pixel.status_code, pixel.content) == (200, PIXEL)
            finally:
                lock.execute("ROLLBACK")
                lock.close()
    finally:
        store.close()
    lost = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert [line.split(":")[0] for line in lost] == [
        "a tracked click of message s1 was not recorded",
        "a tracked open of message s1 was not recorded"]


def test_replaying_a_link_redirects_every_time_and_records_at_most_the_bound() -> None:
    """Each request to /c/ and /o/ wrote a row (and a person's click an event): a loop
    replaying one link of one message filled the database. Now RECORD_LIMIT per link
    (per message for opens), a person's and a scanner's each, per RECORD_WINDOW; every
    request is still answered."""
    clock = [NOW]
    store = InMemoryStore()
    store.link_identity("user_id", "ana", "ana")
    store.enqueue_send(OutboxEntry("s1", "e1", "ana", "cart", "reminder", "email",
                                   "ana@example.com", Rendered("cart_reminder", "email"),
                                   NOW - timedelta(hours=1)))
    store.mark_sent("s1", NOW - timedelta(hours=1))
    link = path(LINKS.click_url("s1", 1, "https://shop.example/cart"))
    metrics = Metrics()
    with served(store, lambda: clock[0], metrics) as client:
        for _ in range(3 * RECORD_LIMIT):
            answer = client.get(link)
            assert (answer.status_code, answer.headers["location"]) == (
                302, "https://shop.example/cart")
            assert client.get(path(LINKS.open_url("s1"))).content == PIXEL
        for _ in range(2 * RECORD_LIMIT):  # a scanner's: a bound of their own
            assert client.head(link).status_code == 302
        other = path(LINKS.click_url("s1", 2, "https://shop.example/help"))
        assert client.get(other).status_code == 302  # another link: room of its own

        def counts() -> tuple[int, int, int, int, int]:
            rows = store.engagements()
            return (sum(e.kind == "click" and e.position == 1 and e.human for e in rows),
                    sum(e.kind == "click" and not e.human for e in rows),
                    sum(e.kind == "click" and e.position == 2 for e in rows),
                    sum(e.kind == "open" for e in rows), len(store.inbox))
        # the inbox: one event per person's click recorded, and per open
        assert counts() == (RECORD_LIMIT, RECORD_LIMIT, 1, RECORD_LIMIT, 2 * RECORD_LIMIT + 1)
        unrecorded = metrics.engagements_unrecorded
        assert (unrecorded.labels("click")._value.get(),
                unrecorded.labels("open")._value.get()) == (3 * RECORD_LIMIT, 2 * RECORD_LIMIT)
        clock[0] = NOW + RECORD_WINDOW + timedelta(seconds=1)  # out of the window
        assert client.get(link).status_code == 302
        assert counts()[0] == RECORD_LIMIT + 1


# Made before links were trusted by host (main at 2026-12-07, this secret): a token for a
# link built from a trait. Tokens already sent keep working: verifying one asks nothing
# about its host.
OLD_CLICK = "YzEKczEKMwpodHRwczovL2V2aWwuZXhhbXBsZS9mcm9tLWEtdHJhaXQ.7VBvexX_nvjGqa70olI1nNa0"
OLD_OPEN = "bzEKczE.ShwfwJt8zEvgCUE-8EhedThP"


def test_a_token_sent_before_hosts_were_checked_still_redirects(
        api: tuple[httpx.Client, InMemoryStore, str, str]) -> None:
    client, store, _, _ = api
    answer = client.get(f"/c/{OLD_CLICK}")
    assert (answer.status_code, answer.headers["location"]) == (
        302, "https://evil.example/from-a-trait")
    assert client.get(f"/o/{OLD_OPEN}").content == PIXEL
    assert [(e.kind, e.position) for e in store.engagements()] == [("click", 3), ("open", None)]
