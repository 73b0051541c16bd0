"""`journeyman validate` warns about a template reading a trait with no fallback
(journeys/template_guards.py): under StrictUndefined a profile without it gets no
message (skipped as template_error), and validate said nothing."""

from __future__ import annotations

import os
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
    # a dict's methods read no trait of their name (`.get` has its own fallback)
    ("{{ profile.traits.get('plan', 'free') }} {{ profile.traits.keys() | list }}", []),
    ("{% for k, v in profile.traits.items() %}{{ v }}{% endfor %}", []),
    ("{{ profile.traits['items'] }}", [("items", 1)]),
    # `is defined` guards its own body, not the else/elif that run when it is undefined
    ("{% if profile.traits.x is defined %}-{% else %}{{ profile.traits.x }}{% endif %}",
     [("x", 1)]),
    ("{% if profile.traits.x is defined %}-{% elif profile.traits.x %}-{% endif %}", [("x", 1)]),
    ("{% if profile.traits.x is defined %}-{% elif y %}{{ profile.traits.x }}{% endif %}",
     [("x", 1)]),
    ("{% if profile.traits.x is undefined %}{{ profile.traits.x }}{% endif %}", [("x", 1)]),
    ("{% if profile.traits.x is undefined %}-{% elif y %}{{ profile.traits.x }}{% else %}"
     "{{ profile.traits.x }}{% endif %}", []),
    ("{% if y %}-{% elif profile.traits.x is defined %}{{ profile.traits.x }}{% else %}"
     "{{ profile.traits.x }}{% endif %}", [("x", 1)]),
    ("{% if not profile.traits.x is defined %}-{% else %}{{ profile.traits.x }}{% endif %}",
     []),
    ("{% if profile.traits.x is not defined %}{{ profile.traits.x }}{% endif %}", [("x", 1)]),
    ("{% if profile.traits.x is defined and y %}{{ profile.traits.x }}{% else %}"
     "{{ profile.traits.x }}{% endif %}", [("x", 1)]),
    ("{% if profile.traits.x is defined or y %}{{ profile.traits.x }}{% endif %}", [("x", 1)]),
    ("{% if profile.traits.x is undefined or y %}-{% else %}{{ profile.traits.x }}{% endif %}",
     []),
    ("{{ profile.traits.x if profile.traits.x is defined else profile.traits.x }}",
     [("x", 1)]),
    ("{{ profile.traits.x if profile.traits.x is defined else 'there' }}", []),
    ("{% if x is defined %}{{ profile.traits.plan }}{% endif %}", [("plan", 1)]),
    ("line one\n{{ profile.traits.plan }}\n{{ profile.traits.plan }}", [("plan", 2)]),
    ("{{ profile.traits.email }} {{ profile.traits.phone }}", []),  # where it goes: there
    ("{{ profile.computed.orders_count }} {{ event.properties.x }}", []),
])
def test_traits_read_without_a_fallback(text: str, warned: list[tuple[str, int]]) -> None:
    assert unguarded_traits(text, ENV) == warned


HI = """\
journey: hi
version: 1
entry: {event: Signed Up}
steps:
  - id: greet
    send: {channel: email, template: greet}
"""


def test_validate_prints_warnings_and_still_passes(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hi": HI}, {"greet": """\
channel: email
subject: "Hi {{ profile.traits.first_name }}"
text: |
  Hello {{ profile.traits.first_name | default('you') }},
  {% if profile.traits.vip %}VIP!{% endif %}
html: |-
  <p>{{ profile.traits.plan }}</p>
"""})
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(folder)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok: 1 journey(s) valid\n"
    lines = done.stderr.splitlines()
    greet = folder / "templates" / "greet.yaml"
    # at the expression itself: in a quoted value, a `|` block, a single-line `|-` block
    assert [line.split(": warning: ")[0] for line in lines] == [
        f"{greet}:2:17", f"{greet}:7:9", f"{greet}:5:9"]
    assert lines[0].endswith("profile.traits.first_name has no fallback: a profile without it "
                             "gets no message (skipped as template_error); write "
                             "{{ profile.traits.first_name | default('...') }} or test it "
                             "with `is defined`")


def test_the_bundled_templates_give_no_warning() -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(LIBRARY)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


WARNINGS = """\
import sys
from pathlib import Path
from journeys.template_guards import template_warnings
from journeys.templating import load_templates
library, problems = load_templates(Path(sys.argv[1]))
for problem in problems:
    print("problem:", problem.message)
for warning in template_warnings(library):
    print("warning:", warning.message)
"""


def _warnings(templates: Path) -> list[str]:
    """What load_templates reports, then template_warnings, for `templates`: in a process
    of its own, with a timeout and a memory limit (a hung read of a FIFO, /dev/zero)."""
    done = subprocess.run(["prlimit", "--as=2000000000", sys.executable, "-c", WARNINGS,
                           str(templates)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "outside"])
def test_warnings_read_no_html_file_outside_the_folder(tmp_path: Path, target: str) -> None:
    # A link to a FIFO hung template_warnings, one to /dev/zero read until memory ran
    # out, and a file outside the folder was parsed: read before any folder check.
    # check() reports such an html_file (so validate stops before the warnings); the
    # warnings skip it.
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "outside").write_text("Hi {{ profile.traits.first_name }}")
    folder = write_folder(tmp_path / "j", {"hi": HI}, {"greet": """\
channel: email
subject: hi
html_file: body.html
"""})
    (folder / "templates" / "body.html").symlink_to(
        target if target.startswith("/") else tmp_path / target)
    assert _warnings(folder / "templates") == [
        "problem: html_file 'body.html' is outside the templates folder"
        if target == "outside" else "problem: html_file 'body.html' does not exist"]


def test_warnings_read_no_fifo_inside_the_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hi": HI}, {"greet": """\
channel: email
subject: hi
html_file: body.html
"""})
    os.mkfifo(folder / "templates" / "body.html")
    assert _warnings(folder / "templates") == [
        "problem: html_file 'body.html' does not exist"]
