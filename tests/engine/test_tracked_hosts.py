"""Tracked links are no open redirect (journeys/template_links.py): a link is rewritten
to `<public URL>/c/<token>` only if its host is written in the template's own source,
listed in the policy's `tracking: hosts:`, or the public URL's own. A link built from
data (`href="{{ profile.traits.website }}"`, an event property) used to be tracked too,
so anyone who can set a trait could have us mail a signed link on our own domain that
redirects to their site; it is now sent as written."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.testing import InMemoryEngine
from tests.engine.helpers import write_folder

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TOKEN = re.compile(r'/c/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)')

MAIL = """
journey: mail
version: 1
entry: {event: Go}
steps:
  - id: first
    send: {channel: email, template: note}
"""
NOTE = """\
channel: email
subject: hi
html: |
  <p><a href="{{ profile.traits.website }}">Your site</a>
  <a href="https://shop.example/p/{{ event.properties.sku }}">Product</a>
  <a href="{{ event.properties.url }}">From the event</a></p>
text: |
  Your site: {{ profile.traits.website }}
  Product: https://shop.example/p/{{ event.properties.sku }}
"""


def sent(tmp_path: Path, website: str, url: str = "https://evil.example/e",
         policy: str = "consent_required: []\n", note: str = NOTE) -> Any:
    folder = write_folder(tmp_path / "j", {"mail": MAIL}, {"note": note}, policy=policy)
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    assert eng.runner.tracking is not None
    eng.untracked = []  # type: ignore[attr-defined]
    eng.runner.tracking.on_untracked = eng.untracked.append  # type: ignore[attr-defined]
    eng.identify("ana", {"email": "ana@example.com", "website": website})
    eng.track("ana", "Go", {"sku": "boot-1", "url": url})
    [message] = eng.channel.messages
    return eng, message.rendered


def clicks(eng: InMemoryEngine, text: str) -> list[str]:
    """The URLs the message's tracked links redirect to."""
    assert eng.runner.tracking is not None
    found = [eng.runner.tracking.verify_click(t, NOW) for t in TOKEN.findall(text)]
    return [f[2] for f in found if f is not None]


def test_a_link_built_from_a_trait_is_sent_as_written_and_not_tracked(
        tmp_path: Path) -> None:
    eng, rendered = sent(tmp_path, "https://evil.example/phish")
    assert eng.untracked == [2]  # counted (journeyman_untracked_links_total)
    assert 'href="https://evil.example/phish"' in rendered.html
    assert 'href="https://evil.example/e"' in rendered.html  # an event's property too
    assert "Your site: https://evil.example/phish" in rendered.text
    # the literal host is still tracked, in both parts; nothing leads to evil.example
    assert clicks(eng, rendered.html) == ["https://shop.example/p/boot-1"]
    assert clicks(eng, rendered.text) == ["https://shop.example/p/boot-1"]


@pytest.mark.parametrize("website", [
    "https://shop.example@evil.example/",       # userinfo: the browser goes to evil
    "https://evil.example\\@shop.example/",     # a backslash ends the host in a browser
    "https://shop.example.evil.example/",       # a suffix is no subdomain
    "https://evil.example/https://shop.example/",
    "https://shop.example%2eevil.example/",
    "https:///evil.example/",
])
def test_a_url_that_only_looks_like_a_trusted_host_is_not_tracked(
        tmp_path: Path, website: str) -> None:
    eng, rendered = sent(tmp_path, website)
    assert clicks(eng, rendered.html) == ["https://shop.example/p/boot-1"]


def test_a_data_link_to_a_trusted_host_is_tracked(tmp_path: Path) -> None:
    """A trait naming a page of the shop (a host the template writes) is tracked; a host
    the policy lists is tracked, `*.` for its subdomains (not the bare name)."""
    eng, rendered = sent(tmp_path, "https://shop.example/account",
                         url="https://go.partner.example/offer",
                         policy="consent_required: []\ntracking: {hosts: ['*.partner.example']}\n")
    assert clicks(eng, rendered.html) == ["https://shop.example/account",
                                          "https://shop.example/p/boot-1",
                                          "https://go.partner.example/offer"]
    eng, rendered = sent(tmp_path, "https://partner.example/",
                         policy="consent_required: []\ntracking: {hosts: ['*.partner.example', "
                         "Blog.Example]}\n", url="https://blog.example/post")
    assert clicks(eng, rendered.html) == ["https://shop.example/p/boot-1",
                                          "https://blog.example/post"]
    assert 'href="https://partner.example/"' in rendered.html


@pytest.mark.parametrize(("traits", "tracked"), [
    ({"domain": "evil.example", "path": ".evil.example/", "website": "https://help.example/x"},
     ["https://help.example/x", "https://help.example/"]),
    ({"domain": "help.example", "path": "/faq", "website": "https://evil.example/"},
     ["https://help.example/", "https://help.example/faq", "https://help.example/"]),
])
def test_a_host_written_in_a_layout_counts_one_from_an_expression_does_not(
        tmp_path: Path, traits: dict[str, str], tracked: list[str]) -> None:
    folder = tmp_path / "j"
    write_folder(folder, {"mail": MAIL}, {"note": "channel: email\nsubject: hi\n"
                                          "html_file: body.html\n"})
    (folder / "templates" / "layout.html").write_text(
        '<html><body>{% block body %}{% endblock %}'
        '<a href="https://help.example/">Help</a></body></html>')
    (folder / "templates" / "body.html").write_text(
        '{% extends "layout.html" %}{% block body %}'
        '<a href="https://{{ profile.traits.domain }}/">A</a>'
        '<a href="https://help.example{{ profile.traits.path }}">B</a>'
        '<a href="{{ profile.traits.website }}">C</a>{% endblock %}')
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com", **traits})
    eng.track("ana", "Go")
    [message] = eng.channel.messages
    assert clicks(eng, message.rendered.html) == tracked


@pytest.mark.parametrize(("host", "message"), [
    ("https://shop.example/", "write the host alone (shop.example), not a URL"),
    ("*.com", "is not a host name"),
    ("shop example", "is not a host name"),
])
def test_a_listed_host_must_be_a_host_name(tmp_path: Path, host: str, message: str) -> None:
    from journeys.errors import InvalidJourney
    from journeys.loader import load_path

    folder = write_folder(tmp_path / "j", {"mail": MAIL}, {"note": NOTE},
                          policy=f"tracking: {{hosts: ['{host}']}}\n")
    with pytest.raises(InvalidJourney, match=re.escape(message)):
        load_path(folder)


def test_validate_warns_only_where_a_link_would_be_tracked(tmp_path: Path) -> None:
    """No warning for a template with `track: false`, nor for a webhook's payload (not
    tracked at all), nor for the unsubscribe link."""
    from journeys.loader import load_path
    from journeys.template_guards import template_warnings

    journey = MAIL + """\
  - id: second
    send: {channel: email, template: quiet}
  - id: third
    send: {channel: webhook, template: hook}
"""
    folder = write_folder(tmp_path / "j", {"mail": journey}, {
        "note": NOTE, "quiet": NOTE + "track: false\n",
        "hook": "channel: webhook\npayload: {url: 'https://{{ profile.traits.domain }}/'}\n"})
    warned = [str(w) for w in template_warnings(load_path(folder).templates)
              if "comes from data" in str(w)]
    assert [w.split(": warning")[0].removeprefix(str(folder) + "/") for w in warned] == [
        "templates/note.yaml:4:9", "templates/note.yaml:6:6"]
