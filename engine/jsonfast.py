"""JSON in and out of the store and the API, through orjson where it can (several
times faster than the standard library on the hot paths: every event is serialized
into the event log and the inbox, every enrollment row is parsed back), with the
standard library as the fallback for what orjson refuses (integers beyond 64 bits,
non-string keys)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:  # orjson's own call, not through dumps_bytes: the store's every document
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_rows(rows: list[Any]) -> str:
    """`dumps` of a list of rows (a batch's JSON document, engine/store/sql/many_rows.py):
    when orjson refuses the list (an integer beyond 64 bits in one row), only the rows
    it refuses go through the standard library, not the whole batch (200 decision rows
    with one such integer: 0.04 ms instead of 0.14; 0.01 with none)."""
    try:
        return orjson.dumps(rows).decode()
    except TypeError:
        return "[" + ",".join(map(dumps, rows)) + "]"


def loads(text: str | bytes) -> Any:
    """Parse JSON; what orjson refuses (integers beyond 64 bits) goes to the standard
    library, whose JSONDecodeError (orjson's is a subclass) then says what is wrong."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# Digits to "0", every other byte to " ": a run of 19 digits is then a plain substring
# search (re's `[0-9]{19}` scanned ~10 us per kilobyte; this ~1 us).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def has_long_number(raw: bytes) -> bool:
    """Whether `raw` holds a run of 19 digits or more: a number orjson would read as a
    float, or refuse (the API's bodies, engine/api/body.py; the store's documents)."""
    return _LONG_RUN in raw.translate(_DIGITS_ONLY)


def loads_exact(text: str | bytes) -> Any:
    """`loads` for JSON text this process's `dumps` wrote (SQLite's JSON columns):
    orjson reads an integer beyond 64 bits as a float, silently rounded, and `dumps`
    writes one exactly (through the standard library), so text with a run of 19 digits
    goes to the standard library, as the API's body reader does (engine/api/body.py).
    PostgreSQL's JSONB: `loads_jsonb`. A third of an enrollment's documents are `{}` or
    `null` (visits, variants, a trigger event): those are answered without parsing."""
    return _loads_long_digits(text, None)


def loads_jsonb(data: str | bytes) -> Any:
    """`loads_exact` for PostgreSQL's JSONB (psycopg hands over bytes), which writes
    every number as digits: an integer beyond 64 bits comes back exact (orjson rounded
    it: an order id 2**70 + 1 became 1.1805916207174113e+21), and a float JSONB wrote
    as an integer literal comes back as that float (`_jsonb_int`)."""
    return _loads_long_digits(data, _jsonb_int)


def _loads_long_digits(text: str | bytes, parse_int: Callable[[str], Any] | None) -> Any:
    """`loads`, but text with a run of 19 digits through the standard library (its
    integer literals through `parse_int`, when given)."""
    if text in ("{}", b"{}"):  # compared, not hashed
        return {}
    if text in ("null", b"null"):
        return None
    raw = text if isinstance(text, bytes) else text.encode(errors="surrogatepass")
    if has_long_number(raw):
        return json.loads(text, parse_int=parse_int)
    return loads(text)


# A JSON string (skipped whole: a bracket inside one is text) or a bracket
_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[][{}]', re.DOTALL)
_BRACKETS_BYTES = re.compile(_BRACKETS.pattern.encode(), re.DOTALL)


def nested_past(text: str | bytes, limit: int) -> int | None:
    """The offset in `text` (characters, or bytes for bytes) of the first `[` or `{`
    nested deeper than `limit` levels (the outermost array or object is level 1), or
    None. Checked before parsing: the standard library's parser recurses once per level
    (a RecursionError past ~1,000), orjson refuses more than 1,024. Text with no more
    than `limit` brackets in all is answered by counting them."""
    steps: Iterator[tuple[int, int]]  # (offset, +1 opening, -1 closing, 0 a string)
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return None
        steps = ((m.start(), _STEP.get(m.group()[0], 0)) for m in _BRACKETS_BYTES.finditer(text))
    else:
        if text.count("[") + text.count("{") <= limit:
            return None
        steps = ((m.start(), _STEP.get(ord(m.group()[0]), 0)) for m in _BRACKETS.finditer(text))
    depth = 0
    for at, step in steps:
        depth += step
        if depth > limit:
            return at
    return None


_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _jsonb_int(digits: str) -> int | float:
    """An integer literal as PostgreSQL's JSONB prints it: a float of 1e19 or more was
    written by `dumps` as its shortest repr ("1e+23") and comes back as that decimal's
    digits, whose int (10**23) is not the float (99999999999999991611392). When the
    digits are exactly a float's shortest repr and that float differs from them, it is
    that float. (So an integer sent as 10**23 comes back as the float 1e23: JSONB
    cannot tell the two apart. 2**70 + 1 is no float's repr and stays exact.)"""
    value = int(digits)
    if len(digits) >= 20:
        try:
            f = float(value)
        except OverflowError:  # beyond any float: an integer for sure
            return value
        if int(f) != value and int(Decimal(repr(f))) == value:
            return f
    return value
