"""Templates: the shared layout (inheritance), text derived from HTML, and the sandbox."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from journeys.errors import InvalidJourney, TemplateRenderError
from journeys.loader import load_path
from journeys.templating import Rendered
from tests.conftest import LIBRARY
from tests.engine.helpers import write_folder

CONTEXT = {"profile": {"id": "ana", "traits": {"first_name": "Ana"}, "computed": {}},
           "event": {}, "enrollment": {}, "trigger": {},
           "unsubscribe_url": "https://shop.example/u/tok"}


def test_a_template_extends_the_shared_layout() -> None:
    rendered = load_path(LIBRARY).templates.render("welcome_site", CONTEXT)
    assert rendered.subject == "Welcome aboard, Ana"
    html = rendered.html or ""
    assert "Field &amp; Trail" in html  # the layout's header
    assert "<p>Hi Ana,</p>" in html  # the block
    assert '<a href="https://shop.example/u/tok">Unsubscribe</a>' in html  # the footer
    text = rendered.text or ""
    assert "Hi Ana," in text  # the text part, derived from the HTML
    assert "<p>" not in text


def test_a_loaded_library_does_not_read_its_layout_again(tmp_path: Path) -> None:
    """A running library keeps the layout it rendered with: Jinja's auto-reload (an
    os.stat per `extends` per render) was a fifth of the worker's CPU. An edit takes
    effect when the folder is loaded again, as every other file of the library does."""
    folder = tmp_path / "library"
    shutil.copytree(LIBRARY, folder)
    templates = load_path(folder).templates
    assert "Field &amp; Trail" in (templates.render("welcome_site", CONTEXT).html or "")
    layout = folder / "templates" / "layout.html"
    layout.write_text(layout.read_text().replace("Field &amp; Trail", "Edited Layout"))
    assert "Field &amp; Trail" in (templates.render("welcome_site", CONTEXT).html or "")
    reloaded = load_path(folder).templates
    assert "Edited Layout" in (reloaded.render("welcome_site", CONTEXT).html or "")


@pytest.mark.parametrize("attack", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ profile.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{% include '/etc/passwd' %}",
    "{% include '../../../../etc/passwd' %}",
])
def test_the_sandbox_refuses_to_reach_out(tmp_path: Path, attack: str) -> None:
    folder = write_folder(tmp_path / "j", {}, {"evil": (
        "channel: email\nsubject: hi\ntext: |\n  " + attack + "\n")})
    (tmp_path / "secret.txt").write_text("do not leak")
    # A constant include is refused when the folder loads (validate), the rest at render
    with pytest.raises((TemplateRenderError, InvalidJourney),
                       match=r"is unsafe|no such file in the templates folder"):
        load_path(folder).templates.render("evil", CONTEXT)


def test_a_rendered_message_as_a_document_is_asdict() -> None:
    """The outbox stores `Rendered.document()` and reads it back with `Rendered(**doc)`."""
    import dataclasses

    from journeys.templating import Rendered

    full = Rendered("t", "email", subject="s", html="<p>h</p>", text="h", body="b",
                    payload={"a": [1, {"b": 2}]}, headers={"X-A": "1"})
    for rendered in (full, Rendered("t", "sms")):
        assert rendered.document() == dataclasses.asdict(rendered)
        assert Rendered(**rendered.document()) == rendered


def test_templates_render_with_jinja_globals_from_one_flat_dict(tmp_path: Path) -> None:
    """Compiled templates keep Jinja2's globals (`range`, `namespace`, ...) in one dict
    (`_flat_globals`): copying Jinja2's ChainMap into every render's context was 10 of
    a short template's 14.5 us. The globals still work, in files and inline strings."""
    from journeys.templating import _compiled_string, render_string

    folder = write_folder(tmp_path / "j", {}, {"count": (
        "channel: email\nsubject: '{% for i in range(3) %}{{ i }}{% endfor %}'\n"
        "html: '{% set ns = namespace(n=0) %}{% for i in range(4) %}"
        "{% set ns.n = ns.n + i %}{% endfor %}<p>{{ ns.n }} {{ unsubscribe_url }}</p>'\n")})
    templates = load_path(folder).templates
    rendered = templates.render("count", CONTEXT)
    assert (rendered.subject, rendered.html) == ("012", "<p>6 https://shop.example/u/tok</p>")
    source = "{{ range(2) | list | length }} {{ profile.id }}"
    assert render_string(source, CONTEXT) == "2 ana"
    assert type(_compiled_string(source).globals) is dict
    assert all(type(t.globals) is dict for t in templates._compiled.values())


