"""The files a template pulls in (`include`, `extends`, `import`) are attribute-checked
too, in the context of the template that pulls them in, each problem at the pulled-in
file's line and naming who pulled it in (journeys/template_includes.py). They were not
checked at all: `{{ journey.title }}` in an included footer passed validate and every
send of the template was skipped as `template_error`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from journeys.errors import InvalidJourney
from journeys.loader import load_path
from tests.engine.helpers import HELLO, write_folder

TITLE = ("unknown attribute 'journey.title' in template (journey has id, version, name)")
EVENT_TITLE = ("unknown attribute 'event.title' in template (an event's own data is under "
               "properties: event.properties.title)")


def _folder(tmp_path: Path, template: str, files: dict[str, str]) -> Path:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": template})
    for name, text in files.items():
        (folder / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "templates" / name).write_text(text)
    return folder


def _problems(folder: Path) -> list[str]:
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    return [str(p).replace(f"{folder}/", "") for p in info.value.problems]


def test_an_included_file_is_checked_at_its_own_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, (
        "channel: email\nsubject: hi\nhtml: |\n  <p>Hi</p>\n"
        "  {% include 'parts/footer.html' %}\n"), {
        "parts/footer.html": "<hr>\n<p>{{ journey.title }} {{ journey.name }}</p>\n"})
    assert _problems(folder) == [
        f"templates/parts/footer.html:2:7: {TITLE} (parts/footer.html is included by "
        "templates/welcome.yaml:5)"]


def test_a_layout_an_html_file_extends_and_what_it_includes(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "channel: email\nsubject: hi\nhtml_file: body.html\n", {
        "body.html": "{% extends 'layout.html' %}\n{% block content %}Hi{% endblock %}\n",
        "layout.html": ("<body>\n{% block content %}{% endblock %}\n"
                        "{{ profile.trait.first_name | default('') }}\n"
                        "{% include 'footer.html' %}</body>\n"),
        "footer.html": "{{ enrollment.entered }}\n"})
    assert _problems(folder) == [
        "templates/footer.html:1:4: unknown attribute 'enrollment.entered' in template "
        "(enrollment has id, state, status, data, entered_at, variants) (did you mean "
        "'entered_at'?) (footer.html is included by "
        "templates/layout.html:4)",
        "templates/layout.html:3:4: unknown attribute 'profile.trait' in template (profile "
        "has id, traits, computed) (did you mean 'traits'?) (layout.html is extended by "
        "templates/body.html:1)",
    ]


def test_the_includers_own_names_count_where_it_includes(tmp_path: Path) -> None:
    """Inside `{% for event in ... %}` the included card's `event` is the loop's; the
    same card included outside the loop reads the entry event's, and is checked."""
    folder = _folder(tmp_path, (
        "channel: email\nsubject: hi\ntext: |\n"
        "  {% for event in profile.traits.upcoming | default([]) %}"
        "{% include 'card.txt' %}{% endfor %}\n"
        "  {% set journey = {'title': 'x'} %}{% include 'title.txt' %}\n"), {
        "card.txt": "{{ event.title }} on {{ event.date }}\n",
        "title.txt": "{{ journey.title }}\n"})
    load_path(folder)
    (folder / "templates" / "welcome.yaml").write_text(
        "channel: email\nsubject: hi\ntext: |\n  {% include 'card.txt' %}\n")
    assert _problems(folder) == [
        f"templates/card.txt:1:4: {EVENT_TITLE} (card.txt is included by "
        "templates/welcome.yaml:4)",
        "templates/card.txt:1:25: unknown attribute 'event.date' in template (an event's own "
        "data is under properties: event.properties.date) (card.txt is included by "
        "templates/welcome.yaml:4)"]


def test_an_import_with_context_and_a_cycle(tmp_path: Path) -> None:
    """A cycle of includes ends; each problem is said once, whoever includes the file."""
    folder = _folder(tmp_path, (
        "channel: email\nsubject: \"{% include 'a.txt' %}\"\ntext: |\n"
        "  {% import 'macros.txt' as m with context %}{{ m.hi() }}\n"
        "  {% include 'b.txt' %}\n"), {
        "a.txt": "{% if profile.id %}{% include 'b.txt' %}{% endif %}{{ journey.title }}\n",
        "b.txt": "{% if profile.id %}{% include 'a.txt' %}{% endif %}\n",
        "macros.txt": "{% macro hi() %}Hi {{ journey.titel }}{% endmacro %}\n"})
    problems = _problems(folder)
    assert problems == [
        f"templates/a.txt:1:55: {TITLE} (a.txt is included by "
        "templates/welcome.yaml:2)",
        "templates/macros.txt:1:23: unknown attribute 'journey.titel' in template "
        "(journey has id, version, name) (macros.txt is imported "
        "by templates/welcome.yaml:4)"]


def test_a_guarded_read_in_an_included_file_is_a_warning(tmp_path: Path) -> None:
    folder = _folder(tmp_path, (
        "channel: email\nsubject: hi\ntext: |\n  Hi\n  {% include 'footer.txt' %}\n"), {
        "footer.txt": "{{ journey.title | default('') }}\n"})
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(folder)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"{folder}/templates/footer.txt:1:4: warning: {TITLE}; it is read with a fallback "
        "(`default`, `is defined`), so the template renders, always with the fallback: the "
        f"context never has it (footer.txt is included by {folder}/templates/welcome.yaml:5)"]
