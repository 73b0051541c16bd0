"""A guarded read of something the context never has (`{{ journey.title | default('x')
}}`, `{% if profile.traits.nickname is defined %}` with no `nickname` in traits.yaml)
renders: its fallback. `journeyman validate` failed on it as on an unguarded read; now
it is a warning, printed, and validate passes (journeys/template_fallbacks.py). What
still fails at render stays an error: `{% if journey.title %}` (truth of an undefined),
`profile.trait.first_name | default('x')` (`profile.trait` is read further),
`journey.title | upper | default('x')`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest

from journeys.errors import InvalidJourney
from journeys.loader import load_path
from journeys.template_shapes import unknown_attributes
from journeys.templating import render_string
from tests.engine.helpers import HELLO, write_folder

ENV = jinja2.Environment()
CONTEXT: dict[str, Any] = {
    "profile": {"id": "p1", "traits": {}, "computed": {}},
    "journey": {"id": "hello", "version": 1, "name": "Hello"},
    "enrollment": {"id": "e1", "state": "s", "status": "active", "data": {},
                   "entered_at": "2026-01-01", "variants": {}},
    "event": {"event": "Signed Up", "properties": {}}, "trigger": None,
}

GUARDED = [
    "{{ journey.title | default('x') }}",
    "{{ journey.title | d('x') }}",
    "{{ journey['title'] | default('x', true) }}",
    "{{ journey.title is defined }}{{ journey.title is undefined }}",
    "{% if journey.title is defined %}{{ journey.title }}{% endif %}",
    "{% if journey.title is defined %}{{ journey.title.x.y }}{% endif %}",
    "{% if journey.title is undefined %}-{% else %}{{ journey.title }}{% endif %}",
    "{% if not journey.title is defined %}-{% elif 1 %}{{ journey.title }}{% endif %}",
    "{{ journey.title if journey.title is defined else 'x' }}",
    "{{ journey.title is defined and journey.title }}",
    "{{ journey.title is undefined or journey.title }}",
    "{{ profile.computed.order_count | default(0) }}",
]
UNGUARDED = [
    "{% if journey.title %}x{% endif %}",  # truth: StrictUndefined fails
    "{{ journey.title | upper | default('x') }}",  # upper reads it first
    "{{ 'a' | default(journey.title) }}{{ journey.title }}",
    "{{ journey.title or 'x' }}",
    "{% if journey.title is defined %}-{% else %}{{ journey.title }}{% endif %}",
    "{% if journey.title is defined or 1 %}{{ journey.title }}{% endif %}",
    "{{ journey.title is defined or journey.title }}",
    "{{ journey.title ~ '' | default('x') }}",
    "{% if journey.name is defined %}{{ journey.title }}{% endif %}",
]


@pytest.mark.parametrize("text", GUARDED)
def test_a_guarded_read_renders_and_is_a_warning(text: str) -> None:
    render_string(text, CONTEXT)  # renders: the fallback
    parsed = ENV.parse(text)
    assert list(unknown_attributes(parsed)) == []
    assert [path for path, _, _ in unknown_attributes(parsed, guarded=True)] == [
        "profile.computed.order_count" if "computed" in text else "journey.title"]


@pytest.mark.parametrize("text", UNGUARDED)
def test_an_unguarded_read_fails_at_render_and_is_an_error(text: str) -> None:
    with pytest.raises(Exception, match="title"):
        render_string(text, CONTEXT)
    parsed = ENV.parse(text)
    assert [path for path, _, _ in unknown_attributes(parsed)] == ["journey.title"]
    assert list(unknown_attributes(parsed, guarded=True)) == []


def test_a_read_further_than_the_fallback_stays_an_error() -> None:
    text = "{{ profile.trait.first_name | default('there') }}"
    with pytest.raises(Exception, match="trait"):
        render_string(text, CONTEXT)
    assert [p for p, _, _ in unknown_attributes(ENV.parse(text))] == ["profile.trait"]


JOURNEY = HELLO.replace("{event: Signed Up}", "{event: Checkout Started}") + (
    "  - id: tell\n"
    "    emit:\n"
    "      event: Asked\n"
    "      properties:\n"
    "        about: {title: \"{{ journey.title | default('') }}\"}\n"
    "        who: \"{{ profile.traits.nickname | default('you') }}\"\n")
TEMPLATE = """\
channel: email
subject: "{{ journey.title | default('News') }} for {{ profile.traits.first_name | default('you') }}"
text: |
  Hi {% if profile.traits.nickname is defined %}{{ profile.traits.nickname }}{% endif %}
  {{ event.properties.coupon | default('') }} {{ profile.computed.order_count | default(0) }}
