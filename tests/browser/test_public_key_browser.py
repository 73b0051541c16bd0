"""A web page posts events with a public key, from Chromium: the browser's preflight
(`OPTIONS` with `Access-Control-Request-*`) is answered for the ingest routes
(engine/api/cors.py), the event is stored; a page cannot read an admin route. Before,
`OPTIONS /v1/track` was a 405 and the browser refused every such call."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from engine.ports import PUBLIC_SCOPES
from engine.testing import InMemoryStore
from tests.api.test_api import Server
from tests.net import free_port

pytestmark = pytest.mark.slow

FETCH = """async ([url, key, body]) => {
  try {
    const r = await fetch(url, {method: body === null ? "GET" : "POST",
      headers: {"Authorization": "Basic " + btoa(key + ":"),
                "Content-Type": "application/json"},
      body: body === null ? undefined : JSON.stringify(body)});
    return String(r.status);
  } catch (e) { return "refused: " + e.name; }
}"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>shop</title><p>a shop page"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def shop() -> Iterator[str]:
    """Another origin: a page served on a port of its own."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_page_on_another_origin_posts_with_a_public_key(browser: Any, shop: str) -> None:
    store = InMemoryStore()
    key = store.create_key("site", scopes=PUBLIC_SCOPES, rate=50)
    admin = store.create_key("ops", admin=True)
    with Server(store) as api:
        page = browser.new_page()
        page.goto(shop)
        event = {"userId": "web-1", "event": "Product Viewed", "messageId": "from-the-page"}
        assert page.evaluate(FETCH, [f"{api.url}/v1/track", key, event]) == "200"
        assert page.evaluate(FETCH, [f"{api.url}/v1/batch", key, {"batch": [
            {**event, "messageId": "in-a-batch"}]}]) == "200"
        assert [e["messageId"] for e in store.pending_events()] == ["from-the-page",
                                                                     "in-a-batch"]
        # only the ingest routes: a page cannot read a profile, even with the admin key
        read = page.evaluate(FETCH, [f"{api.url}/v1/profiles/web-1", admin, None])
        assert read == "refused: TypeError", read
        page.close()
