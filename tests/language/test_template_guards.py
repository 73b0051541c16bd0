"""`journeyman validate` warns about a template reading a trait with no fallback
(journeys/template_guards.py): under StrictUndefined a profile without it gets no
message (skipped as template_error), and validate said nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from journeys.template_guards import unguarded_traits
from tests.conftest import LIBRARY
from tests.engine.helpers import write_folder

ENV = jinja2.Environment()


@pytest.mark.parametrize(("text", "warned"), [
    ("Hi {{ profile.traits.first_name }}", [("first_name", 1)]),
    ("Hi {{ profile.traits['first_name'] }}", [("first_name", 1)]),
    ("Hi {{ profile.traits.first_name | default('there') }}", []),
    ("Hi {{ profile.traits.first_name | d('there') }}", []),
    ("{{ (profile.traits.first_name ~ '!') | default('') }}", []),
    ("{{ profile.traits.a | default(profile.traits.b) }}", [("b", 1)]),
    ("{% if profile.traits.plan is defined %}{{ profile.traits.plan }}{% endif %}", []),
    ("{% if profile.traits.plan is undefined %}-{% else %}{{ profile.traits.plan }}{% endif %}",
     []),
    ("{% if profile.traits.vip %}VIP{% endif %}", [("vip", 1)]),  # the test itself fails
    ("{% if x is defined %}{{ profile.traits.plan }}{% endif %}", [("plan", 1)]),
    ("line one\n{{ profile.traits.plan }}\n{{ profile.traits.plan }}", [("plan", 2)]),
    ("{{ profile.traits.email }} {{ profile.traits.phone }}", []),  # where it goes: there
    ("{{ profile.computed.orders_count }} {{ event.properties.x }}", []),
])
def test_traits_read_without_a_fallback(text: str, warned: list[tuple[str, int]]) -> None:
    assert unguarded_traits(text, ENV) == warned


def test_validate_prints_warnings_and_still_passes(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hi": """\
journey: hi
version: 1
entry: {event: Signed Up}
steps:
  - id: greet
    send: {channel: email, template: greet}
"""}, {"greet": """\
channel: email
subject: "Hi {{ profile.traits.first_name }}"
text: |
  Hello {{ profile.traits.first_name | default('you') }},
  {% if profile.traits.vip %}VIP!{% endif %}
"""})
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(folder)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: 1 journey(s) valid\n"
    lines = done.stderr.splitlines()
    greet = folder / "templates" / "greet.yaml"
    assert [line.split(": warning: ")[0] for line in lines] == [f"{greet}:2:10", f"{greet}:5:1"]
    assert lines[0].endswith("profile.traits.first_name has no fallback: a profile without it "
                             "gets no message (skipped as template_error); write "
                             "{{ profile.traits.first_name | default('...') }} or test it "
                             "with `is defined`")


def test_the_bundled_templates_give_no_warning() -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(LIBRARY)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
