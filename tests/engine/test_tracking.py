"""Tracked links and opens (engine/runtime/tracking.py): what is rewritten and what is
not, tokens that cannot be altered or pointed elsewhere, the scanner rule, and the
switches that turn tracking off."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from engine.runtime.tracking import TrackingLinks, rewrite, scanner_reason
from engine.runtime.unsubscribe import SigningSecret
from engine.testing import InMemoryEngine
from journeys.link_hosts import TrustedHosts
from journeys.templating import Rendered
from tests.engine.helpers import write_folder

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LINKS = TrackingLinks([SigningSecret("s" * 32)], "https://jm.example/")
TOKEN = re.compile(r"https://jm\.example/c/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")

HTML = ('<p><a href="https://shop.example/cart?x=1&amp;y=2">Cart</a> '
        "<a href='https://shop.example/help'>Help</a> "
        '<a data-track="false" href="https://shop.example/private">Private</a> '
        '<a href="mailto:hi@shop.example">Mail</a> '
        '<a href="https://shop.example/cart?x=1&amp;y=2">Cart again</a> '
        '<a href="https://jm.example/u/abc.def">Unsubscribe</a></p></body>')
TEXT = ("Cart: https://shop.example/cart?x=1&y=2. Private: https://shop.example/private\n"
        "New: (https://shop.example/new) unsubscribe https://jm.example/u/abc.def")


def tracked(rendered: Rendered) -> Rendered:
    return rewrite(rendered, "send-1", LINKS, clicks=True, opens=True,
                   hosts=TrustedHosts.of(["shop.example"]), keep=("https://jm.example/u/",))


def test_links_are_rewritten_per_message_and_position_and_lead_back_to_their_url() -> None:
    out = tracked(Rendered("t", "email", "s", html=HTML, text=TEXT))
    assert out.html is not None
    assert out.text is not None
    found = [LINKS.verify_click(t, NOW) for t in TOKEN.findall(out.html)]
    assert found == [("send-1", 1, "https://shop.example/cart?x=1&y=2"),
                     ("send-1", 2, "https://shop.example/help"),
                     ("send-1", 1, "https://shop.example/cart?x=1&y=2")]
    for untouched in ("https://shop.example/private", "mailto:hi@shop.example",
                      "https://jm.example/u/abc.def"):
        assert untouched in out.html
    assert [LINKS.verify_click(t, NOW) for t in TOKEN.findall(out.text)] == [
        ("send-1", 1, "https://shop.example/cart?x=1&y=2"),
        ("send-1", 3, "https://shop.example/new")]
    assert "Private: https://shop.example/private" in out.text  # marked in the HTML
    assert "https://jm.example/u/abc.def" in out.text
    assert out.html.endswith('style="display:none"></p></body>') or "</body>" in out.html
    [pixel] = re.findall(r'src="https://jm\.example/o/([^"]+)"', out.html)
    assert LINKS.verify_open(pixel, NOW) == "send-1"


def test_an_altered_or_foreign_token_is_refused() -> None:
    out = tracked(Rendered("t", "email", "s", html=HTML))
    token = TOKEN.findall(out.html or "")[0]
    payload, signature = token.split(".")
    assert LINKS.verify_click(token[:-1] + ("A" if token[-1] != "A" else "B"), NOW) is None
    assert LINKS.verify_click(payload[:-2] + "xx." + signature, NOW) is None
    assert LINKS.verify_click(token + "x", NOW) is None
    assert LINKS.verify_click("é." + signature, NOW) is None
    assert LINKS.verify_open(token, NOW) is None  # a click token is no open token
    other = TrackingLinks([SigningSecret("t" * 32)], "https://jm.example")
    assert other.verify_click(token, NOW) is None
    rotated = TrackingLinks([SigningSecret("t" * 32), SigningSecret("s" * 32, NOW)],
                            "https://jm.example")
    assert rotated.verify_click(token, NOW - timedelta(seconds=1)) is not None
    assert rotated.verify_click(token, NOW) is None  # the old secret's grace is over


@pytest.mark.parametrize(("method", "agent", "delivered", "reason"), [
    ("GET", "Mozilla/5.0", NOW - timedelta(minutes=5), None),
    ("HEAD", "Mozilla/5.0", NOW - timedelta(minutes=5), "head_request"),
    ("GET", None, NOW - timedelta(minutes=5), "no_user_agent"),
    ("GET", "Barracuda Sentinel (EE)", NOW - timedelta(minutes=5), "scanner_user_agent"),
    ("GET", "Mozilla/5.0", NOW - timedelta(seconds=2), "too_soon_after_delivery"),
    ("GET", "Mozilla/5.0", None, None),
])
def test_the_scanner_rule(method: str, agent: str | None, delivered: datetime | None,
                          reason: str | None) -> None:
    assert scanner_reason(method, agent, delivered, NOW, timedelta(seconds=5)) == reason


MAIL = """
journey: mail
version: 1
entry: {event: Go}
steps:
  - id: first
    send: {channel: email, template: tracked}
  - id: second
    send: {channel: email, template: untracked}
"""
LINK = "html: '<a href=\"https://shop.example/\">Shop</a>'\n"


@pytest.mark.parametrize(("policy", "first_tracked"), [
    ("timezone: UTC\n", True),
    ("timezone: UTC\ntracking: {clicks: false, opens: false}\n", False),
])
def test_tracking_is_off_per_template_and_per_policy(tmp_path: object, policy: str,
                                                     first_tracked: bool) -> None:
    from pathlib import Path

    folder = write_folder(Path(str(tmp_path)) / "j", {"mail": MAIL}, {
        "tracked": "channel: email\nsubject: a\n" + LINK,
        "untracked": "channel: email\nsubject: b\ntrack: false\n" + LINK}, policy=policy)
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.track("ana", "Go")
    first, second = eng.channel.messages
    assert ("/c/" in (first.rendered.html or "")) is first_tracked
    assert ("/o/" in (first.rendered.html or "")) is first_tracked
    assert second.rendered.html == '<a href="https://shop.example/">Shop</a>'
