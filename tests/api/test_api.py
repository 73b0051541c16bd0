"""The Segment-compatible API over real HTTP (uvicorn on a free local port)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn

from engine.api import create_app
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.testing import InMemoryStore, SequentialIds
from tests.net import free_port

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Server:
    def __init__(self, store: InMemoryStore, unsubscribe: UnsubscribeLinks | None = None,
                 ready: Callable[[], str | None] | None = None) -> None:
        self.store = store
        self.port = free_port()
        app = create_app(store, lambda: NOW, new_id=SequentialIds("srv").new_id,
                         profiles=lambda uid: {"id": uid} if uid == "known" else None,
                         unsubscribe=unsubscribe, ready=ready)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    store = InMemoryStore()
    store.create_key("web")
    store.create_key("ops", admin=True)
    with Server(store) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    server.store.inbox.clear()  # a fresh inbox and event log per test
    server.store.events.clear()
    with httpx.Client(base_url=server.url, auth=("test-key-web", "")) as c:
        yield c


def track(**extra: object) -> dict[str, object]:
    return {"userId": "u1", "event": "Signed Up", "properties": {"source": "site"}, **extra}


def test_track_is_accepted_and_deduped_on_message_id(client: httpx.Client,
                                                     server: Server) -> None:
    for _ in range(2):
        response = client.post("/v1/track", json=track(messageId="m-1"))
        assert response.status_code == 200
        assert response.json() == {"success": True}
    assert [e["messageId"] for e in server.store.pending_events()] == ["m-1"]
    assert server.store.pending_events()[0]["event"] == "Signed Up"


def test_every_call_and_its_short_form(client: httpx.Client, server: Server) -> None:
    calls = {"identify": {"userId": "u1", "traits": {"email": "a@example.com"}},
             "alias": {"userId": "u1", "previousId": "anon-1"},
             "page": {"anonymousId": "anon-1", "name": "Home"},
             "screen": {"userId": "u1", "name": "Cart"},
             "group": {"userId": "u1", "groupId": "g1"}, "track": track()}
    for kind, body in calls.items():
        assert client.post(f"/v1/{kind}", json=body).status_code == 200, kind
        assert client.post(f"/v1/{kind[0]}", json=body).status_code == 200, kind
    assert [e["type"] for e in server.store.pending_events()] == [k for k in calls for _ in (1, 2)]


def test_write_key_in_the_body(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        ok = c.post("/v1/track", json=track(writeKey="test-key-web"))
        assert ok.status_code == 200
        bad = c.post("/v1/track", json=track(writeKey="nope"))
        assert bad.status_code == 401
        assert bad.json()["reason"] == "missing or unknown write key"
        assert c.post("/v1/track", json=track()).status_code == 401


def test_gzip_batch_with_clock_skew_correction(client: httpx.Client, server: Server) -> None:
    body = {"batch": [
        {"type": "track", "userId": "u1", "event": "A", "messageId": "b1",
         "timestamp": "2026-03-02T08:59:00Z"},
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "b2"},
    ], "sentAt": "2026-03-02T10:00:00Z"}  # the client's clock is an hour fast
    response = client.post("/v1/batch", content=gzip.compress(json.dumps(body).encode()),
                           headers={"Content-Encoding": "gzip",
                                    "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    first, second = server.store.pending_events()
    # happened 61 minutes before the client sent it; we received it at 09:00
    assert first["timestamp"] == "2026-03-02T07:59:00Z"
    assert first["receivedAt"] == "2026-03-02T09:00:00Z"
    assert second["type"] == "identify"


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"{not json", 400, "body is not valid JSON"),
    (json.dumps({"event": "X"}).encode(), 400, "an event needs a userId or an anonymousId"),
    (json.dumps({"userId": "u1"}).encode(), 400, "a track event needs an 'event' name"),
    (json.dumps({"userId": "u1", "event": "X", "timestamp": "yesterday"}).encode(), 400,
     "bad timestamp 'yesterday'"),
    (json.dumps({"userId": "u1", "event": "X", "properties": "big"}).encode(), 400,
     "'properties' must be an object"),
    (json.dumps(track(properties={"blob": "x" * 40_000})).encode(), 400,
     "event larger than 32768 bytes"),
])
def test_bad_single_events_get_a_clear_400_and_nothing_is_stored(
        client: httpx.Client, server: Server, body: bytes, status: int, reason: str) -> None:
    response = client.post("/v1/track", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["success"] is False
    assert reason in response.json()["reason"]
    assert server.store.pending_events() == []


def test_a_bad_batch_stores_nothing(client: httpx.Client, server: Server) -> None:
    good = {"type": "track", "userId": "u1", "event": "A", "messageId": "ok-1"}
    response = client.post("/v1/batch", json={"batch": [good, {"type": "explode", "userId": "u"}]})
    assert response.status_code == 400
    assert response.json()["reason"] == "batch[1]: unknown event type 'explode'"
    response = client.post("/v1/batch", json={"batch": [good, {"type": "track", "event": "B"}]})
    assert response.status_code == 400
    assert response.json()["reason"] == "batch[1]: an event needs a userId or an anonymousId"
    # a batch of one event says which too (it did not, without a batch-level sentAt)
    late = {**good, "timestamp": "2026-13-01T00:00:00Z"}
    response = client.post("/v1/batch", json={"batch": [late]})
    assert response.status_code == 400
    assert response.json()["reason"].startswith("batch[0]: bad timestamp"), response.text
    response = client.post("/v1/track", json=late)  # a single call has no index to give
    assert response.json()["reason"].startswith("bad timestamp"), response.text
    big = [{**good, "messageId": f"m{i}", "properties": {"x": "y" * 20_000}} for i in range(30)]
    response = client.post("/v1/batch", json={"batch": big})
    assert response.status_code == 413
    assert "larger than 512000 bytes" in response.json()["reason"]
    assert server.store.pending_events() == []


def test_profiles_need_an_admin_key(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/v1/profiles/known", auth=("test-key-web", "")).status_code == 403
        assert c.get("/v1/profiles/known", auth=("nope", "")).status_code == 401
        ok = c.get("/v1/profiles/known", auth=("test-key-ops", ""))
        assert ok.status_code == 200
        assert ok.json() == {"id": "known"}
        assert c.get("/v1/profiles/ghost", auth=("test-key-ops", "")).status_code == 404


def test_openapi_document(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert {"/v1/track", "/v1/identify", "/v1/alias", "/v1/batch"} <= set(doc["paths"])


def test_key_cache_sees_new_keys_at_once_and_revocations_within_the_ttl(tmp_path: Path) -> None:
    from engine.api import KeyCache
    from engine.store import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'keys.db'}", create=True)
    try:
        cache, fresh = KeyCache(store, ttl=60), KeyCache(store, ttl=0)
        assert cache.check("jm_nope") is None
        key = store.create_key("web")
        assert cache.check(key) is not None  # unknown keys are not cached
        assert fresh.check(key) is not None
        assert store.revoke_key("web")
        assert cache.check(key) is not None  # still within its ttl
        assert fresh.check(key) is None
    finally:
        store.close()
