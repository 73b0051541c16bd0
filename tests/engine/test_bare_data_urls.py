"""A URL printed bare from data in an email's text part (`Your site: {{
profile.traits.website }}`) is tracked only if its host is trusted (written in the
template, listed in the policy): usually it is sent as written, untracked. validate
could not see it (docs/engagement.md said so); it now warns where the printed path's
name says it holds a URL (`website`, `site`, `url`, `*_url`, `link`, `homepage`...),
which is all it can know before rendering (journeys/template_links.py `data_urls`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest

from engine.testing import InMemoryEngine
from journeys.loader import load_path
from journeys.template_guards import template_warnings
from journeys.template_links import data_urls
from tests.engine.helpers import write_folder

ENV = jinja2.Environment()
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
text: |
  Hi {{ profile.traits.first_name | default('') }}
  Your site: {{ profile.traits.website }}
  Product: {{ event.properties.product_url | default('') | trim }}
  Shop: https://shop.example/p/{{ event.properties.sku_link }}
"""


def test_the_url_is_sent_untracked_and_validate_warns_at_it(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"mail": MAIL}, {"note": NOTE},
                          policy="consent_required: []\n")
    eng = InMemoryEngine.from_folder(folder, start=datetime(2026, 3, 2, 12, tzinfo=UTC))
    eng.identify("ana", {"email": "ana@example.com", "website": "https://ana.example/"})
    eng.track("ana", "Go", {"product_url": "https://evil.example/p", "sku_link": "1"})
    [message] = eng.channel.messages
    assert "Your site: https://ana.example/\n" in message.rendered.text  # untracked
    assert "Product: https://evil.example/p\n" in message.rendered.text
    assert "Shop: https://shop.example/p/1" not in message.rendered.text  # tracked
    warned = [str(w).removeprefix(f"{folder}/") for w in template_warnings(
        load_path(folder).templates)]
    assert [w.split(": warning: ")[0] for w in warned if "may print a URL" in w] == [
        "templates/note.yaml:5:17", "templates/note.yaml:6:15"]
    assert next(w for w in warned if "may print a URL" in w).endswith(
        "warning: {{ profile.traits.website }} may print a URL (its name says so) in the "
        "text part; a URL read from data is tracked only if its host is written in the "
        "template or listed in the policy's tracking: hosts:, else it is sent as written, "
        "untracked (no Email Clicked for it); to track it, write its host "
        "(https://shop.example/{{ ... }}) or list it (docs/engagement.md)")


@pytest.mark.parametrize(("text", "found"), [
    ("{{ profile.traits.website }}", [(1, "profile.traits.website")]),
    ("a\n{{ event.properties.url | default('') }}", [(2, "event.properties.url")]),
    ("{{ trigger.properties.links }} {{ enrollment.data.homepage }}",
     [(1, "trigger.properties.links"), (1, "enrollment.data.homepage")]),
    ("{{ profile.traits['site'] }}", [(1, "profile.traits.site")]),
    ("{{ profile.traits.first_name }} {{ event.properties.link_text }}", []),
    ("{{ profile.traits.campsite }} {{ unsubscribe_url }}", []),
    ("https://shop.example/{{ event.properties.url }}", []),  # its host is written
    ('<a href="{{ profile.traits.website }}">x</a>', []),  # an href: DATA_LINK's
    ("{% for url in profile.traits.urls %}{{ url }}{% endfor %}", []),  # no data path
    ("{{ oops", []),
])
def test_what_data_urls_finds(text: str, found: list[tuple[int, str]]) -> None:
    assert data_urls(text, ENV) == found


def test_no_warning_where_nothing_is_tracked_or_in_the_html(tmp_path: Path) -> None:
    """`track: false`, a webhook, and the HTML of an email that has its own text part
    (the HTML's text is not sent); an HTML-only email's derived text part is."""
    journey = MAIL + ("  - id: b\n    send: {channel: email, template: quiet}\n"
                      "  - id: c\n    send: {channel: webhook, template: hook}\n"
                      "  - id: d\n    send: {channel: email, template: both}\n"
                      "  - id: e\n    send: {channel: email, template: html}\n")
    folder = write_folder(tmp_path / "j", {"mail": journey}, {
        "note": "channel: email\nsubject: hi\ntext: hi\n",
        "quiet": NOTE + "track: false\n",
        "hook": "channel: webhook\npayload: {url: '{{ profile.traits.website }}'}\n",
        "both": "channel: email\nsubject: hi\nhtml: <p>{{ profile.traits.website }}</p>\n"
                "text: hi\n",
        "html": "channel: email\nsubject: hi\nhtml: <p>{{ profile.traits.website }}</p>\n"})
    warned = [str(w).removeprefix(f"{folder}/") for w in template_warnings(
        load_path(folder).templates) if "may print a URL" in str(w)]
    assert [w.split(": warning: ")[0] for w in warned] == ["templates/html.yaml:3:13"]
