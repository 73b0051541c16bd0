"""The event API: compatible with the Segment HTTP tracking API, so existing Segment and
RudderStack clients work unchanged (point their host at us, keep the write key).

POST /v1/{track,identify,alias,page,screen,group,batch} (and /v1/t, /v1/i, ...), auth by
HTTP Basic with the write key as user name or `writeKey` in the body, gzip bodies,
Segment's limits (32 KB per event, 500 KB per batch: 400 and nothing stored), dedupe on
`messageId`, clock-skew correction from `sentAt`. Thin: validation here, storage in the
store, processing in the worker.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from engine import jsonfast
from engine.api.auth import ApiError, KeyCache, write_key
from engine.core.times import iso, parse_timestamp
from engine.ports import KeyInfo, Store
from engine.runtime.events import EVENT_TYPES, BadEvent, normalize
from engine.runtime.metrics import Metrics

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
SUCCESS = b'{"success":true}'  # every accepted call's answer, encoded once

Accept = Callable[[list[Any], Any, str], Awaitable[None]]


def _body(raw: bytes, encoding: str | None) -> Any:
    if encoding and encoding.lower() in ("gzip", "deflate"):
        try:
            raw = gzip.decompress(raw) if encoding.lower() == "gzip" else zlib.decompress(raw)
        except (OSError, zlib.error, EOFError):
            raise ApiError(400, f"body is not valid {encoding.lower()}") from None
        if len(raw) > MAX_BATCH_BYTES:
            raise ApiError(400, f"batch larger than {MAX_BATCH_BYTES} bytes")
    try:
        return jsonfast.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class Receipt:
    """When a request arrived, and its batch-level `sentAt`: parsed once per request."""

    received: datetime
    received_iso: str
    sent_at: Any
    sent: datetime | None

    @classmethod
    def of(cls, received: datetime, sent_at: Any) -> Receipt:
        return cls(received, iso(received), sent_at, parse_timestamp(sent_at))


def correct_skew(event: dict[str, Any], raw: dict[str, Any], receipt: Receipt) -> None:
    """Segment's rule: timestamp = receivedAt - (sentAt - originalTimestamp).

    The client's clock may be wrong; `sentAt - originalTimestamp` (both client clock) is
    how long ago the event happened, which we subtract from our own receive time.
    """
    own = raw.get("sentAt")
    sent = parse_timestamp(own) if own else receipt.sent
    if sent is not None:
        original = parse_timestamp(raw.get("originalTimestamp") or raw.get("timestamp"))
        if original is not None:
            event["timestamp"] = iso(receipt.received - (sent - original))
            event["originalTimestamp"] = iso(original)
        event["sentAt"] = iso(sent)
    event["receivedAt"] = receipt.received_iso


def add_ingest_routes(app: FastAPI, store: Store, now: Callable[[], datetime],
                      new_id: Callable[[], str], *,
                      on_accepted: Callable[[], None] | None = None,
                      metrics: Metrics | None = None) -> Accept:
    """The Segment routes; returns `accept(items, sent_at, source)`, the one path by which
    anything (a request, an unsubscribe click) queues events."""
    keys = KeyCache(store)

    async def read(request: Request) -> tuple[Any, KeyInfo]:
        raw = await request.body()
        limit = MAX_BATCH_BYTES
        if len(raw) > limit:
            raise ApiError(400, f"body larger than {limit} bytes")
        body = _body(raw, request.headers.get("content-encoding"))
        key = write_key(request, body)
        info = keys.check(key) if key else None
        if info is None:
            raise ApiError(401, "missing or unknown write key")
        return body, info

    async def accept(items: list[Any], sent_at: Any, source: str) -> None:
        receipt = Receipt.of(now(), sent_at)
        received = receipt.received
        events = []
        for index, item in enumerate(items):
            where = f"batch[{index}]: " if len(items) > 1 or sent_at is not None else ""
            if not isinstance(item, dict):
                raise ApiError(400, f"{where}an event must be a JSON object")
            size = len(jsonfast.dumps_bytes(item))
            if size > MAX_EVENT_BYTES:
                raise ApiError(400, f"{where}event larger than {MAX_EVENT_BYTES} bytes ({size})")
            try:
                event = normalize(item, now=received, message_id=new_id)
            except BadEvent as exc:
                raise ApiError(400, f"{where}{exc}") from None
            correct_skew(event, item, receipt)
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
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        body = {**body, "type": kind}
        await accept([body], None, info.name)
        return Response(SUCCESS, media_type="application/json")

    for kind in EVENT_TYPES:
        for path in (f"/v1/{kind}", f"/v1/{kind[0]}"):
            app.add_api_route(path, _bind(single, kind), methods=["POST"],
                              name=f"{kind}{'_short' if len(path) < 6 else ''}",
                              summary=f"Segment {kind} call")

    @app.post("/v1/batch", summary="Segment batch call")
    @app.post("/v1/b", include_in_schema=False)
    async def batch(request: Request) -> Response:
        body, info = await read(request)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise ApiError(400, "a batch body is {\"batch\": [events...]}")
        items = body["batch"]
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("type", "track") not in EVENT_TYPES:
                raise ApiError(400, f"batch[{index}]: unknown event type {item.get('type')!r}")
        await accept(items, body.get("sentAt"), info.name)
        return Response(SUCCESS, media_type="application/json")

    return accept


def _bind(handler: Callable[[Request, str], Any], kind: str) -> Callable[[Request], Any]:
    async def route(request: Request) -> Any:
        return await handler(request, kind)

    route.__name__ = f"post_{kind}"
    return route


__all__ = ["MAX_BATCH_BYTES", "MAX_EVENT_BYTES", "add_ingest_routes"]
