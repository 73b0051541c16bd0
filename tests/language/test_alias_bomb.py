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
    # f is the first anchor past the limit: 1 + 9 * 66,430 (e) values
    assert [str(p) for p in caught.value.problems] == [
        f"{folder}/bomb.yaml:9:4: anchor &f expands to 597,871 values once its aliases are "
        "expanded, over the limit of 100,000: refused (an alias bomb?)"]


def test_the_count_is_linear_even_for_a_deeper_bomb() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidJourney, match=r"^x.yaml:\d+:\d+: anchor &\w expands to"):
        load_yaml(bomb(levels=16, width=16), "x.yaml")  # 16 ** 16 values
    assert time.perf_counter() - started < 1.0


def test_a_document_just_within_the_limit_loads() -> None:
    assert too_many_values(load_yaml(bomb(levels=5, width=9), "x.yaml").data, "x.yaml") is None
    assert too_many_values([list(range(10))] * 10, "x", limit=111) is None
    assert too_many_values([list(range(10))] * 10, "x", limit=110) is not None


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
    with pytest.raises(ChannelConfigError, match=rf"^{config}:1:1: this expands to 597,871 "):
        load(config)
