"""A YAML alias bomb (a few hundred bytes that expand to billions of values) is refused
at once with a `file:line:column` problem; anchors and aliases as people use them (a
condition shared by two steps) keep working (journeys/yamlsrc.py `too_many_values`)."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import pytest

from channels.config import ChannelConfigError, load
from journeys.errors import InvalidJourney
from journeys.loader import load_library
from journeys.yamlsrc import load_yaml, too_many_values
from tests.engine.helpers import stub_email, write_folder


def bomb(levels: int = 8, width: int = 9) -> str:
    """`a: &a [x, ...]`, `b: &b [*a, ...]`, ...: width ** levels values once expanded."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * width)}]" for p, n in pairwise(names)]
    return "\n".join(lines) + "\n"


def test_a_journey_file_that_is_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"bomb": "journey: bomb\nversion: 1\n"
                                                   "entry: {event: X}\n" + bomb() +
                                                   "steps:\n  - {id: done, kind: exit}\n"})
    started = time.perf_counter()
    with pytest.raises(InvalidJourney) as caught:
        load_library(folder)
    assert time.perf_counter() - started < 1.0  # it ran past 30 s before
    # g's 9 aliases in h stand for 9 copies of 531,441 values each: the most added
    assert [str(p) for p in caught.value.problems] == [
        f"{folder}/bomb.yaml:10:4: anchor &g's aliases expand this file by 54,480,987 "
        "values, over the limit of 100,000: refused (an alias bomb?)"]


def test_the_count_is_linear_even_for_a_deeper_bomb() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidJourney, match=r"^x\.yaml:\d+:\d+: anchor &\w's aliases expand"):
        load_yaml(bomb(levels=16, width=16), "x.yaml")  # 16 ** 16 values
    assert time.perf_counter() - started < 1.0


def test_a_document_just_within_the_limit_loads() -> None:
    assert too_many_values(load_yaml(bomb(levels=5, width=9), "x.yaml").data, "x.yaml") is None
    shared = list(range(10))  # 11 values written, 9 aliases adding 99
    assert too_many_values([shared] * 10, "x", max_values=99) is None
    assert too_many_values([shared] * 10, "x", max_values=98) is not None


def test_a_large_file_without_aliases_is_what_was_written() -> None:
    """Only what aliases add counts: a generated scenario of many events is not a bomb."""
    assert too_many_values({"events": [{"n": i, "text": "y" * 100} for i in range(50_000)]},
                           "x") is None


def test_a_long_string_repeated_by_aliases_is_refused() -> None:
    """Few values, many characters: 20,000 aliases of a 50 KB string are a gigabyte of
    text for the templates' checks and the deployed digest (67 s of validate)."""
    text = "s: &s " + "x" * 50_000 + "\nl: [" + ", ".join(["*s"] * 20_000) + "]\n"
    with pytest.raises(InvalidJourney, match=r"aliases expand this file by 1,000,000,000 "
                                             r"characters of text, over the limit"):
        load_yaml(text, "x.yaml")
    # a long text shared by a few steps is fine
    load_yaml("s: &s " + "x" * 50_000 + "\nl: [*s, *s, *s]\n", "x.yaml")


def test_a_recursive_alias_does_not_loop() -> None:
    data: list[object] = [1]
    data.append(data)
    assert too_many_values(data, "x") is None


SHARED = """
journey: vip
version: 1
entry:
  event: Order Completed
  when: &big_order {event.properties.total: {gte: 100}}
steps:
  - id: thanks
    send: {channel: email, template: thanks}
  - id: again
    wait_for:
      event: Order Completed
      when: *big_order
      timeout: 7d
"""


def test_a_shared_condition_still_works(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"vip": SHARED}, {"thanks": stub_email("thanks")})
    loaded = load_library(folder).journeys["vip"]
    assert len(loaded.conditions) == 2
    assert len(set(map(str, loaded.conditions.values()))) == 1


def test_channels_yaml_too(tmp_path: Path) -> None:
    config = tmp_path / "channels.yaml"
    config.write_text(bomb())
    # read as journeys are (journeys/yamlsrc.py): the anchor named where it is
    with pytest.raises(ChannelConfigError, match=rf"^{config}:7:4: anchor &g's aliases expand "
                                                 r"this file by 54,480,987 values"):
        load(config)


LONG = "s: &s " + "x" * 50_000 + "\n"


@pytest.mark.parametrize(("name", "text", "reason"), [
    # a list of pairs (tuples) nested: 9 ** 7 values under !!pairs
    ("pairs", "p: !!pairs [" + ", ".join(
        f"{n}: &{n} [" + ", ".join(["x"] * 9 if i == 0 else [f"*{'abcdefg'[i - 1]}"] * 9)
        + "]" for i, n in enumerate("abcdefg")) + "]\n", "values"),
    # a long string repeated as mapping keys, and inside a complex (sequence) key
    ("keys", LONG + "m:\n" + "".join(f"  - {{*s : {i}}}\n" for i in range(2_000)),
     "characters"),
    ("complex keys", LONG + "? [" + ", ".join(["*s"] * 2_000) + "]\n: v\n", "characters"),
    # merge keys bring a map's entries into each mapping that merges it
    ("merges", "b: &b {" + ", ".join(f"k{i}: {i}" for i in range(300)) + "}\nl:\n"
     + "".join("  - {<<: *b}\n" for _ in range(400)), "values"),
])
def test_pairs_keys_and_merges_are_counted(name: str, text: str, reason: str) -> None:
    """What a review found past the first count: tuples (!!pairs, complex keys) were not
    walked, keys' characters always counted as written, merged entries as written."""
    with pytest.raises(InvalidJourney, match=rf"aliases expand this file by [\d,]+ {reason}"):
        load_yaml(text, f"{name}.yaml")


def test_a_merge_key_as_people_use_it_loads() -> None:
    data = load_yaml("defaults: &d {channel: email, template: hi}\n"
                     "a: {<<: *d, subject: A}\nb: {<<: *d, subject: B}\n", "x.yaml").data
    assert data["b"]["channel"] == "email"


@pytest.mark.parametrize(("text", "tag", "where"), [
    ("b: &b !!binary aGVsbG8=\nl: [*b, *b]\n", "!!binary", "1:1"),
    ("m:\n  k: !foo bar\n", "!foo", "2:3"),
])
def test_values_of_other_kinds_are_refused(text: str, tag: str, where: str) -> None:
    """`!!binary` bytes and a tag of one's own are nothing a journey reads, and neither
    the count nor `plain` knows their size (a 100 KB !!binary key aliased 2,000 times was
    588 million characters for `plain`)."""
    with pytest.raises(InvalidJourney, match=rf"^x\.yaml:{where}: a value tagged {tag}: "
                                             "not something journeys read"):
        load_yaml(text, "x.yaml")
    # what journeys are made of loads: text, numbers, true/false, null, dates, a custom
    # tag on a mapping
    load_yaml("d: 2026-03-02\nt: 2026-03-02T09:00:00Z\nf: 1.5\nn: null\nb: true\n"
              "m: !mine {a: 1}\n", "x.yaml")
