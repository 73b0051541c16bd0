"""The event API: compatible with the Segment HTTP tracking API, so existing Segment and
RudderStack clients work unchanged (point their host at us, keep the write key).

POST /v1/{track,identify,alias,page,screen,group,batch} (and /v1/t, /v1/i, ...), auth by
HTTP Basic with the write key as user name or `writeKey` in the body, gzip bodies,
Segment's limits (32 KB per event, 500 KB per batch: 400 and nothing stored), dedupe on
`messageId`, clock-skew correction from `sentAt`. Thin: validation here, storage in the
store, processing in the worker.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from engine import jsonfast
from engine.events import EVENT_TYPES, BadEvent, iso, normalize, parse_timestamp
from engine.unsubscribe import UnsubscribeLinks

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


class KeyInfo(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def admin(self) -> bool: ...


class IngestStore(Protocol):
    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        ...

    def check_key(self, key: str) -> KeyInfo | None: ...


SUCCESS = b'{"success":true}'  # every accepted call's answer, encoded once


class ApiError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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


def _write_key(request: Request, body: Any) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "malformed Authorization header") from None
        if user:
            return user
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return str(body["writeKey"])
    return None


class KeyCache:
    """Known keys for a few seconds: a hash and a read per request add up at small
    batch sizes. A revoked key stops working within `ttl` seconds; unknown keys are
    never cached, so a new key works at once."""

    def __init__(self, store: IngestStore, ttl: float = 5.0) -> None:
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


def create_app(store: IngestStore, now: Callable[[], datetime], *,
               new_id: Callable[[], str], profiles: Callable[[str], dict[str, Any] | None]
               | None = None, unsubscribe: UnsubscribeLinks | None = None) -> FastAPI:
    """The API over a store. `now` and `new_id` are the edge's clock and ids."""
    app = FastAPI(title="journeyman event API", version="1",
                  description="Segment-compatible tracking API of journeyman.")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"success": False, "reason": exc.reason}, status_code=exc.status)

    async def read(request: Request) -> tuple[Any, KeyInfo, bytes]:
        raw = await request.body()
        limit = MAX_BATCH_BYTES
        if len(raw) > limit:
            raise ApiError(400, f"body larger than {limit} bytes")
        body = _body(raw, request.headers.get("content-encoding"))
        key = _write_key(request, body)
        info = keys.check(key) if key else None
        if info is None:
            raise ApiError(401, "missing or unknown write key")
        return body, info, raw

    keys = KeyCache(store)

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
        await run_in_threadpool(store.accept_events, events, source)

    async def single(request: Request, kind: str) -> Response:
        body, info, _ = await read(request)
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
        body, info, _ = await read(request)
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            raise ApiError(400, "a batch body is {\"batch\": [events...]}")
        items = body["batch"]
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("type", "track") not in EVENT_TYPES:
                raise ApiError(400, f"batch[{index}]: unknown event type {item.get('type')!r}")
        await accept(items, body.get("sentAt"), info.name)
        return Response(SUCCESS, media_type="application/json")

    @app.get("/v1/profiles/{user_id}", summary="A profile (admin key)")
    async def profile(user_id: str, request: Request) -> JSONResponse:
        key = _write_key(request, None)
        info = store.check_key(key) if key else None
        if info is None:
            raise ApiError(401, "missing or unknown key")
        if not info.admin:
            raise ApiError(403, "this needs an admin key")
        found = profiles(user_id) if profiles else None
        if found is None:
            raise ApiError(404, f"no profile {user_id!r}")
        return JSONResponse(found)

    async def accept_unsubscribe(profile_id: str, channel: str) -> None:
        # An identify through the inbox, like any accepted call, so the change is
        # handled in order with the profile's other events; a new messageId each time,
        # so unsubscribing again after re-subscribing works.
        await accept([{"type": "identify", "userId": profile_id,
                       "traits": {"consent": {channel: False}},
                       "context": {"source": "unsubscribe"}}], None, "unsubscribe")

    if unsubscribe is not None:
        add_unsubscribe_routes(app, unsubscribe, accept_unsubscribe)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def _page(title: str, text: str, form: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), text=html.escape(text),
                                    form=form), status_code=status)


def add_unsubscribe_routes(app: FastAPI, links: UnsubscribeLinks,
                           accept: Callable[[str, str], Any]) -> None:
    """`GET /u/{token}` shows a page with a button; `POST /u/{token}` (the button, or a
    mail client's RFC 8058 one-click POST) unsubscribes. No login: the token is signed."""

    @app.get("/u/{token}", include_in_schema=False)
    async def unsubscribe_page(token: str) -> HTMLResponse:
        found = links.verify(token)
        if found is None:
            return _page("Link not valid", "This unsubscribe link is not valid.", status=404)
        form = ('<form method="post"><input type="hidden" name="List-Unsubscribe" '
                'value="One-Click"><button type="submit">Unsubscribe</button></form>')
        return _page("Unsubscribe", f"Stop receiving {found[1]} messages from us?", form)

    @app.post("/u/{token}", include_in_schema=False)
    async def unsubscribe_now(token: str) -> HTMLResponse:
        found = links.verify(token)
        if found is None:
            return _page("Link not valid", "This unsubscribe link is not valid.", status=404)
        profile_id, channel = found
        await accept(profile_id, channel)
        return _page("Unsubscribed", f"You will not get {channel} messages from us any more.")


def _bind(handler: Callable[[Request, str], Any], kind: str) -> Callable[[Request], Any]:
    async def route(request: Request) -> Any:
        return await handler(request, kind)

    route.__name__ = f"post_{kind}"
    return route


__all__ = ["MAX_BATCH_BYTES", "MAX_EVENT_BYTES", "ApiError", "create_app"]
