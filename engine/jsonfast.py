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


def loads_exact(text: str | bytes) -> Any:
    """`loads` for JSON the store reads back (SQLite's JSON columns, PostgreSQL's JSONB
    through psycopg, which hands over bytes): orjson reads an integer beyond 64 bits as
    a float, silently rounded, and `dumps` writes one exactly (through the standard
    library), so text with a run of 19 digits goes to the standard library, as the API's
    body reader does (engine/api/body.py).

    PostgreSQL's JSONB writes every number as digits, so a float of 1e19 or more comes
    back as an integer literal (1e21 as 1000000000000000000000): read here as an int of
    the same value, where orjson would have rounded every integer beyond 64 bits (an
    order id 2**70 + 1 became 1.1805916207174113e+21). The value is kept, not the type.
    A third of an enrollment's documents are `{}` or `null` (visits, variants, a trigger
    event): those are answered without parsing."""
    if text in ("{}", b"{}"):  # compared, not hashed
        return {}
    if text in ("null", b"null"):
        return None
    raw = text if isinstance(text, bytes) else text.encode(errors="surrogatepass")
    if _LONG_RUN in raw.translate(_DIGITS_ONLY):
        return json.loads(text)
    return loads(text)
