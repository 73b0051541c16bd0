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
