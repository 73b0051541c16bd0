"""JSON in and out of the store and the API, through orjson where it can (several
times faster than the standard library on the hot paths: every event is serialized
into the event log and the inbox, every enrollment row is parsed back), with the
standard library as the fallback for what orjson refuses (integers beyond 64 bits,
non-string keys)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


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


def loads_exact(text: str) -> Any:
    """`loads` for JSON text this process's `dumps` wrote (SQLite's JSON columns):
    orjson reads an integer beyond 64 bits as a float, silently rounded, and `dumps`
    writes one exactly (through the standard library), so text with a run of 19 digits
    goes to the standard library, as the API's body reader does (engine/api/body.py).
    Not for PostgreSQL's JSONB, which writes every number as digits (1e308 comes back as
    a 309-digit integer literal) and so cannot tell a float from an integer anyway.
    A third of an enrollment's documents are `{}` or `null` (visits, variants, a trigger
    event): those are answered without parsing."""
    if text == "{}":
        return {}
    if text == "null":
        return None
    if _LONG_RUN in text.encode(errors="surrogatepass").translate(_DIGITS_ONLY):
        return json.loads(text)
    return loads(text)
