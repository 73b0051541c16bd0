"""engine/api/body.py: a body with a run of 19 digits or more is parsed by the standard
library, so long integers stay exact (orjson reads them as floats); any other body by
orjson. The run is found by translating bytes, not by a regular expression."""

from __future__ import annotations

import random
import re

import pytest

from engine.api.body import parse_json
from engine.jsonfast import has_long_number

LONG = re.compile(rb"[0-9]{19}")  # what it stands in for


@pytest.mark.parametrize(("raw", "long"), [
    (b"", False),
    (b"1" * 18, False),
    (b"1" * 19, True),
    (b'{"a": 1234567890123456789}', True),
    (b'{"a": 123456789012345678}', False),
    (b'{"a": "x1234567890123456789y"}', True),  # inside a string too, as before
    (b"12345678901234567 8901234", False),
    (b"\xff" + b"9" * 19 + b"\x00", True),
])
def test_has_long_number(raw: bytes, long: bool) -> None:
    assert has_long_number(raw) is long
    assert (LONG.search(raw) is not None) is long


def test_agrees_with_the_regular_expression_on_random_bodies() -> None:
    rng = random.Random(7)
    alphabet = b'0123456789 .-e"x\xc3\xa9'
    for _ in range(5000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        assert has_long_number(raw) is (LONG.search(raw) is not None), raw


def test_long_integers_stay_exact_and_short_ones_parse_as_before() -> None:
    body = b'{"batch": [{"n": 12345678901234567890123, "m": -9223372036854775809}]}'
    parsed = parse_json(body)
    assert parsed["batch"][0] == {"n": 12345678901234567890123, "m": -9223372036854775809}
    assert parse_json(b'{"n": 123456789012345678, "f": 1.5}') == {"n": 123456789012345678,
                                                                   "f": 1.5}
