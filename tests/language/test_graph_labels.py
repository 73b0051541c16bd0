"""The diagram's branch edges say their condition in words (they said `case 1`), with
what Mermaid reads as its own syntax written as its entity codes."""

from __future__ import annotations

import re
from pathlib import Path

from journeys.compiler import mermaid
from journeys.graph import MAX_LABEL, case_label
from journeys.loader import load_journey_file

BRANCHY = """\
journey: branchy
version: 1
entry: {event: Signed Up}
steps:
  - id: pick
    branch:
      - when: {event.properties.note: {eq: 'say "hi" <b> | [x] {y}; #58; a:b'}}
        goto: odd
      - when: {any: [{event.properties.price: {lt: 20}}, {event.properties.price: {gt: 100}}]}
        goto: cheap
      - when: {profile.traits.tier: {in: [gold, silver]}}
        goto: tier
      - else: plain
  - id: odd
    exit: completed
  - id: cheap
    exit: completed
  - id: tier
    exit: completed
  - id: plain
    exit: completed
"""


def edge_labels(text: str) -> dict[str, str]:
    return {m[2]: m[3] for m in re.finditer(r"^    (pick) --> (\w+): (.*)$", text, re.M)}


def test_branch_edges_say_their_condition_escaped_for_mermaid(tmp_path: Path) -> None:
    (tmp_path / "branchy.yaml").write_text(BRANCHY)
    model = load_journey_file(tmp_path / "branchy.yaml").journeys["branchy"].model
    labels = edge_labels(mermaid(model))
    assert labels["cheap"] == "event.properties.price #60; 20 or event.properties.price #62; 100"
    assert labels["tier"] == "profile.traits.tier in #91;'gold', 'silver'#93;"
    assert labels["plain"] == "else"
    odd = labels["odd"]
    for raw in ('"', "<", ">", "|", "[", "]", "{", "}", ":", "\n"):
        assert raw not in odd
    assert odd.startswith("event.properties.note = 'say #34;hi#34; #60;b#62; #124; #91;x#93; ")
    assert "#123;y#125;#59; #35;58#59; a#58;b'" in odd


def test_a_long_condition_is_cut_and_one_that_does_not_parse_is_numbered() -> None:
    long = case_label({"all": [{f"profile.traits.t{i}": {"eq": i}} for i in range(9)]}, 0)
    assert len(long) == MAX_LABEL
    assert long.endswith("…")
    assert case_label({"profile.traits.x": {"nope": 1}}, 2) == "case 3"


SPLIT = """\
journey: ab
version: 1
entry: {event: Order Completed}
steps:
  - id: ab
    split:
      variants:
        - {name: plain, weight: 50, goto: a}
        - {name: points, weight: 50, goto: b}
      holdout: 10
  - {id: a, exit: completed}
  - {id: b, exit: completed}
"""


def test_split_edges_say_each_variants_share_of_everyone(tmp_path: Path) -> None:
    """The weights share the people the holdout leaves: with a 10% holdout, 50/50 is 45%
    each (the diagram said 50%, 50% and 10%: 110%)."""
    (tmp_path / "ab.yaml").write_text(SPLIT)
    model = load_journey_file(tmp_path / "ab.yaml").journeys["ab"].model
    text = mermaid(model)
    assert "    ab --> a: plain 45% (weight 50)\n" in text
    assert "    ab --> b: points 45% (weight 50)\n" in text
    assert "    ab --> [*]: holdout 10%\n" in text
    (tmp_path / "ab.yaml").write_text(SPLIT.replace("      holdout: 10\n", ""))
    model = load_journey_file(tmp_path / "ab.yaml").journeys["ab"].model
    assert "    ab --> a: plain 50%\n" in mermaid(model)
