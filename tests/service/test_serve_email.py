"""End to end through `journeyman serve --channels channels.yaml`: a real SMTP server
(aiosmtpd) receives the welcome email with its RFC 8058 headers, and POSTing the
signed unsubscribe link from that email stops the next one (skipped, no consent)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from engine.store import SqlStore
from tests.channels.test_email import Sink
from tests.channels.test_email import free_port as free_smtp_port
from tests.conftest import LIBRARY
from tests.engine.helpers import write_folder
from tests.service.test_serve import Served, create_key, noon_zone, profile_of, serve

__all__ = ["serve"]

pytestmark = pytest.mark.slow

JOURNEY = """
journey: hello
version: 1
entry: {event: Signed Up}
steps:
  - id: first
    send: {channel: email, template: hello_email}
  - id: pause
    wait: 2s
  - id: second
    send: {channel: email, template: hello_email}
"""


def test_email_over_smtp_with_one_click_unsubscribe(tmp_path: Path,
                                                    serve: Callable[..., Served]) -> None:
    sink, port = Sink(), free_smtp_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        folder = write_folder(tmp_path / "j", {"hello": JOURNEY}, {
            "hello_email": "channel: email\nsubject: 'Hello {{ profile.traits.first_name }}'\n"
                           "html_file: hello.html\n"},
            policy=(LIBRARY / "policy.yaml").read_text())
        (folder / "templates" / "hello.html").write_text(
            "<p>Hi {{ profile.traits.first_name }}</p>"
            '<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
        (tmp_path / "channels.yaml").write_text(
            f"email: {{adapter: email, host: 127.0.0.1, port: {port}, start_tls: false,\n"
            "        timeout: 5, from_addr: \"Shop <hi@shop.example>\",\n"
            "        password: \"${JM_TEST_SMTP_PASSWORD}\"}\n")
        os.environ["JM_TEST_SMTP_PASSWORD"] = "unused"  # env expansion works
        db = f"sqlite:///{tmp_path / 'mail.db'}"
        key = create_key(db, "web", tmp_path)
        admin = create_key(db, "ops", tmp_path, admin=True)
        server = serve(db, "--journeys", str(folder), "--channels",
                       str(tmp_path / "channels.yaml"))
        with httpx.Client(base_url=server.url, auth=(key, "")) as client:
            client.post("/v1/identify", json={"userId": "ana", "traits": {
                "email": "ana@example.com", "first_name": "Ana", "timezone": noon_zone(),
                "consent": {"email": True}}}).raise_for_status()
            client.post("/v1/track", json={"userId": "ana",
                                           "event": "Signed Up"}).raise_for_status()
        server.eventually(lambda: sink.delivered or None, "the first email at the SMTP sink")
        [mail] = sink.parsed()
        assert (mail["To"], mail["Subject"]) == ("ana@example.com", "Hello Ana")
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = mail["List-Unsubscribe"].strip("<>")
        assert link.startswith(server.url + "/u/")
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert link in html

        # one click, as a mail client does it: no login, the signed link is enough
        done = httpx.post(link, content=b"List-Unsubscribe=One-Click", headers={
            "content-type": "application/x-www-form-urlencoded"}, timeout=5)
        assert done.status_code == 200, done.text

        def unsubscribed() -> bool | None:
            profile = profile_of(server, admin, "ana") or {"traits": {}}
            return True if profile["traits"].get("consent") == {"email": False} else None

        server.eventually(unsubscribed, "consent.email false on the profile")
        store = SqlStore(db)
        try:  # the second send comes due after its 2 s wait, and is skipped
            server.eventually(lambda: store.outbox_counts().get("skipped"), "a skipped send")
            assert store.outbox_counts() == {"sent": 1, "skipped": 1}
            skipped = store.recorded_decisions("ana", kinds=("skipped",))
            assert [(d.step, d.reason) for d in skipped] == [("second", "no_consent")]
            # Both consent changes are on record with their source (docs/privacy.md).
            consent = store.recorded_decisions("ana", kinds=("consent",))
            assert [(d.reason, d.details["source"]) for d in consent][-1] == (
                "consent.email: false", "unsubscribe")
        finally:
            store.close()
        assert len(sink.delivered) == 1, server.output()
    finally:
        controller.stop()
        os.environ.pop("JM_TEST_SMTP_PASSWORD", None)
