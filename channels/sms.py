"""The SMS channel: hand each message to an HTTP SMS provider (Twilio, Vonage, an in-house
gateway, ...) with a configurable request shape.

`body_template` maps request fields to `str.format` templates over `to`, `text`, `key`
and `from_`, e.g. Twilio's form-encoded API::

    SmsChannel("https://api.twilio.com/2010-04-01/Accounts/AC.../Messages.json",
               auth=("AC...", "token"), form=True, from_number="+15550100",
               body_template={"To": "{to}", "Body": "{text}", "From": "{from_}"})

Non-string values are sent as they are; nested dicts and lists (JSON only) are filled in
recursively; write a literal brace as `{{` or `}}`. With `method="GET"` the fields go in
the query string instead of a body. Every request carries `Idempotency-Key: <send key>`.

The text is the rendered `body` (else `text`). No phone number, no text, or a text longer
than `max_length` characters are permanent failures; the provider's answers map as for
webhooks (channels/webhook.py): 2xx sent, 408/429/5xx and network errors retried, any
other answer permanent.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any, Self

from channels.deadline import bounded_client, longest_exchanges
from channels.resolve import Resolver
from channels.webhook import (
    IDEMPOTENCY_HEADER,
    build_request,
    checked_headers,
    is_http_url,
    send_checked,
)
from engine.ports import DeliveryError, Message

FIELDS = frozenset({"to", "text", "key", "from_"})
USER_AGENT = "journeyman-sms/1"
SMS_METHODS = ("POST", "PUT", "PATCH", "GET")  # GET: the fields go in the query
_SCALARS = (str, int, float, bool, type(None))


def _check_template(value: Any, *, form: bool, where: str) -> None:
    """Refuse at startup what would fail on every send: unknown fields, bad format
    strings, shapes a form body cannot carry."""
    if isinstance(value, str):
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise ValueError(f"sms body_template {where}: {exc} in {value!r}") from None
        for _, field, _, _ in parsed:
            if field is None:
                continue
            name = field.split(".", 1)[0].split("[", 1)[0]
            if name not in FIELDS:
                raise ValueError(f"sms body_template {where}: unknown field {{{field}}} in "
                                 f"{value!r}; fields: {', '.join(sorted(FIELDS))}")
    elif isinstance(value, Mapping):
        if form:
            raise ValueError(f"sms body_template {where}: a form body cannot nest a mapping")
        for key, item in value.items():
            _check_template(item, form=form, where=f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if form and not isinstance(item, _SCALARS):
                raise ValueError(f"sms body_template {where}[{index}]: a form list holds "
                                 f"plain values only")
            _check_template(item, form=form, where=f"{where}[{index}]")
    elif not isinstance(value, _SCALARS):
        raise ValueError(f"sms body_template {where}: unsupported value {value!r}")


def _fill(value: Any, fields: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**fields)
    if isinstance(value, Mapping):
        return {key: _fill(item, fields) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, fields) for item in value]
    return value


class SmsChannel:
    """Send each message through an HTTP SMS provider. One `httpx.Client` lives as long as
    the adapter: call `close()`, or use it as a context manager. `resolver` looks the
    provider's host name up (channels/resolve.py; the system's by default), within the
    send's deadline; it is for code, not channels.yaml."""

    name = "sms"

    def __init__(self, url: str, *, method: str = "POST",
                 auth: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None,
                 body_template: Mapping[str, Any] | None = None, form: bool = False,
                 from_number: str | None = None, timeout: float = 10.0,
                 max_length: int = 1600, resolver: Resolver | None = None) -> None:
        if not is_http_url(url):
            raise ValueError(f"sms provider url must be http(s): {url!r}")
        if max_length < 1:
            raise ValueError("sms max_length must be at least 1")
        if body_template is None:
            body_template = {"to": "{to}", "text": "{text}"}
            if from_number is not None:
                body_template = {**body_template, "from": "{from_}"}
        if not isinstance(method, str) or method.upper() not in SMS_METHODS:
            raise ValueError(f"sms method must be one of {', '.join(SMS_METHODS)}, "
                             f"not {method!r}")
        for field, template in body_template.items():
            # a query string is as flat as a form (a mapping in it went out as Python's
            # repr, `a=%7B%27b%27...`, on every send)
            _check_template(template, form=form or method.upper() == "GET",
                            where=repr(field))
        self.url = url
        self.method = method.upper()
        self.body_template = dict(body_template)
        self.form = form
        self.from_number = from_number
        self.max_length = max_length
        self.headers = {"User-Agent": USER_AGENT, **checked_headers(headers)}
        self.timeout = timeout
        self._client = bounded_client(timeout=timeout, auth=auth, follow_redirects=False,
                                      resolver=resolver)

    def fields(self, message: Message) -> dict[str, Any]:
        """The request fields for a message (checks it can be sent at all)."""
        to = (message.to or "").strip()
        if not to:
            raise DeliveryError(f"sms {message.key}: no phone number", permanent=True)
        rendered = message.rendered
        text = rendered.body or rendered.text or ""
        if not text.strip():
            raise DeliveryError(f"sms {message.key}: empty text", permanent=True)
        if len(text) > self.max_length:
            raise DeliveryError(f"sms {message.key}: text is {len(text)} characters, over the "
                                f"limit of {self.max_length}", permanent=True)
        values = {"to": to, "text": text, "key": message.key, "from_": self.from_number or ""}
        filled: dict[str, Any] = _fill(self.body_template, values)
        return filled

    def send(self, message: Message) -> None:
        fields = self.fields(message)
        headers = {**self.headers, IDEMPOTENCY_HEADER: message.key}
        what = f"sms {message.key}"
        if self.method == "GET":
            request = build_request(self._client, "GET", self.url, what, params=fields,
                                    headers=headers)
        elif self.form:
            request = build_request(self._client, self.method, self.url, what, data=fields,
                                    headers=headers)
        else:
            request = build_request(self._client, self.method, self.url, what, json=fields,
                                    headers=headers)
        send_checked(self._client, request, what, budget=3 * self.timeout)

    def longest_send(self, count: int) -> float:
        return longest_exchanges(self.timeout, count)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["SmsChannel"]
