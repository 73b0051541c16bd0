"""Engagement end to end through `journeyman serve` and a real SMTP server (aiosmtpd):

- the bundled abandoned cart's reminder arrives with its links tracked; following the
  tracked link with an HTTP client answers 302 to the cart, records `Email Clicked`
  for the person (journey and step named) and resumes the cart's `wait_for`; an altered
  token, and a token naming a URL that was not in the message, answer 404;
- a 5xx from the SMTP server and a complaint posted to /v1/deliverability each
  suppress the address: the next send to it, in another journey, is skipped as
  `suppressed`.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from engine.qa.replay import read_db_events
from engine.store import SqlStore
from tests.channels.test_email import Sink
from tests.channels.test_email import free_port as free_smtp_port
from tests.conftest import LIBRARY
from tests.engine.helpers import write_folder
from tests.service import test_serve as serve_module
from tests.service.test_serve import Served, create_key, noon_zone, profile_of, serve

__all__ = ["serve"]

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def patient_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up takes 10-25 s when two cores are shared by many processes."""
    monkeypatch.setattr(serve_module, "START_TIMEOUT", 60.0)

CHANNELS = ("email: {{adapter: email, host: 127.0.0.1, port: {port}, start_tls: false,\n"
            "        timeout: 5, from_addr: \"Shop <hi@shop.example>\"}}\n")
# Clicks in these tests come within a second of delivery: no scanner window.
NO_SCANNER_WINDOW = "\ntracking: {scanner_window: false}\n"


def cart_library(root: Path) -> Path:
    """The bundled library with the abandoned cart alone, its 1 h grace cut to 1 s."""
    folder = root / "library"
    shutil.copytree(LIBRARY, folder, ignore=shutil.ignore_patterns("scenarios", "__*"))
    for journey in folder.glob("*.yaml"):
        if journey.stem not in {"abandoned_cart", "policy", "computed_traits"}:
            journey.unlink()
    cart = folder / "abandoned_cart.yaml"
    cart.write_text(cart.read_text().replace("wait: 1h", "wait: 1s"))
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text() + NO_SCANNER_WINDOW)
    return folder


def person(user_id: str, email: str) -> dict[str, object]:
    return {"userId": user_id, "traits": {"email": email, "first_name": user_id.title(),
                                          "timezone": noon_zone(), "consent": {"email": True}}}


def test_a_tracked_click_redirects_records_and_resumes_the_cart(
        tmp_path: Path, serve: Callable[..., Served]) -> None:
    sink, port = Sink(), free_smtp_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        (tmp_path / "channels.yaml").write_text(CHANNELS.format(port=port))
        db = f"sqlite:///{tmp_path / 'cart.db'}"
        key = create_key(db, "web", tmp_path)
        admin = create_key(db, "ops", tmp_path, admin=True)
        server = serve(db, "--journeys", str(cart_library(tmp_path)), "--channels",
                       str(tmp_path / "channels.yaml"), "--public-url", "http://127.0.0.1:1")
        # --public-url is where the links point; the test reaches the same server on its
        # own port (a proxy's job in production).
        with httpx.Client(base_url=server.url, auth=(key, "")) as client:
            client.post("/v1/identify", json=person("ana", "ana@example.com")).raise_for_status()
            client.post("/v1/track", json={
                "userId": "ana", "event": "Checkout Started",
                "properties": {"cart_value": 80, "cart_items": 2}}).raise_for_status()
        server.eventually(lambda: sink.delivered or None, "the cart reminder at the SMTP sink")
        [mail] = sink.parsed()
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        tracked = re.findall(r'href="(http://127\.0\.0\.1:1/c/[^"]+)"', html)
        assert len(tracked) == 1, html  # the cart link; the unsubscribe link stays as is
        assert "https://shop.example/cart" not in html
        assert "/u/" in html
        assert 'src="http://127.0.0.1:1/o/' in html  # the open pixel
        assert tracked[0] in text  # the text part's link is the same tracked one
        path = tracked[0].removeprefix("http://127.0.0.1:1")

        with httpx.Client(base_url=server.url, follow_redirects=False, timeout=5) as web:
            answer = web.get(path, headers={"User-Agent": "Mozilla/5.0 (test)"})
            assert answer.status_code == 302, answer.text
            assert answer.headers["location"] == "https://shop.example/cart"

            token = path.removeprefix("/c/")
            altered = token[:-1] + ("A" if token[-1] != "A" else "B")
            assert web.get(f"/c/{altered}").status_code == 404
            payload, signature = token.split(".")
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
            forged = raw.replace("https://shop.example/cart", "https://evil.example/")
            forged_payload = base64.urlsafe_b64encode(forged.encode()).rstrip(b"=").decode()
            refused = web.get(f"/c/{forged_payload}.{signature}")
            assert refused.status_code == 404
            assert "location" not in refused.headers

        def cart_done() -> dict[str, object] | None:
            profile = profile_of(server, admin, "ana") or {"enrollments": []}
            found = [e for e in profile["enrollments"]  # type: ignore[attr-defined]
                     if e["journey"] == "abandoned_cart" and e["status"] != "active"]
            return found[0] if found else None

        # wait_for `Email Clicked` -> on_event: done -> `exit: completed`
        done = server.eventually(cart_done, "the cart's wait_for resumed by the click")
        assert done["exit_reason"] == "completed", done
        store = SqlStore(db)
        try:
            [click] = [e for e in store.engagements("abandoned_cart") if e.kind == "click"]
            assert (click.step, click.url, click.position, click.human) == (
                "reminder", "https://shop.example/cart", 1, True)
        finally:
            store.close()
        log = read_db_events(db)
        [event] = [e for _, e in log.events if e.get("event") == "Email Clicked"]
        assert event["userId"] == "ana"
        assert {k: event["properties"][k] for k in ("journey", "step", "template", "url",
                                                    "link_position")} == {
            "journey": "abandoned_cart", "step": "reminder", "template": "cart_reminder",
            "url": "https://shop.example/cart", "link_position": 1}
        assert len(sink.delivered) == 1  # the click ended the cart: no discount email

        stats = httpx.get(f"{server.url}/v1/journeys/abandoned_cart/kpis", auth=(admin, ""),
                          timeout=10)
        assert stats.status_code == 200, stats.text
        reminder = stats.json()["steps"]["reminder"]["counts"]
        assert (reminder["delivered"], reminder["clicked"], reminder["clicks"]) == (1, 1, 1)
        assert stats.json()["kpis"]["ctr"] == 1.0
        assert httpx.get(f"{server.url}/v1/journeys/nope/kpis", auth=(admin, ""),
                         timeout=10).status_code == 404
        assert httpx.get(f"{server.url}/v1/journeys/abandoned_cart/kpis", auth=(key, ""),
                         timeout=10).status_code == 403
    finally:
        controller.stop()