def test_compile_all_compiles_every_part_before_the_first_render() -> None:
    """A long-running process compiles its templates as it starts (`Service.warm_up`):
    a render afterwards compiles nothing, its HTML with autoescape as a render's own."""
    templates = load_path(LIBRARY).templates
    assert templates._compiled == {}
    templates.compile_all()
    parts = {(tid, name) for tid, tpl in templates.templates.items()
             for name in ("subject", "html", "html_file", "text", "body")
             if getattr(tpl, name) is not None}
    assert parts
    assert set(templates._compiled) == parts
    for (_, name), compiled in templates._compiled.items():
        assert compiled.environment.autoescape is (name in ("html", "html_file")), name
    # the layout the HTML files extend, in the environment's cache
    assert "layout.html" in {name for _, name in templates._html_env.cache}
    compiled = dict(templates._compiled)
    rendered = templates.render("welcome_site", {**CONTEXT, "profile": {
        **CONTEXT["profile"], "traits": {"first_name": "<b>Ana</b>"}}})
    assert "<p>Hi &lt;b&gt;Ana&lt;/b&gt;,</p>" in (rendered.html or "")  # escaped
    assert templates._compiled == compiled  # the same compiled templates, none added


def test_compile_all_compiles_the_payloads_strings(tmp_path: Path) -> None:
    from journeys.templating import _compiled_string

    folder = write_folder(tmp_path / "j", {}, {"hook": (
        "channel: webhook\npayload:\n  order:\n    who: '{{ profile.id }}!'\n"
        "    items: ['{{ profile.traits.first_name }}?', plain]\n")})
    templates = load_path(folder).templates
    _compiled_string.cache_clear()
    templates.compile_all()
    compiled = _compiled_string.cache_info().misses
    assert compiled == 2
    rendered = templates.render("hook", CONTEXT)
    assert rendered.payload == {"order": {"who": "ana!", "items": ["Ana?", "plain"]}}
    assert _compiled_string.cache_info().misses == compiled  # nothing compiled again


def test_with_parts_is_replace_of_the_html_text_and_headers() -> None:
    """`Rendered.with_parts` builds the copy by position: every other field must come
    through, so a field added to `Rendered` fails here until `with_parts` knows it."""
    values: dict[str, Any] = {}
    for item in dataclasses.fields(Rendered):
        named = item.name in ("payload", "headers")
        values[item.name] = {"k": item.name} if named else f"{item.name}-value"
    original = Rendered(**values)
    copied = original.with_parts(html="<p>new</p>", text="new", headers={"X": "1"})
    expected = dataclasses.replace(original, html="<p>new</p>", text="new", headers={"X": "1"})
    for item in dataclasses.fields(Rendered):  # each one: `==` skips compare=False fields
        assert getattr(copied, item.name) == getattr(expected, item.name), item.name
    assert original.html == "html-value"  # the original is untouched


def test_an_unknown_name_or_trait_is_reported_where_the_template_reads_it(
        tmp_path: Path) -> None:
    """`profil.traits.plan` on the third line of an html block, a trait traits.yaml does
    not know in a quoted subject: each problem points at the expression, not at the
    block's `|` or the part's opening quote."""
    folder = write_folder(tmp_path / "j", {}, {"offer": (
        "channel: email\n"
        "subject: \"Hi {{ profile.traits.first_name | default('') }}, "
        "{{ profile.traits.frist_name }}\"\n"
        "html: |\n"
        "  <p>Hello</p>\n"
        "  <p>Dear user, you had</p>\n"
        "  <p>the {{ profil.traits.plan }} plan</p>\n")})
    (folder / "traits.yaml").write_text("traits:\n  first_name: {type: string}\n")
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    shown = [str(p).split("templates/", 1)[1] for p in info.value.problems]
    assert shown == [
        "offer.yaml:2:64: unknown trait 'profile.traits.frist_name' in template (not in "
        "traits.yaml) (did you mean 'first_name'?)",
        "offer.yaml:6:13: unknown variable 'profil' in template; in scope: enrollment, "
        "event, journey, profile, trigger, unsubscribe_url"]
