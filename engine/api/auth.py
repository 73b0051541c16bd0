"""Who is calling: the write key (HTTP Basic user name, a Bearer token, or `writeKey` in
the body, as Segment's clients send it), a short cache of known keys, and `ApiError`,
a request answered with a 4xx and a JSON reason."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from fastapi import Request

from engine.ports import KeyInfo, KeyStore
from rules.errors import JourneymanError


class ApiError(JourneymanError):
    """Answer the request with `status` and `{"success": false, "reason": ...}`.
    `close`: the body was not read to its end, so the connection is closed after the
    answer (rather than reading and dropping whatever the client still sends)."""

    def __init__(self, status: int, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close


def header_key(request: Request) -> str | None:
    """The key in the Authorization header: HTTP Basic's user name or a Bearer token."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            # validate: `Basic %%%` decoded to nothing ("missing or unknown write key")
            user = base64.b64decode(header[6:].strip(), validate=True).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Authorization header", close=True) from None
        return user or None
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def body_key(body: Any) -> str | None:
    """`writeKey` in the body, as Segment's browser and mobile clients send it."""
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return str(body["writeKey"]) or None
    return None


class KeyCache:
    """Known keys for a few seconds: a hash and a read per request add up at small
    batch sizes. A revoked key stops working within `ttl` seconds; unknown keys are
    never cached, so a new key works at once."""

    def __init__(self, store: KeyStore, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._known: dict[str, tuple[float, KeyInfo]] = {}

    def check(self, key: str) -> KeyInfo | None:
        hit = self._known.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        info = self.store.check_key(key)
        if info is None:
            self._known.pop(key, None)
        else:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[key] = (time.monotonic(), info)
        return info


def require_admin(request: Request, store: KeyStore) -> KeyInfo:
    """The admin key of the request, or a 401/403."""
    key = header_key(request)
    info = store.check_key(key) if key else None
    if info is None:
        raise ApiError(401, "missing or unknown key")
    if not info.admin:
        raise ApiError(403, "this needs an admin key")
    return info