ONE = """
journey: one
version: 1
entry: {event: Go One}
steps:
  - id: mail
    send: {channel: email, template: note}
"""
TWO = ONE.replace("one", "two").replace("One", "Two")


def test_a_5xx_and_a_complaint_each_suppress_the_address_for_every_journey(
        tmp_path: Path, serve: Callable[..., Served]) -> None:
    sink, port = Sink(), free_smtp_port()
    sink.rcpt_replies.append("550 5.1.1 no such mailbox")  # bob's, the first message
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        folder = write_folder(tmp_path / "j", {"one": ONE, "two": TWO}, {
            "note": "channel: email\nsubject: hi\ntext: 'see https://shop.example/'\n"},
            policy=(LIBRARY / "policy.yaml").read_text())
        (tmp_path / "channels.yaml").write_text(CHANNELS.format(port=port))
        db = f"sqlite:///{tmp_path / 'mail.db'}"
        key = create_key(db, "web", tmp_path)
        admin = create_key(db, "ops", tmp_path, admin=True)
        server = serve(db, "--journeys", str(folder), "--channels",
                       str(tmp_path / "channels.yaml"))
        store = SqlStore(db)
        with httpx.Client(base_url=server.url, auth=(key, ""), timeout=5) as client:
            client.post("/v1/identify", json=person("bob", "Bob@Example.com")).raise_for_status()
            client.post("/v1/track", json={"userId": "bob", "event": "Go One"}).raise_for_status()
            server.eventually(lambda: store.suppressions() or None, "bob's hard bounce")
            [bounce] = store.suppressions()
            assert (bounce.address, bounce.reason) == ("bob@example.com", "hard_bounce")

            client.post("/v1/identify", json=person("cy", "cy@example.com")).raise_for_status()
            client.post("/v1/track", json={"userId": "cy", "event": "Go One"}).raise_for_status()
            server.eventually(lambda: sink.delivered or None, "cy's message")
            complaint = {"events": [{"type": "complaint", "email": "CY@example.com",
                                     "reason": "abuse report"}]}
            assert client.post("/v1/deliverability", json=complaint).status_code == 403
            answer = httpx.post(f"{server.url}/v1/deliverability", json=complaint,
                                auth=(admin, ""), timeout=5)
            assert answer.json() == {"success": True, "recorded": 1, "suppressed": 1}
            bad = httpx.post(f"{server.url}/v1/deliverability", auth=(admin, ""), timeout=5,
                             json={"events": [{"type": "complaint", "email": "no-at-sign"}]})
            assert bad.status_code == 400

            for user in ("bob", "cy"):  # another journey: skipped, never sent
                client.post("/v1/track", json={"userId": user,
                                               "event": "Go Two"}).raise_for_status()

        def skipped() -> list[tuple[str, str, str]] | None:
            found = [(d.profile_id, d.journey, d.reason) for d in store.recorded_decisions()
                     if d.what == "skipped"]
            return found if len(found) == 2 else None

        assert sorted(server.eventually(skipped, "two suppressed sends")) == [
            ("bob", "two", "suppressed"), ("cy", "two", "suppressed")]
        assert len(sink.delivered) == 1  # cy's first message only
        assert [(s.address, s.reason) for s in store.suppressions()] == [
            ("bob@example.com", "hard_bounce"), ("cy@example.com", "complaint")]
        store.close()
    finally:
        controller.stop()