html_file: body.html
"""
TRAITS = ("traits:\n  first_name: {type: string}\n"
          "events:\n  Checkout Started:\n    properties:\n      cart_value: {type: number}\n")


def _folder(tmp_path: Path) -> Path:
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY}, {"welcome": TEMPLATE})
    (folder / "traits.yaml").write_text(TRAITS)
    (folder / "templates" / "body.html").write_text(
        "<p>Hi</p>\n<p>{{ enrollment.entered | default('') }}</p>\n")
    return folder


def test_validate_warns_of_guarded_reads_and_passes(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    load_path(folder)  # valid
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(folder)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: 1 journey(s) valid\n"
    lines = [line.split("/j/", 1)[1] for line in done.stderr.splitlines()]
    always = ("; it is read with a fallback (`default`, `is defined`), so the template "
              "renders, always with the fallback: the context never has it")
    maybe = ("; it is read with a fallback (`default`, `is defined`), so the template "
             "renders, with the fallback wherever it is missing")
    hint = ("; if identify calls set it, declare it: `nickname: {type: string}` under "
            "`traits:` in traits.yaml")
    coupon = ("unknown property 'event.properties.coupon': traits.yaml declares 'Checkout "
              "Started' with cart_value")
    assert lines == [
        f"hello.yaml:7:38: warning: template 'welcome' reads {coupon}{maybe}",
        "hello.yaml:12:24: warning: unknown attribute 'journey.title' in template (journey "
        f"has id, version, name){always}",
        f"hello.yaml:13:14: warning: unknown trait 'profile.traits.nickname' in template "
        f"(not in traits.yaml){hint}{maybe}",
        "templates/body.html:2:7: warning: unknown attribute 'enrollment.entered' in "
        "template (enrollment has id, state, status, data, entered_at, variants) (did you "
        f"mean 'entered_at'?){always}",
        "templates/welcome.yaml:2:14: warning: unknown attribute 'journey.title' in "
        f"template (journey has id, version, name){always}",
        "templates/welcome.yaml:4:12: warning: unknown trait 'profile.traits.nickname' in "
        f"template (not in traits.yaml){hint}{maybe}",
        "templates/welcome.yaml:5:50: warning: unknown computed trait "
        f"'profile.computed.order_count' in template (did you mean 'orders_count'?){always}",
    ]


def test_the_same_reads_unguarded_are_errors(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    for path in (folder / "hello.yaml", folder / "templates" / "welcome.yaml",
                 folder / "templates" / "body.html"):
        text = path.read_text()
        for guard in (" | default('')", " | default('News')", " | default('you')",
                      " | default(0)", " is defined"):
            text = text.replace(guard, "")
        path.write_text(text)  # `{% if profile.traits.nickname %}`: truth, unguarded
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    found = [str(p).split("/j/", 1)[1].split(": ", 1)[0] for p in info.value.problems]
    assert found == ["hello.yaml:7:38", "hello.yaml:12:24", "hello.yaml:13:14",
                     "templates/body.html:2:7", "templates/welcome.yaml:2:14",
                     "templates/welcome.yaml:4:12", "templates/welcome.yaml:5:36"]
    assert not any("warning" in p.message for p in info.value.problems)
