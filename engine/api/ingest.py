"""The event API: compatible with the Segment HTTP tracking API, so existing Segment and
RudderStack clients work unchanged (point their host at us, keep the write key).

POST /v1/{track,identify,alias,page,screen,group,batch} (and /v1/t, /v1/i, ...), auth by
HTTP Basic with the write key as user name, a Bearer token or `writeKey` in the body,
gzip/deflate bodies, Segment's limits (500 KB per request, after inflating: 413; 32 KB
per event: 400), dedupe on `messageId`, clock-skew correction from `sentAt`. Thin:
validation here, storage in the store, processing in the worker.

Hostile bodies cost little: a key in the Authorization header is checked before the
body is read, and the body is read, inflated and parsed under caps (`body.py`). Every
event of a request is checked (`engine.runtime.events`) before any is stored, so a
request is stored whole or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from engine import jsonfast
from engine.api import openapi
from engine.api.auth import ApiError, KeyCache, body_key, header_key
from engine.api.body import MAX_BATCH_BYTES, parse_json, read_body
from engine.api.quota import Quotas, check_scopes
from engine.core.times import iso
from engine.ports import KeyInfo, Store
from engine.runtime.events import (
    EVENT_TYPES,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    YEARS,
    BadEvent,
    check_values,
    instant,
    normalize,
    shown,
)
from engine.runtime.metrics import Metrics

SUCCESS = b'{"success":true}'  # every accepted call's answer, encoded once

Accept = Callable[[list[Any], Any, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Receipt:
    """When a request arrived, and its batch-level `sentAt`: parsed once per request."""

    received: datetime
    received_iso: str
    sent: datetime | None

    @classmethod
    def of(cls, received: datetime, sent_at: Any) -> Receipt:
        try:
            sent = sent_instant(sent_at) if sent_at is not None else None
        except BadEvent as exc:
            raise ApiError(400, str(exc)) from None
        return cls(received, iso(received), sent)


def sent_instant(value: Any) -> datetime:
    """`sentAt`, which must name a time of day: it corrects the event's timestamp to the
    second, and a date alone (midnight) would move every event of the batch by up to a
    day. (A `timestamp` may be a date alone: the client says the event happened then.)
    A date is a date with a zone too (`2026-03-02Z`) and as a week date (`2026-W10-1`)."""
    if isinstance(value, str) and _date_alone(value):
        raise BadEvent(f"sentAt {shown(value)} has no time of day: use ISO 8601 with the "
                       "time, like 2026-03-02T09:00:00Z")
    return instant(value, "sentAt")


@lru_cache(maxsize=1024)  # as `instant`: a batch's events often share their sentAt
def _date_alone(value: str) -> bool:
    text = value.strip()
    for candidate in (text, _ZONE.sub("", text)):
        try:
            date.fromisoformat(candidate)
        except ValueError:
            continue
        return True
    return False


_ZONE = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")  # a UTC offset at the end


def correct_skew(event: dict[str, Any], raw: dict[str, Any], receipt: Receipt) -> None:
    """Segment's rule: timestamp = receivedAt - (sentAt - originalTimestamp).

    The client's clock may be wrong; `sentAt - originalTimestamp` (both client clock) is
    how long ago the event happened, which we subtract from our own receive time.
    `normalize` has checked both timestamps (years 1900-2999), so the difference is
    bounded; a result past the calendar is still refused rather than raised.
    """
    own = raw.get("sentAt")
    sent = sent_instant(own) if own is not None else receipt.sent
    if sent is not None:
        stamp = raw.get("originalTimestamp") or raw.get("timestamp")
        if stamp is not None:
            original = instant(stamp, "originalTimestamp" if raw.get("originalTimestamp")
                               else "timestamp")
            try:
                corrected = receipt.received - (sent - original)
            except OverflowError:
                corrected = None
            if corrected is None or not YEARS[0] <= corrected.year <= YEARS[1]:
                # the years every timestamp is held to: a sentAt years from its timestamp
                # put an order in 3126 (days_since_last_order -401,766)
                raise BadEvent("timestamp and sentAt are too far apart to correct the "
                               "client's clock by them: the event would be dated outside "
                               f"the years {YEARS[0]}-{YEARS[1]}")
            event["timestamp"] = iso(corrected)
            event["originalTimestamp"] = iso(original)
        event["sentAt"] = iso(sent)
    event["receivedAt"] = receipt.received_iso


def checked_size(item: dict[str, Any]) -> int:
    """The encoded size of an event, once its values pass `check_values`.

    The walk over every value costs more than the encoding, so it runs only when the
    encoded bytes cannot vouch for the event: orjson could not encode it (nesting
    deeper than 255, an integer beyond 64 bits), it holds more brackets than
    `MAX_DEPTH` (so it might nest that deep) or an escaped NUL. (Non-finite numbers and
    lone surrogates never get this far: `parse_json` refuses them.)
    """
    try:
        encoded = orjson.dumps(item)
    except TypeError:
        check_values(item)
        return len(jsonfast.dumps_bytes(item))
    if encoded.count(b"{") + encoded.count(b"[") > MAX_DEPTH or b"\\u0000" in encoded:
        check_values(item)
    return len(encoded)


def checked_event(item: dict[str, Any], *, now: datetime,
                  message_id: str | Callable[[], str]) -> dict[str, Any]:
    """One event as the API takes it: its values and size checked, normalized (BadEvent
    for anything the API answers 400). `demo --events` checks its file with it too."""
    size = checked_size(item)
    if size > MAX_EVENT_BYTES:
        raise BadEvent(f"event larger than {MAX_EVENT_BYTES} bytes ({size})")
    return normalize(item, now=now, message_id=message_id)


# Each event type's route, its one-letter short form (Segment's), and the batch's
SINGLE_PATHS = {kind: (f"/v1/{kind}", f"/v1/{kind[0]}") for kind in EVENT_TYPES}
BATCH_PATHS = ("/v1/batch", "/v1/b")
INGEST_PATHS = (*(path for paths in SINGLE_PATHS.values() for path in paths), *BATCH_PATHS)


def add_ingest_routes(app: FastAPI, store: Store, now: Callable[[], datetime],
                      new_id: Callable[[], str], *,
                      on_accepted: Callable[[], None] | None = None,
                      metrics: Metrics | None = None) -> Accept:
    """The Segment routes; returns `accept(items, sent_at, source)`, the one path by which
    anything (a request, an unsubscribe click) queues events."""
    keys = KeyCache(store)
    quotas = Quotas()
    if metrics is not None:  # each key's series from the first scrape (an alert on
        # `rate(...) == 0` sees no series at all until the first event otherwise)
        for source in (*(k.name for k in store.list_keys()), "unsubscribe"):
            metrics.events_ingested.labels(source)

    async def read(request: Request) -> tuple[Any, KeyInfo]:
        """The parsed body and the caller's key. A key in the header is checked before
        the body is read; one only in the body (`writeKey`), right after parsing."""
        info = None
        key = header_key(request)
        if key is not None:
            info = keys.check(key)
            if info is None:
                raise ApiError(401, "missing or unknown write key", close=True)
            quotas.check(info)
        body = parse_json(await read_body(request, MAX_BATCH_BYTES))
        if isinstance(body, dict) and body.get("writeKey") is not None and not isinstance(
                body["writeKey"], str):  # before the 401 it would otherwise give
            raise ApiError(400, "'writeKey' must be a string")
        if info is None:
            key = body_key(body)
            info = keys.check(key) if key else None
            if info is None:
                raise ApiError(401, "missing or unknown write key")
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body, info

    async def accept(items: list[Any], sent_at: Any, source: str, *,
                     batch: bool = False) -> None:
        receipt = Receipt.of(now(), sent_at)
        received = receipt.received
        events = []
        for index, item in enumerate(items):
            # which event of a batch (of one too), as the 400 documents
            where = f"batch[{index}]: " if batch else ""
            if not isinstance(item, dict):
                raise ApiError(400, f"{where}an event must be a JSON object")
            try:
                event = checked_event(item, now=received, message_id=new_id)
                correct_skew(event, item, receipt)
                event["source"] = source  # the key's name (or "unsubscribe"): consent records
            except BadEvent as exc:
                raise ApiError(400, f"{where}{exc}") from None
            events.append(event)
        # All or nothing, one transaction; in a worker thread, so a busy database does
        # not stall the event loop and the requests of other clients.
        accepted = await run_in_threadpool(store.accept_events, events, source)
        if metrics is not None:
            metrics.events_ingested.labels(source).inc(len(accepted))
        if accepted and on_accepted is not None:
            on_accepted()

    async def single(request: Request, kind: str) -> Response:
        body, info = await read(request)
        items = [{**body, "type": kind}]
        check_scopes(info, items)
        quotas.take(info, 1)
        await accept(items, None, info.name)
        return Response(SUCCESS, media_type="application/json")

    for kind, paths in SINGLE_PATHS.items():
        for path in paths:
            app.add_api_route(path, _bind(single, kind), methods=["POST"],
                              **openapi.ingest_route(kind, short=len(path) < 6))

    @app.post("/v1/batch", **openapi.ingest_route("batch"))
    @app.post("/v1/b", **openapi.ingest_route("batch", short=True))
    async def batch(request: Request) -> Response:
        body, info = await read(request)
        if not isinstance(body.get("batch"), list):
            raise ApiError(400, "a batch body is {\"batch\": [events...]}")
        items = body["batch"]
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("type", "track") not in EVENT_TYPES:
                raise ApiError(400, f"batch[{index}]: unknown event type {shown(item.get('type'))}")
        check_scopes(info, items)
        quotas.take(info, len(items))
        await accept(items, body.get("sentAt"), info.name, batch=True)
        return Response(SUCCESS, media_type="application/json")

    return accept


def _bind(handler: Callable[[Request, str], Any], kind: str) -> Callable[[Request], Any]:
    async def route(request: Request) -> Any:
        return await handler(request, kind)

    route.__name__ = f"post_{kind}"
    return route


__all__ = ["MAX_BATCH_BYTES", "MAX_EVENT_BYTES", "add_ingest_routes"]
