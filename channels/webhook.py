"""The webhook channel: POST each message as signed JSON to an HTTP endpoint.

The body is one compact JSON object with sorted keys::

    {"at": "...", "id": "<send key>", "journey": "...", "payload": {...},
     "profile_id": "...", "step": "...", "template": "...", "text": "..."}

and the request carries three headers besides `Content-Type`:

* `Idempotency-Key`: the send key. Delivery is at least once (engine/runtime/dispatch.py), so a
  receiver that remembers the keys it has seen can drop a redelivery.
* `X-Journeyman-Timestamp`: the send time in unix seconds.
* `X-Journeyman-Signature`: `v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`.

Signing the timestamp with the body (as Stripe does) lets a receiver refuse a replayed
request: `verify()` below checks both the signature, in constant time, and the age.

Answers: 2xx is delivered; 408, 429 and 5xx, timeouts and connection errors are
transient (the dispatcher retries with backoff); any other answer is permanent. A send
ends within three `timeout`s, however slowly the provider, or the lookup of its name,
answers (channels/deadline.py), and at most 16 KiB of its answer is read, and decoded.
The log says the status and its reason phrase; the start of the answer's body, which may
echo the data sent, is kept with the send only (`journeyman outbox`, the decision log).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from channels.deadline import bounded_client, deadline, longest_exchanges
from channels.resolve import Resolver, ip_literal
from engine.ports import Clock, DeliveryError, Message, WallPaced

TIMESTAMP_HEADER = "X-Journeyman-Timestamp"
SIGNATURE_HEADER = "X-Journeyman-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "journeyman-webhook/1"
_SNIPPET = 200  # characters of a failed answer's body kept with the send (not logged)


class SystemClock(WallPaced):
    """The wall clock, in UTC (the default `clock` of the HTTP adapters)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Journeyman-Signature` value for a body sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp: int | str, body: bytes, signature: str, *,
           now: datetime | float, tolerance: float = 300) -> bool:
    """For receivers: is `signature` (the `X-Journeyman-Signature` header) valid for the raw
    request `body` and `timestamp` (the `X-Journeyman-Timestamp` header), and is that
    timestamp within `tolerance` seconds of `now` (an aware datetime or unix seconds)?

    The signature header may list several comma-separated `v1=` values (for instance
    while a secret is being rotated); one match is enough. Comparison is constant-time.
    """
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if abs(current - sent) > tolerance:
        return False
    expected = sign(secret, sent, body).encode()
    candidates = [part.strip() for part in signature.split(",")]
    return any(hmac.compare_digest(expected, part.encode()) for part in candidates
               if part.startswith("v1="))


def is_http_url(value: str | None) -> bool:
    return value is not None and value.strip().lower().startswith(("http://", "https://"))


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token: a header's name


def checked_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Configured headers, refused at start-up (ValueError) when a name is not a token
    or a value holds a line break or another control character: a request that could
    never go out, or one that smuggles a header of its own."""
    checked: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or any((ord(c) < 32 and c != "\t") or ord(c) == 127
                                             for c in value):
            raise ValueError(f"header {name!r}: the value must be text without line breaks "
                             "or control characters")
        checked[name] = value
    return checked


def send_checked(client: httpx.Client, request: httpx.Request, what: str, *,
                 budget: float | None = None) -> int:
    """Send `request`, mapping the outcome onto the Channel contract: return the status
    on 2xx, raise a transient `DeliveryError` for 408, 429, 5xx, timeouts and network
    errors, and a permanent one for any other answer or a request that can never go out.

    The whole exchange ends within `budget` seconds when the client is a bounded one
    (channels/deadline.py), however slowly the server answers; of the answer's body at
    most `_BODY_CAP` bytes are read (a provider's answer may be endless, or a gzip bomb),
    the rest is never taken off the wire. The status decides: a 2xx whose body then
    breaks off or dawdles is delivered (the provider took the message; sending it again
    would be a duplicate), a failure's keeps what came of its body."""
    try:
        with deadline(budget) if budget is not None else contextlib.nullcontext():
            response = client.send(request, stream=True)
            try:
                status = response.status_code
                head = _body_start(response, decoded=not 200 <= status < 300)
            finally:
                response.close()
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{what}: timed out ({type(exc).__name__})") from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}: {exc}", permanent=True) from exc
    except httpx.TransportError as exc:  # connect/read/write errors, a broken answer
        raise DeliveryError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if 200 <= status < 300:
        return status
    # The body's start is the provider's own words, which may echo the record it refused
    # (a CRM's `{"record": {"last_name": ...}}`): the error's detail, kept with the send
    # (`journeyman outbox`), not its message, which is logged
    snippet = " ".join(_text(head, response)[:_SNIPPET].split())
    error = f"{what}: HTTP {status} {response.reason_phrase}"
    if status in {408, 429} or status >= 500:
        raise DeliveryError(error, detail=snippet)
    # other 4xx; 1xx/3xx (redirects not followed)
    raise DeliveryError(error, permanent=True, detail=snippet)


_BODY_CAP = 16 * 1024  # bytes of an answer's body read at most (and decoded at most)


def _body_start(response: httpx.Response, *, decoded: bool) -> bytes:
    """Up to `_BODY_CAP` bytes of the body off the wire, and for a failure's snippet
    decoded (gzip, deflate) to at most `_BODY_CAP` bytes: httpx's own decoding inflates
    a whole network read at once, 64 KiB of a gzip bomb into 64 MiB. Otherwise it is read
    only so that a short answer leaves the connection reusable."""
    head = bytearray()
    try:
        for chunk in response.iter_raw():
            head += chunk
            if len(head) >= _BODY_CAP:
                break
    except httpx.TransportError:  # cut short, too slow (the deadline): what came is all
        pass
    raw = bytes(head[:_BODY_CAP])
    if not decoded:
        return raw
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in {"", "identity"}:
        return raw
    if encoding in {"gzip", "x-gzip", "deflate"}:
        for wbits in (47, -15):  # a gzip or zlib header; raw deflate
            with contextlib.suppress(zlib.error):
                return zlib.decompressobj(wbits).decompress(raw, _BODY_CAP)
    return b""  # an encoding not asked for: no snippet


def _text(body: bytes, response: httpx.Response) -> str:
    try:
        return body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset nobody knows
        return body.decode("utf-8", errors="replace")


def build_request(client: httpx.Client, method: str, url: str, what: str,
                  **kwargs: Any) -> httpx.Request:
    """`client.build_request`, with a malformed URL or header turned into a permanent
    `DeliveryError` (retrying the same request cannot fix it); so is a host that can
    never be looked up (a label over 63 characters, an empty one), which the lookup
    refused with a bare `UnicodeError`, taken for an adapter's bug: the channel held."""
    try:
        request = client.build_request(method, url, **kwargs)
        host = request.url.host
        if host and not ip_literal(host):
            host.encode("idna")  # as the lookup (socket.getaddrinfo) encodes it
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
        raise DeliveryError(f"{what}: cannot build the request: {exc}", permanent=True) from exc
    return request


class WebhookChannel:
    """POST each message as signed JSON. `url` is the default endpoint; a message whose
    `to` is an http(s) URL goes there instead. One `httpx.Client` (and its connection
    pool) lives as long as the adapter: call `close()`, or use it as a context manager.
    `resolver` looks host names up (channels/resolve.py; the system's by default), within
    the send's deadline like the rest of the exchange; it is for code, not channels.yaml."""

    name = "webhook"

    def __init__(self, url: str | None = None, *, secret: str, timeout: float = 10.0,
                 headers: Mapping[str, str] | None = None, clock: Clock | None = None,
                 allow_to_override: bool = False, resolver: Resolver | None = None) -> None:
        if not isinstance(secret, str) or not secret:
            raise ValueError("a webhook channel needs a non-empty signing 'secret'")
        if url is not None and not is_http_url(url):
            raise ValueError(f"webhook url must be http(s): {url!r}")
        self.url = url
        # A send's `to` may name the URL only when allowed: otherwise profile data could
        # point signed requests at internal addresses (SSRF).
        self.allow_to_override = allow_to_override
        self.secret = secret
        self.timeout = timeout
        self.headers = {"User-Agent": USER_AGENT, **checked_headers(headers)}
        self.clock: Clock = clock or SystemClock()
        self._client = bounded_client(timeout=timeout, follow_redirects=False,
                                      resolver=resolver)

    def target(self, message: Message) -> str:
        if self.allow_to_override and message.to is not None and is_http_url(message.to):
            return message.to.strip()
        if self.url is None:
            raise DeliveryError(f"no webhook URL for send {message.key} (no 'url' option, "
                                "and its 'to' is no http(s) URL)", permanent=True,
                                detail=f"'to' is {message.to!r}")  # a person's: not logged
        return self.url

    @staticmethod
    def body(message: Message) -> bytes:
        """The exact bytes sent (and signed) for a message."""
        rendered = message.rendered
        document = {"id": message.key, "journey": message.journey, "step": message.step,
                    "profile_id": message.profile_id, "at": message.at.isoformat(),
                    "template": rendered.template, "payload": rendered.payload or {},
                    "text": rendered.summary}
        try:
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str,
                              allow_nan=False)
        except ValueError as exc:  # NaN/Infinity, circular data: no retry will fix it
            raise DeliveryError(f"webhook body for {message.key} is not JSON: {exc}",
                                permanent=True) from exc
        return text.encode()

    def send(self, message: Message) -> None:
        url = self.target(message)
        body = self.body(message)
        timestamp = int(self.clock.now().timestamp())
        headers = {**self.headers, "Content-Type": "application/json",
                   IDEMPOTENCY_HEADER: message.key, TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: sign(self.secret, timestamp, body)}
        what = f"webhook {message.key} to {urlsplit(url).netloc.rpartition('@')[2]}"
        request = build_request(self._client, "POST", url, what, content=body, headers=headers)
        began = time.monotonic()
        try:
            send_checked(self._client, request, what, budget=3 * self.timeout)
        except DeliveryError as exc:
            # What the failure cost decides, not its kind. The send's own URL failing in
            # less than a timeout (refused, an error answer, a lookup its resolver gave
            # up at once) is that URL's: the dispatcher goes on with the channel's other
            # sends (a dead URL of one send held them all). A failure that took a
            # timeout or more (every timeout does; an error answer whose body dawdled to
            # the deadline) is the channel's: sends to many slow URLs would hold the
            # dispatcher three timeouts each.
            exc.recipient = url != self.url and time.monotonic() - began < self.timeout
            raise

    def longest_send(self, count: int) -> float:
        return longest_exchanges(self.timeout, count)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["SystemClock", "WebhookChannel", "send_checked", "sign", "verify"]
