"""The webhook channel against a real local HTTP server: signing, idempotency keys, status
mapping, and retries through the real outbox dispatcher."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from channels.webhook import WebhookChannel, sign, verify
from engine.ports import DeliveryError, Message, OutboxEntry
from engine.runtime.dispatch import Dispatcher
from engine.testing import FakeClock, InMemoryStore
from journeys.templating import Rendered
from tests.channels.http_server import Reply, ScriptedServer
from tests.store.helpers import T0, outbox_entry

SECRET = "whsec_test"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def webhook(server: ScriptedServer, clock: FakeClock) -> Iterator[WebhookChannel]:
    with WebhookChannel(server.url + "/hooks", secret=SECRET, clock=clock,
                        headers={"X-Tenant": "acme"}) as channel:
        yield channel


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- messages and the dispatcher -------------------------------------------------------

RENDERED = Rendered("order_hook", "webhook", payload={"order": "A-17", "total": 42.5,
                                                      "items": ["tea", "café"]})


def webhook_entry(key: str = "e1:hook:0", to: str | None = None) -> OutboxEntry:
    return replace(outbox_entry(key), channel="webhook", to=to, step="notify",
                   rendered=RENDERED)


def message(key: str = "e1:hook:0", to: str | None = None) -> Message:
    return webhook_entry(key, to).message()


def dispatch(store: InMemoryStore, clock: FakeClock, dispatcher: Dispatcher,
             rounds: int = 5) -> None:
    """Dispatch, then move the clock to each retry and dispatch again."""
    dispatcher.dispatch_due()
    for _ in range(rounds):
        due = store.next_outbox_at()
        if due is None:
            return
        clock.set(max(due, clock.now()))
        dispatcher.dispatch_due()


def setup_dispatch(channel: WebhookChannel,
                   clock: FakeClock) -> tuple[InMemoryStore, Dispatcher]:
    store = InMemoryStore()
    store.enqueue_send(webhook_entry())
    return store, Dispatcher(store, {"webhook": channel}, clock)


# --- the request ----------------------------------------------------------------------


def test_the_body_is_compact_sorted_json_of_the_message(webhook: WebhookChannel,
                                                        server: ScriptedServer) -> None:
    webhook.send(message())
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/hooks")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-tenant"] == "acme"
    assert request.body == WebhookChannel.body(message())
    assert json.loads(request.body) == {
        "id": "e1:hook:0", "journey": "welcome", "step": "notify", "profile_id": "p1",
        "at": "2026-03-02T09:00:00+00:00", "template": "order_hook",
        "payload": {"order": "A-17", "total": 42.5, "items": ["tea", "café"]},
        "text": RENDERED.summary}
    assert request.body.startswith(b'{"at":"2026-03-02T09:00:00+00:00","id":"e1:hook:0",')


def test_the_signature_verifies_on_the_raw_body_and_headers(webhook: WebhookChannel,
                                                            server: ScriptedServer) -> None:
    webhook.send(message())
    [request] = server.requests
    timestamp = request.headers["x-journeyman-timestamp"]
    signature = request.headers["x-journeyman-signature"]
    assert timestamp == str(int(T0.timestamp()))
    assert signature.startswith("v1=")
    assert len(signature) == 3 + 64
    assert verify(SECRET, timestamp, request.body, signature, now=T0)
    assert verify(SECRET, int(timestamp), request.body, signature,
                  now=T0.timestamp() + 299)
    # tampered body, timestamp or secret
    tampered = request.body.replace(b"A-17", b"A-18")
    assert not verify(SECRET, timestamp, tampered, signature, now=T0)
    assert not verify(SECRET, str(int(timestamp) + 1), request.body, signature, now=T0)
    assert not verify("other-secret", timestamp, request.body, signature, now=T0)
    # stale (a replay) or too far in the future
    assert not verify(SECRET, timestamp, request.body, signature,
                      now=T0 + timedelta(seconds=301))
    assert not verify(SECRET, timestamp, request.body, signature,
                      now=T0 - timedelta(seconds=301))
    assert verify(SECRET, timestamp, request.body, signature,
                  now=T0 + timedelta(seconds=301), tolerance=600)


def test_verify_rejects_malformed_input() -> None:
    body = b'{"id":"k"}'
    good = sign(SECRET, 1000, body)
    assert verify(SECRET, "1000", body, good, now=1000)
    assert verify(SECRET, "1000", body, f"v1=deadbeef, {good}", now=1000)  # rotation list
    assert not verify(SECRET, "1000", body, good.removeprefix("v1="), now=1000)
    assert not verify(SECRET, "1000", body, "v0=" + good[3:], now=1000)
    assert not verify(SECRET, "1000", body, "", now=1000)
    assert not verify(SECRET, "10e2", body, good, now=1000)
    assert not verify(SECRET, "", body, good, now=1000)
    assert not verify(SECRET, "1000", body, "v1=ünïcode", now=1000)


def test_the_timestamp_is_the_send_time_not_the_message_time(
        webhook: WebhookChannel, server: ScriptedServer, clock: FakeClock) -> None:
    clock.advance(timedelta(hours=2, seconds=30))
    webhook.send(message())
    [request] = server.requests
    assert request.headers["x-journeyman-timestamp"] == str(int(clock.now().timestamp()))
    assert json.loads(request.body)["at"] == "2026-03-02T09:00:00+00:00"
    assert verify(SECRET, request.headers["x-journeyman-timestamp"], request.body,
                  request.headers["x-journeyman-signature"], now=clock.now())


def test_the_default_clock_is_the_wall_clock(server: ScriptedServer) -> None:
    with WebhookChannel(server.url, secret=SECRET) as channel:
        channel.send(message())
    [request] = server.requests
    assert verify(SECRET, request.headers["x-journeyman-timestamp"], request.body,
                  request.headers["x-journeyman-signature"], now=datetime.now(UTC),
                  tolerance=5)


def test_the_idempotency_key_is_the_send_key(webhook: WebhookChannel,
                                             server: ScriptedServer) -> None:
    webhook.send(message("enr-9:notify:2"))
    assert server.requests[0].headers["idempotency-key"] == "enr-9:notify:2"


def test_a_to_url_is_ignored_unless_allowed(webhook: WebhookChannel,
                                            server: ScriptedServer) -> None:
    """Profile data must not aim signed requests anywhere (SSRF): opt-in only."""
    webhook.send(message(to=server.url + "/per-profile?x=1"))
    assert [r.path for r in server.requests] == ["/hooks"]


def test_an_allowed_http_to_overrides_the_url_and_other_tos_do_not(
        server: ScriptedServer) -> None:
    with WebhookChannel(server.url + "/hooks", secret=SECRET,
                        allow_to_override=True) as channel:
        channel.send(message(to=server.url + "/per-profile?x=1"))
        channel.send(message(to="ana@example.com"))
    assert [r.path for r in server.requests] == ["/per-profile?x=1", "/hooks"]


def test_no_url_at_all_is_permanent(server: ScriptedServer) -> None:
    with WebhookChannel(secret=SECRET, allow_to_override=True) as channel:
        with pytest.raises(DeliveryError, match="no webhook URL") as caught:
            channel.send(message(to="Ana Quill"))
        assert caught.value.permanent
        # the `to` is the person's data (a trait): kept with the send, never logged
        assert "Ana Quill" not in str(caught.value)
        assert caught.value.detail == "'to' is 'Ana Quill'"
        channel.send(message(to=server.url))
    assert len(server.requests) == 1


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel("http://127.0.0.1:9", secret="")
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("ftp://example.com", secret=SECRET)


# --- answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "permanent"), [
    (408, False), (429, False), (500, False), (502, False), (503, False),
    (400, True), (401, True), (404, True), (410, True), (422, True), (301, True)])
def test_status_mapping(webhook: WebhookChannel, server: ScriptedServer, status: int,
                        permanent: bool) -> None:
    server.script.append(Reply(status, body=b"nope\n  details"))
    with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
        webhook.send(message())
    assert caught.value.permanent is permanent
    assert caught.value.detail == "nope details"  # kept with the send
    assert "nope" not in str(caught.value)  # the message, which is logged


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_delivered(webhook: WebhookChannel, server: ScriptedServer,
                              status: int) -> None:
    server.script.append(Reply(status, body=b""))
    webhook.send(message())


def test_connection_refused_is_transient(clock: FakeClock) -> None:
    with WebhookChannel(f"http://127.0.0.1:{closed_port()}", secret=SECRET,
                        clock=clock) as channel, pytest.raises(DeliveryError) as caught:
        channel.send(message())
    assert not caught.value.permanent
    assert "ConnectError" in str(caught.value)


# --- through the dispatcher -------------------------------------------------------------


def test_500_then_200_is_delivered_once_on_the_second_attempt(
        webhook: WebhookChannel, server: ScriptedServer, clock: FakeClock) -> None:
    server.script.append(Reply(500))
    store, dispatcher = setup_dispatch(webhook, clock)
    dispatcher.dispatch_due()
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("pending", 1)
    assert "HTTP 500" in (record.last_error or "")
    dispatch(store, clock, dispatcher)
    record = store.outbox_records()[0]
    assert (record.status, record.attempts, record.sent_at) == ("sent", 2, clock.now())
    first, second = server.requests
    # the same message (its "at" may be the delivery time), re-signed at the new time
    assert ({**json.loads(first.body), "at": None} == {**json.loads(second.body), "at": None})
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == "e1:hook:0"
    assert first.headers["x-journeyman-timestamp"] != second.headers["x-journeyman-timestamp"]
    assert verify(SECRET, second.headers["x-journeyman-timestamp"], second.body,
                  second.headers["x-journeyman-signature"], now=clock.now())
    assert (dispatcher.stats.sent, dispatcher.stats.retried, dispatcher.stats.failed) == (
        1, 1, 0)
    assert [d.what for d in store.decisions] == ["sent"]  # no skip, no failure


def test_a_timeout_then_200_is_delivered_on_the_second_attempt(
        server: ScriptedServer, clock: FakeClock) -> None:
    server.script.append(Reply(200, sleep=1.0))
    with WebhookChannel(server.url, secret=SECRET, clock=clock, timeout=0.2) as channel:
        store, dispatcher = setup_dispatch(channel, clock)
        started = time.monotonic()
        dispatcher.dispatch_due()
        waited = time.monotonic() - started
        record = store.outbox_records()[0]
        assert (record.status, record.attempts) == ("pending", 1)
        assert "timed out" in (record.last_error or "")
        assert 0.15 < waited < 0.9
        dispatch(store, clock, dispatcher)
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("sent", 2)
    assert len(server.requests) == 2
    assert dispatcher.stats.sent == 1


def test_400_fails_for_good_with_a_decision(webhook: WebhookChannel, server: ScriptedServer,
                                            clock: FakeClock) -> None:
    server.script.append(Reply(400, body=b'{"error":"bad payload"}'))
    store, dispatcher = setup_dispatch(webhook, clock)
    dispatch(store, clock, dispatcher)
    assert len(server.requests) == 1
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("failed", 1)
    assert "HTTP 400" in (record.last_error or "")
    assert "bad payload" in (record.last_error or "")
    [decision] = store.decisions
    assert (decision.what, decision.reason, decision.step) == (
        "failed", "permanent_failure", "notify")
    assert decision.details["channel"] == "webhook"


@pytest.mark.parametrize("status", [422, 503])
def test_the_answers_body_is_kept_with_the_send_not_logged(
        webhook: WebhookChannel, server: ScriptedServer, clock: FakeClock, status: int,
        caplog: pytest.LogCaptureFixture) -> None:
    """A CRM echoing the record it refused: the log line says the status and its reason,
    the row's last error (and a failure's decision) keeps the body's start."""
    body = b'{"record": {"last_name": "Secretsurname", "name": "Ivanhoe"}}'
    server.script.append(Reply(status, body=body))
    store, dispatcher = setup_dispatch(webhook, clock)
    with caplog.at_level("WARNING", logger="journeyman.dispatch"):
        dispatcher.dispatch_due()
    [line] = caplog.records
    assert f"HTTP {status} " in line.getMessage()
    assert "Secretsurname" not in caplog.text
    record = store.outbox_records()[0]
    assert (record.last_error or "").endswith(f": {body.decode()}")
    if status == 422:
        [decision] = store.decisions
        assert decision.details["error"] == record.last_error
