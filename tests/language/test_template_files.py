"""The files a template reads besides its own (journeys/template_files.py): none outside
the templates folder, even through a symbolic link (`templates/root -> /` and
`{% include "root/etc/hostname" %}` rendered the host's file), and `validate` reports
an `extends`, `include` or `import` of a file that does not exist, where it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from journeys.errors import InvalidJourney, TemplateRenderError
from journeys.loader import load_path
from journeys.templating import load_templates
from tests.engine.helpers import write_folder

CONTEXT: dict[str, Any] = {"profile": {"id": "ana", "traits": {}, "computed": {}},
                           "event": {}, "enrollment": {}, "trigger": {},
                           "unsubscribe_url": "https://shop.example/u/tok"}


def folder_with(tmp_path: Path, templates: dict[str, str],
                files: dict[str, str] | None = None) -> Path:
    folder = write_folder(tmp_path / "j", {}, templates)
    for name, text in (files or {}).items():
        (folder / "templates" / name).write_text(text)
    (tmp_path / "secret.txt").write_text("do not leak")
    (folder / "templates" / "root").symlink_to("/")
    (folder / "templates" / "secret.txt").symlink_to(tmp_path / "secret.txt")
    return folder


@pytest.mark.parametrize("name", ["root/etc/hostname", "secret.txt", "root/etc/passwd"])
def test_an_include_through_a_symbolic_link_out_of_the_folder_is_refused(
        tmp_path: Path, name: str) -> None:
    # A name computed at render (validate cannot judge it): refused by the loader
    folder = folder_with(tmp_path, {"evil": (
        "channel: email\nsubject: hi\ntext: '{% include profile.traits.page %}'\n")})
    templates = load_path(folder).templates
    with pytest.raises(TemplateRenderError) as caught:
        templates.render("evil", {**CONTEXT, "profile": {"traits": {"page": name}}})
    assert f"TemplateNotFound: {name!r} is outside the templates folder" in str(caught.value)
    assert "do not leak" not in str(caught.value)


def test_validate_reports_constant_includes_out_of_the_folder(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"evil": (
        "channel: email\nsubject: hi\n"
        "text: '{% include \"root/etc/hostname\" %} {% include \"secret.txt\" %}'\n")})
    _, problems = load_templates(folder / "templates")
    assert [str(p) for p in problems] == [
        f"{folder}/templates/evil.yaml:3:7: include 'root/etc/hostname': 'root/etc/hostname'"
        " is outside the templates folder (a symbolic link leads out of it)",
        f"{folder}/templates/evil.yaml:3:7: include 'secret.txt': 'secret.txt' is outside "
        "the templates folder (a symbolic link leads out of it)"]


def test_an_html_file_linked_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"evil": (
        "channel: email\nsubject: hi\nhtml_file: secret.txt\n")})
    _, problems = load_templates(folder / "templates")
    assert [str(p) for p in problems] == [
        f"{folder}/templates/evil.yaml:3:12: html_file 'secret.txt' is outside the "
        "templates folder"]


def test_a_link_that_stays_inside_the_folder_is_followed(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {}, {"page": (
        "channel: email\nsubject: hi\ntext: '{% include \"shared/footer.txt\" %}'\n")})
    (folder / "templates" / "parts").mkdir()
    (folder / "templates" / "parts" / "footer.txt").write_text("bye {{ profile.id }}")
    (folder / "templates" / "shared").symlink_to(folder / "templates" / "parts")
    templates, problems = load_templates(folder / "templates")
    assert problems == []
    assert templates.render("page", CONTEXT).text == "bye ana"


def test_validate_reports_a_missing_include_extends_or_import(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {}, {
        "inline": ("channel: email\nsubject: hi\nhtml: |\n  <p>hello</p>\n"
                   "  {% include \"footer.html\" %}\n"
                   "  {% from \"macros.html\" import button %}\n"
                   "  {% include \"gone.html\" ignore missing %}\n"
                   "  {% include profile.traits.page %}\n"
                   "  {% include [\"nope.html\", \"layout.html\"] %}\n"),
        "paged": "channel: email\nsubject: hi\nhtml_file: page.html\n",
        "nofile": "channel: email\nsubject: hi\nhtml_file: nothere.html\n"})
    templates = folder / "templates"
    (templates / "page.html").write_text(
        '{% extends "layout.html" %}\n{% block body %}{% import "forms.html" as f %}'
        '{% endblock %}\n')
    (templates / "layout.html").write_text('<html>\n{% include "footer.html" %}\n</html>\n')
    _, problems = load_templates(templates)
    assert sorted(map(str, problems)) == sorted([
        f"{templates}/inline.yaml:5:1: include 'footer.html': no such file in the templates "
        "folder",
        f"{templates}/inline.yaml:6:1: from ... import 'macros.html': no such file in the "
        "templates folder",
        f"{templates}/page.html:2:1: import 'forms.html': no such file in the templates folder",
        f"{templates}/layout.html:2:1: include 'footer.html': no such file in the templates "
        "folder",
        f"{templates}/nofile.yaml:3:12: html_file 'nothere.html' does not exist"])
    with pytest.raises(InvalidJourney, match=r"include 'footer\.html'"):
        load_path(folder)
