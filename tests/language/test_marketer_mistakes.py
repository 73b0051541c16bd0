"""The YAML mistakes a marketer makes first, each said in words with what to do (the
parser's own words follow, for a search), at the line and column of the mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from journeys.errors import InvalidJourney
from journeys.loader import load_path
from journeys.yamlsrc import load_yaml
from tests.engine.helpers import HELLO, write_folder

INDENT = ("this line is not indented like the lines above it: the keys of one mapping, and "
          "the '-' items of one list, start in the same column (indent with spaces)")
BRACES = ("a value that starts with '{' is read as a YAML mapping: put a template in "
          'quotes, "{{ ... }}"')


@pytest.mark.parametrize(("text", "expected"), [
    # `next` one space short of `send`, after a flow mapping
    ("steps:\n  - id: a\n    send: {channel: email, template: t}\n   next: b\n",
     f"x.yaml:4:4: YAML syntax: {INDENT} (the parser says: expected <block end>, but found "
     "'<block mapping start>')"),
    ("steps:\n  - id: a\n    wait: 1d\n - id: b\n",
     f"x.yaml:4:2: YAML syntax: {INDENT} (the parser says: expected <block end>, but found "
     "'<block sequence start>')"),
    ('subject: "Hi {{ x | default("you") }}, there"\n',
     "x.yaml:1:30: YAML syntax: unexpected text after a value: a quoted value ends at its "
     "closing quote (inside \"...\" write 'single quotes', or the other way round) (the "
     "parser says: expected <block end>, but found '<scalar>')"),
    ("steps:\n\t- id: a\n",
     "x.yaml:2:1: YAML syntax: a tab: indent with spaces (the parser says: found character "
     "'\\t' that cannot start any token)"),
    ("subject: Hi: there\n",
     "x.yaml:1:12: YAML syntax: a ':' where none can be: a value that holds ': ' needs "
     "quotes, and a key indented more than the one above it continues that line's value "
     "(the parser says: mapping values are not allowed here)"),
    ("subject: {{ profile.traits.first_name }}, hi\n",
     f"x.yaml:1:41: YAML syntax: {BRACES} (the parser says: expected <block end>, but "
     "found ',')"),
])
def test_yaml_mistakes_are_said_in_words(text: str, expected: str) -> None:
    with pytest.raises(InvalidJourney) as info:
        load_yaml(text, "x.yaml")
    assert [str(p) for p in info.value.problems] == [expected]


def test_an_unquoted_template_and_a_broken_template_file(tmp_path: Path) -> None:
    """`subject: {{ ... }}` alone is valid YAML (a mapping): the template says to quote it,
    and the journey that sends it does not claim the file is missing."""
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": (
        "channel: email\nsubject: {{ profile.traits.first_name }}\ntext: hi\n")})
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    shown = [str(p).split("/j/", 1)[1] for p in info.value.problems]
    assert shown == [
        "hello.yaml:7:38: template 'welcome' cannot be used: templates/welcome.yaml has "
        "problems (listed for that file)",
        f"templates/welcome.yaml:2:10: subject: must be a valid string; {BRACES}",
    ]


def test_a_new_trait_says_where_to_declare_it(tmp_path: Path) -> None:
    """A trait nothing in traits.yaml is near: no "did you mean", so say what to do."""
    journey = HELLO.replace("steps:\n", "steps:\n  - id: who\n    branch:\n"
                            "      - when: {profile.traits.loyalty_tier: {eq: gold}}\n"
                            "        goto: welcome\n      - else: welcome\n")
    folder = write_folder(tmp_path / "j", {"hello": journey}, {"welcome": (
        "channel: email\nsubject: \"{{ profile.traits.loyalty_tier }}\"\n"
        "text: hi\n")})
    (folder / "traits.yaml").write_text("traits:\n  first_name: {type: string}\n")
    with pytest.raises(InvalidJourney) as info:
        load_path(folder)
    hint = ("; if identify calls set it, declare it: `loyalty_tier: {type: string}` under "
            "`traits:` in traits.yaml")
    assert [str(p).split("/j/", 1)[1] for p in info.value.problems] == [
        f"hello.yaml:8:16: unknown trait 'profile.traits.loyalty_tier' (not in "
        f"traits.yaml){hint}",
        f"templates/welcome.yaml:2:14: unknown trait 'profile.traits.loyalty_tier' in "
        f"template (not in traits.yaml){hint}",
    ]
