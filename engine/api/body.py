"""Reading a request body that may be hostile, at the ASGI stream, never past a cap.

- A `Content-Length` over the cap is refused before a byte of the body is read (413).
- A body without one (chunked) is read chunk by chunk and refused as soon as it passes
  the cap (413); nothing beyond the cap, plus the server's own read buffer, is held.
- `Content-Encoding: gzip` or `deflate` is inflated as it arrives with zlib's
  `decompressobj(max_length=...)`, so a bomb costs at most the cap in memory and the
  time to inflate that much, then 413.
- JSON is parsed by orjson (which refuses NaN, Infinity, lone surrogates and nesting
  deeper than 1,024). orjson reads an integer beyond 64 bits as a float, silently
  rounded, so a body with a run of 19 digits or more (rare: no timestamp, uuid or phone
  number has one), and a body orjson refuses, is parsed by the standard library instead,
  with hooks that refuse non-finite numbers and integers beyond a double's range (so a
  5,000-digit number is a 400, not a ValueError) and keep every other integer exact.

Every failure is an `ApiError` with a reason; errors raised before the whole body was
read ask the server to close the connection, so it does not read and drop the rest.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from engine.api.auth import ApiError
from engine.jsonfast import has_long_number

MAX_BATCH_BYTES = 500 * 1024  # a request, as sent and once inflated (Segment's limit)
ENCODINGS = ("gzip", "deflate")  # besides none ("identity")


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"body larger than {limit} bytes", close=True)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, inflated if it was compressed; at most `limit` bytes both ways."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large(limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", *ENCODINGS):
        raise ApiError(400, f"Content-Encoding {encoding!r} is not supported: send the body "
                       "as it is, or with gzip or deflate", close=True)
    inflater = Inflater(encoding, limit) if encoding in ENCODINGS else None
    parts: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            parts.append(inflater.feed(chunk) if inflater else chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client went away before the body was read") from None
    if inflater:
        inflater.finish()
    return b"".join(parts)


def _deflate_wbits(head: bytes) -> int:
    """zlib's header (RFC 1950: method 8, the two bytes a multiple of 31), else raw."""
    zlib_header = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    return zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS


class Inflater:
    """gzip (possibly several members, as `gzip.decompress` reads them) or zlib data, fed
    in chunks, inflated to at most `limit` bytes in all."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        # wbits: 16 + MAX_WBITS reads a gzip header and trailer, MAX_WBITS a zlib one;
        # "deflate" is zlib data by the HTTP spec, and raw deflate from some clients
        # (-MAX_WBITS): told apart by the first two bytes (`_deflate_wbits`).
        self.wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self.stream = zlib.decompressobj(self.wbits)
        self._head = b"" if encoding == "deflate" else None  # bytes before the choice
        self.limit = limit
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        if self._head is not None:  # deflate: zlib or raw, seen from its first two bytes
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            self._head = None
            self.wbits = _deflate_wbits(data[:2])
            self.stream = zlib.decompressobj(self.wbits)
        out: list[bytes] = []
        while data:
            room = self.limit - self.size + 1  # one byte more than allowed tells "too much"
            try:
                piece = self.stream.decompress(data, room)
            except zlib.error:
                raise ApiError(400, f"body is not valid {self.encoding}", close=True) from None
            self.size += len(piece)
            if self.size > self.limit:
                raise too_large(self.limit)
            out.append(piece)
            data = self.stream.unconsumed_tail
            if self.stream.eof:
                rest = self.stream.unused_data
                if rest.strip(b"\x00") and self.encoding == "gzip":
                    self.stream = zlib.decompressobj(self.wbits)  # the next gzip member
                    data = rest
                elif rest.strip(b"\x00"):
                    raise ApiError(400, "body has data after the end of the deflate stream",
                                   close=True)
        return b"".join(out)

    def finish(self) -> None:
        if self._head is not None or not self.stream.eof:
            raise ApiError(400, f"body is not valid {self.encoding}: it ends too early")


# A body with a run of 19 digits or more goes to the standard library: orjson would read
# its number as a float. Found by translating the bytes (jsonfast.has_long_number): for a
# batch body of 100 events 10 us, where `re.compile(rb"[0-9]{19}").search` took 176
# (bench/ingest_bench.py's: 32 against 515), ~15% of the API's CPU per event in
# bench/journey_bench.py's race (2026-12-06).


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`, or an ApiError(400) saying what is wrong with it."""
    if not has_long_number(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_int=_integer,
                           parse_float=_finite)
    except _NumberRefusedError as exc:
        raise ApiError(400, str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None
    # A rare body (orjson refused it, or it has long numbers): what orjson would have
    # refused besides (a lone surrogate) must not get in by the side door.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "strings may not contain a lone surrogate (\\ud800-\\udfff)") from None
    except RecursionError:
        raise ApiError(400, "body is nested too deeply") from None
    return value


class _NumberRefusedError(ValueError):
    """A number the parse hooks refuse."""


def _no_constant(name: str) -> Any:
    raise _NumberRefusedError(f"numbers must be finite (no {name})")


MAX_INTEGER_DIGITS = 309  # a double's range: anything longer is beyond ±1.8e308


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _NumberRefusedError("a number is too large (beyond ±1.8e308)")
    value = int(digits)
    try:
        float(value)
    except OverflowError:
        raise _NumberRefusedError("a number is too large (beyond ±1.8e308)") from None
    return value


def _finite(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise _NumberRefusedError("a number is too large (beyond ±1.8e308)")
    return value


__all__ = ["ENCODINGS", "MAX_BATCH_BYTES", "Inflater", "parse_json", "read_body"]
