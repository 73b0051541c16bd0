"""The SMS channel against a real local HTTP server: configurable request shapes, basic
auth, idempotency keys, status mapping and retries through the real outbox dispatcher."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from channels.sms import SmsChannel
from engine.ports import DeliveryError, Message, OutboxEntry
from engine.runtime.dispatch import Dispatcher
from engine.testing import FakeClock, InMemoryStore
from journeys.templating import Rendered
from tests.channels.http_server import Reply, ScriptedServer
from tests.store.helpers import T0, outbox_entry

TWILIO_SHAPE = {"To": "{to}", "Body": "{text}", "From": "{from_}"}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(Reply(201, body=b'{"sid": "SM1"}')) as srv:
        yield srv


def sms_entry(key: str = "e1:sms:0", to: str | None = "+15550123",
              body: str | None = "Your code is 4711", text: str | None = None) -> OutboxEntry:
    return replace(outbox_entry(key), channel="sms", to=to, step="code",
                   rendered=Rendered("otp", "sms", body=body, text=text))


def message(key: str = "e1:sms:0", **kwargs: Any) -> Message:
    return sms_entry(key, **kwargs).message()


# --- request shapes ---------------------------------------------------------------------


def test_json_shape_with_basic_auth_and_idempotency_key(server: ScriptedServer) -> None:
    shape = {**TWILIO_SHAPE, "Ref": "jm-{key}", "Priority": 2, "Flash": False,
             "Meta": {"note": "to {to}", "tags": ["otp", "{key}"]}}
    with SmsChannel(server.url + "/v1/messages", auth=("AC123", "s3cret"),
                    from_number="+15550100", body_template=shape,
                    headers={"X-Api-Version": "2"}) as sms:
        sms.send(message())
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(
        b"AC123:s3cret").decode()
    assert request.headers["idempotency-key"] == "e1:sms:0"
    assert request.headers["x-api-version"] == "2"
    assert json.loads(request.body) == {
        "To": "+15550123", "Body": "Your code is 4711", "From": "+15550100",
        "Ref": "jm-e1:sms:0", "Priority": 2, "Flash": False,
        "Meta": {"note": "to +15550123", "tags": ["otp", "e1:sms:0"]}}


def test_form_shape(server: ScriptedServer) -> None:
    with SmsChannel(server.url + "/Messages.json", form=True, from_number="+15550100",
                    body_template=TWILIO_SHAPE, auth=("u", "p")) as sms:
        sms.send(message(body="Héllo & welcome {braces} 100%"))
    [request] = server.requests
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" in request.headers
    assert parse_qs(request.body.decode(), strict_parsing=True) == {
        "To": ["+15550123"], "Body": ["Héllo & welcome {braces} 100%"],
        "From": ["+15550100"]}


def test_default_shape_and_no_auth(server: ScriptedServer) -> None:
    with SmsChannel(server.url) as sms:
        sms.send(message())
    with SmsChannel(server.url, from_number="+15550100") as sms:
        sms.send(message())
    first, second = server.requests
    assert json.loads(first.body) == {"to": "+15550123", "text": "Your code is 4711"}
    assert json.loads(second.body) == {"to": "+15550123", "text": "Your code is 4711",
                                       "from": "+15550100"}
    assert "authorization" not in first.headers


def test_get_puts_the_fields_in_the_query_string(server: ScriptedServer) -> None:
    with SmsChannel(server.url + "/send", method="get", auth=("u", "p"),
                    body_template={"dest": "{to}", "msg": "{text}"}) as sms:
        sms.send(message())
    [request] = server.requests
    assert request.method == "GET"
    parts = urlsplit(request.path)
    assert parts.path == "/send"
    assert parse_qs(parts.query) == {"dest": ["+15550123"], "msg": ["Your code is 4711"]}
    assert request.body == b""


def test_text_is_the_body_else_the_text(server: ScriptedServer) -> None:
    with SmsChannel(server.url) as sms:
        sms.send(message(body=None, text="plain text"))
    assert json.loads(server.requests[0].body)["text"] == "plain text"


# --- refusals before any request ------------------------------------------------------


@pytest.mark.parametrize("to", [None, "", "   "])
def test_no_phone_number_is_permanent(server: ScriptedServer, to: str | None) -> None:
    with SmsChannel(server.url) as sms, pytest.raises(DeliveryError, match="no phone") as caught:
        sms.send(message(to=to))
    assert caught.value.permanent
    assert server.requests == []


def test_too_long_is_permanent_and_the_limit_itself_is_fine(server: ScriptedServer) -> None:
    with SmsChannel(server.url, max_length=160) as sms:
        with pytest.raises(DeliveryError, match="161 characters") as caught:
            sms.send(message(body="x" * 161))
        assert caught.value.permanent
        assert server.requests == []
        sms.send(message(body="é" * 160))
    assert len(server.requests) == 1


def test_the_default_limit_is_1600(server: ScriptedServer) -> None:
    with SmsChannel(server.url) as sms:
        with pytest.raises(DeliveryError) as caught:
            sms.send(message(body="x" * 1601))
        assert caught.value.permanent
        sms.send(message(body="x" * 1600))
    assert len(server.requests) == 1


def test_empty_text_is_permanent(server: ScriptedServer) -> None:
    with SmsChannel(server.url) as sms, pytest.raises(DeliveryError, match="empty") as caught:
        sms.send(message(body=None, text=None))
    assert caught.value.permanent


@pytest.mark.parametrize(("shape", "form", "error"), [
    ({"To": "{phone}"}, False, "unknown field"),
    ({"To": "{to"}, False, "To"),
    ({"To": "{}"}, False, "unknown field"),
    ({"Meta": {"a": "{to}"}}, True, "cannot nest"),
    ({"Meta": {"a": "{nope}"}}, False, "unknown field"),
])
def test_bad_body_templates_are_refused_at_startup(shape: dict[str, Any], form: bool,
                                                   error: str) -> None:
    with pytest.raises(ValueError, match=error):
        SmsChannel("http://127.0.0.1:9", body_template=shape, form=form)


@pytest.mark.parametrize("shape", [{"Meta": {"a": "{to}"}}, {"To": ["{to}", {"b": 1}]}])
def test_a_get_query_is_as_flat_as_a_form(shape: dict[str, Any]) -> None:
    """A mapping in a GET's query went out as Python's repr (`Meta=%7B%27a%27...`) on
    every send; refused at startup, as for a form."""
    with pytest.raises(ValueError, match=r"cannot nest|plain values only"):
        SmsChannel("http://127.0.0.1:9", method="get", body_template=shape)


# --- answers and retries ----------------------------------------------------------------


@pytest.mark.parametrize(("status", "permanent"), [
    (408, False), (429, False), (500, False), (503, False),
    (400, True), (401, True), (403, True), (404, True), (422, True)])
def test_status_mapping(server: ScriptedServer, status: int, permanent: bool) -> None:
    server.script.append(status)
    with SmsChannel(server.url) as sms, pytest.raises(DeliveryError,
                                                      match=f"HTTP {status}") as caught:
        sms.send(message())
    assert caught.value.permanent is permanent


@pytest.mark.parametrize(("first_reply", "error"), [
    (Reply(503), "HTTP 503"), (Reply(201, sleep=1.0), "timed out")])
def test_503_or_a_timeout_then_ok_is_retried_and_delivered_once(
        server: ScriptedServer, first_reply: Reply, error: str) -> None:
    server.script.append(first_reply)
    store, clock = InMemoryStore(), FakeClock(T0)
    store.enqueue_send(sms_entry())
    with SmsChannel(server.url, form=True, body_template=TWILIO_SHAPE,
                    from_number="+15550100", timeout=0.2) as sms:
        dispatcher = Dispatcher(store, {"sms": sms}, clock)
        dispatcher.dispatch_due()
        record = store.outbox_records()[0]
        assert (record.status, record.attempts) == ("pending", 1)
        assert error in (record.last_error or "")
        due = store.next_outbox_at()
        assert due is not None
        clock.set(due)
        dispatcher.dispatch_due()
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("sent", 2)
    first, second = server.requests
    assert first.body == second.body
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "e1:sms:0"
    assert store.next_outbox_at() is None


def test_no_phone_through_the_dispatcher_is_skipped_as_no_address(
        server: ScriptedServer) -> None:
    store, clock = InMemoryStore(), FakeClock(T0)
    store.enqueue_send(sms_entry(to=None))
    with SmsChannel(server.url) as sms:
        Dispatcher(store, {"sms": sms}, clock).dispatch_due()
    assert store.outbox_records()[0].status == "skipped"
    [decision] = store.decisions
    assert decision.reason == "no_address"
    assert store.next_outbox_at() is None
    assert server.requests == []
