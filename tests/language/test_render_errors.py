"""Every failure while rendering is a TemplateRenderError (issue 10 §1): not only
Jinja2's own errors but a `TypeError`, a `ZeroDivisionError`, anything an expression
raises. The message names the template, the part, and the file and line where known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from journeys.errors import TemplateRenderError
from journeys.loader import load_path
from journeys.templating import TemplateLibrary, render_string, render_value
from rules.errors import JourneymanError
from tests.engine.helpers import write_folder

CONTEXT: dict[str, Any] = {
    "profile": {"id": "ana", "traits": {"first_name": "Ana"}, "computed": {}},
    "event": {"properties": {"code": "abc", "zero": 0}}, "enrollment": {}, "trigger": {},
    "unsubscribe_url": "https://shop.example/u/tok"}


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the folder is given as `j`: errors name `j/templates/...`


def library(tmp_path: Path, templates: dict[str, str],
            files: dict[str, str] | None = None) -> TemplateLibrary:
    folder = write_folder(tmp_path / "j", {}, templates)
    for name, text in (files or {}).items():
        (folder / "templates" / name).write_text(text)
    return load_path(Path("j")).templates


def test_a_type_error_in_a_block_scalar_names_template_part_file_and_line(
        tmp_path: Path) -> None:
    templates = library(tmp_path, {"code": (
        "channel: email\n"                                     # 1
        "subject: 'Your code'\n"                               # 2
        "text: |\n"                                            # 3
        "  Hi {{ profile.traits.first_name }},\n"              # 4
        "  your code is {{ event.properties.code + 1000 }}.\n"  # 5
    )})
    with pytest.raises(TemplateRenderError) as caught:
        templates.render("code", CONTEXT)
    assert str(caught.value) == (
        "template 'code' (j/templates/code.yaml:5, text): "
        'TypeError: can only concatenate str (not "int") to str')
    assert isinstance(caught.value, JourneymanError)


def test_a_one_line_part_points_at_its_key(tmp_path: Path) -> None:
    templates = library(tmp_path, {"ratio": (
        "channel: sms\n"
        "body: 'ratio {{ 10 / event.properties.zero }}'\n")})
    with pytest.raises(TemplateRenderError, match=(
            r"^template 'ratio' \(j/templates/ratio.yaml:2, body\): "
            r"ZeroDivisionError: division by zero$")):
        templates.render("ratio", CONTEXT)


def test_an_error_in_an_html_file_names_that_file_and_its_line(tmp_path: Path) -> None:
    templates = library(tmp_path, {"page": (
        "channel: email\nsubject: hi\nhtml_file: page.html\n")}, {
        "page.html": "<p>Hi</p>\n<p>\n{{ event.properties.code + 1 }}\n</p>\n"})
    with pytest.raises(TemplateRenderError, match=(
            r"^template 'page' \(j/templates/page.html:3, html_file\): TypeError: ")):
        templates.render("page", CONTEXT)


def test_an_error_in_a_payload_value_names_its_path(tmp_path: Path) -> None:
    templates = library(tmp_path, {"hook": (
        "channel: webhook\n"
        "payload:\n"
        "  order:\n"
        "    total: '{{ event.properties.code * event.properties }}'\n")})
    with pytest.raises(TemplateRenderError, match=(
            r"^template 'hook' \(j/templates/hook.yaml:4, payload.order.total\): TypeError")):
        templates.render("hook", CONTEXT)


def test_undefined_names_keep_being_render_errors(tmp_path: Path) -> None:
    templates = library(tmp_path, {"hi": (
        "channel: email\nsubject: 'Hi {{ profile.traits.nickname }}'\ntext: x\n")})
    with pytest.raises(TemplateRenderError, match=(
            r"^template 'hi' \(j/templates/hi.yaml:2, subject\): UndefinedError: "
            r".*'nickname'")):
        templates.render("hi", CONTEXT)


@pytest.mark.parametrize(("source", "error"), [
    ("{{ event.properties.code + 1000 }}", "TypeError"),
    ("{{ 1 / event.properties.zero }}", "ZeroDivisionError"),
    ("{{ '{:d}'.format(event.properties.code) }}", "ValueError"),
    ("{{ profile.nope.deeper }}", "UndefinedError"),
    ("{{ ''.__class__ }}", "SecurityError"),
])
def test_inline_strings_turn_any_failure_into_a_render_error(source: str, error: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_string(source, CONTEXT)
    assert str(caught.value).startswith(f"cannot render {source!r}: {error}")


def test_a_multi_line_inline_string_says_the_line() -> None:
    with pytest.raises(TemplateRenderError, match=r"\(line 2\): TypeError"):
        render_string("ok\n{{ event.properties.code + 1 }}", CONTEXT)


def test_render_value_turns_nested_failures_into_render_errors() -> None:
    value = {"a": ["fine {{ profile.id }}", {"b": "{{ event.properties.code - 1 }}"}]}
    with pytest.raises(TemplateRenderError, match="TypeError"):
        render_value(value, CONTEXT)
    assert render_value({"a": ["{{ profile.id }}"]}, CONTEXT) == {"a": ["ana"]}
