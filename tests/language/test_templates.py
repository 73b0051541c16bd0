"""Templates: the shared layout (inheritance), text derived from HTML, and the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.errors import TemplateRenderError
from journeys.loader import load_path
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
    templates = load_path(folder).templates
    with pytest.raises(TemplateRenderError, match=r"is unsafe|not found in search path|etc/passwd"):
        templates.render("evil", CONTEXT)
