"""Signed one-click unsubscribe (RFC 8058): links, headers, the page and the POST."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from engine.api import create_app
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.testing import InMemoryEngine, InMemoryStore, SequentialIds
from tests.api.test_api import NOW, free_port
from tests.engine.helpers import stub_email, write_folder

LINKS = UnsubscribeLinks("s3cret", "https://shop.example/jm")


def test_a_token_names_profile_and_channel_and_cannot_be_forged() -> None:
    token = LINKS.token("ana", "email")
    assert LINKS.verify(token) == ("ana", "email")
    assert LINKS.url("ana", "email") == f"https://shop.example/jm/u/{token}"
    payload, sig = token.split(".")
    other = LINKS.token("ben", "email")
    assert LINKS.verify(other.split(".")[0] + "." + sig) is None  # someone else's profile
    assert LINKS.verify(payload + "." + sig[:-2] + "AA") is None
    assert LINKS.verify(payload) is None
    assert LINKS.verify("garbage") is None
    assert UnsubscribeLinks("another", "https://x").verify(token) is None


def test_every_email_carries_the_link_and_the_rfc8058_headers(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": """
journey: hello
version: 1
entry: {event: Signed Up}
steps:
  - id: hi
    send: {channel: email, template: hi}
"""}, {"hi": "channel: email\nsubject: Hi\ntext: 'bye: {{ unsubscribe_url }}'\n"})
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com"})
    eng.track("ana", "Signed Up")
    [message] = eng.channel.messages
    url = eng.runner.unsubscribe.url("ana", "email")
    assert message.rendered.text == f"bye: {url}"
    assert message.rendered.headers == {"List-Unsubscribe": f"<{url}>",
                                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


class Server:
    def __init__(self) -> None:
        self.store = InMemoryStore()
        self.port = free_port()
        app = create_app(self.store, lambda: NOW, new_id=SequentialIds("u").new_id,
                         unsubscribe=LINKS)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))


@pytest.fixture
def server() -> Iterator[Server]:
    import threading
    import time

    srv = Server()
    thread = threading.Thread(target=srv.server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield srv
    srv.server.should_exit = True
    thread.join(10)


def test_get_shows_a_page_and_post_unsubscribes_without_login(server: Server) -> None:
    path = "/u/" + LINKS.token("ana", "email")
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as client:
        page = client.get(path)
        assert page.status_code == 200
        assert '<form method="post">' in page.text
        assert "email" in page.text
        assert server.store.pending_events() == []  # looking is not unsubscribing
        done = client.post(path, content=b"List-Unsubscribe=One-Click",
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200
        assert "Unsubscribed" in done.text
        [event] = server.store.pending_events()
        assert (event["type"], event["userId"], event["traits"]) == (
            "identify", "ana", {"consent": {"email": False}})
        bad = client.post("/u/" + LINKS.token("ana", "email")[:-3] + "xyz")
        assert bad.status_code == 404
        assert client.get("/u/nonsense").status_code == 404
        assert len(server.store.pending_events()) == 1


def test_an_unsubscribe_stops_email_and_keeps_other_consent(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"drip": """
journey: drip
version: 1
entry: {event: Signed Up}
steps:
  - id: one
    send: {channel: email, template: note}
  - id: pause
    wait: 1d
  - id: two
    send: {channel: email, template: note}
  - id: text
    send: {channel: sms, template: text}
"""}, {"note": stub_email("note"), "text": "channel: sms\nbody: hi\n"},
        policy="consent_required: [email, sms]\n")
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com", "phone": "+34600000000",
                         "consent": {"email": True, "sms": True}})
    eng.track("ana", "Signed Up")
    eng.identify("ana", {"consent": {"email": False}})  # what POST /u/<token> queues
    eng.advance(timedelta(days=1))
    assert [(m.step, m.channel) for m in eng.channel.messages] == [("one", "email"),
                                                                   ("text", "sms")]
    assert eng.profile("ana").traits["consent"] == {"email": False, "sms": True}
    assert [(d.step, d.reason) for d in eng.decisions] == [("two", "no_consent")]
