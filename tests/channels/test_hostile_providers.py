"""Webhook and SMS providers that misbehave, on a real local socket: an answer a byte at
a time (each byte within the read timeout), a body that never ends, a gzip bomb. A send
ends within three timeouts whatever the provider does, reads a bounded part of its
answer, and the outbox row says what happened."""

from __future__ import annotations

import functools
import socket
import time
import tracemalloc
import zlib
from dataclasses import replace

import pytest

from channels.sms import SmsChannel
from channels.webhook import WebhookChannel
from engine.ports import DeliveryError
from engine.runtime.dispatch import Dispatcher
from engine.testing import FakeClock, InMemoryStore
from journeys.templating import Rendered
from tests.channels.raw_server import RawServer, Script
from tests.channels.test_webhook import SECRET, message, webhook_entry
from tests.store.helpers import T0, outbox_entry

TIMEOUT = 0.3
BOUND = 3 * TIMEOUT + 0.6  # the budget, and some slack for a busy machine


def trickled_body(server: RawServer, conn: socket.socket) -> None:
    """A 200 whose promised body comes a byte every 0.1 s (for up to 6 s)."""
    server.write(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n")
    for _ in range(60):
        if not server.write(conn, b"x"):
            return
        server.stop.wait(0.1)


def cut_short(server: RawServer, conn: socket.socket) -> None:
    """A 200 that promises 1000 bytes of body and hangs up after 10."""
    server.write(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")


def trickled_headers(server: RawServer, conn: socket.socket) -> None:
    """The status line, then headers a byte every 0.1 s, never ending them."""
    server.write(conn, b"HTTP/1.1 200 OK\r\n")
    for _ in range(60):
        if not server.write(conn, b"X"):
            return
        server.stop.wait(0.1)


def endless(status: bytes) -> Script:
    def script(server: RawServer, conn: socket.socket) -> None:
        """A chunked body that goes on (64 KiB every 10 ms, up to 64 MiB)."""
        server.write(conn, b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: text/plain\r\n\r\n")
        chunk = b"refused: " + b"z" * 65000
        for _ in range(1024):
            if not server.write(conn, b"%x\r\n%s\r\n" % (len(chunk), chunk)):
                return
            server.stop.wait(0.01)
        server.write(conn, b"0\r\n\r\n")
    return script


@functools.cache
def bomb() -> bytes:
    """200 KB of gzip, 200 MiB once decoded."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * (1 << 20)
    return b"".join([*(packer.compress(zeros) for _ in range(200)), packer.flush()])


def gzip_bomb(server: RawServer, conn: socket.socket) -> None:
    """A 500 whose body is a gzip bomb."""
    body = bomb()
    server.write(conn, b"HTTP/1.1 500 Internal Server Error\r\nContent-Encoding: gzip\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def webhook(server: RawServer) -> WebhookChannel:
    return WebhookChannel(server.url, secret=SECRET, clock=FakeClock(T0), timeout=TIMEOUT)


def test_a_provider_answering_its_headers_a_byte_at_a_time_times_out_within_the_budget(
        ) -> None:
    """Each byte comes well within the read timeout, so httpx alone waited for all of
    them (6 s here; for ever for a provider that never stops)."""
    with RawServer(trickled_headers) as server, webhook(server) as channel:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            channel.send(message())
        assert time.monotonic() - started < BOUND
    assert not caught.value.permanent
    assert "timed out" in str(caught.value)


@pytest.mark.parametrize("script", [trickled_body, cut_short], ids=["trickled", "cut_short"])
def test_a_2xx_whose_body_dawdles_or_breaks_off_is_delivered_within_the_budget(
        script: Script) -> None:
    """The status said the provider took it: a retry would deliver it twice (a body
    cut short was a transient error; a trickled one held the send for 6 s)."""
    with RawServer(script) as server, webhook(server) as channel:
        started = time.monotonic()
        channel.send(message())
        assert time.monotonic() - started < BOUND


def test_a_slow_provider_leaves_the_row_pending_and_holds_the_channel_not_the_rest() -> None:
    """Through the dispatcher: the first send times out within the budget and is retried
    later; the webhook's other rows wait for the backoff untried; another channel's
    send in the same claim goes out."""
    store = InMemoryStore()
    store.enqueue_send(webhook_entry("e1:hook:0"))
    store.enqueue_send(webhook_entry("e2:hook:0"))
    sms_row = replace(outbox_entry("e3:sms:0"), channel="sms", to="+15550123",
                      rendered=Rendered("otp", "sms", body="code 1"))
    store.enqueue_send(sms_row)
    with RawServer(trickled_headers) as slow, RawServer(endless(b"201 Created")) as fine, \
            webhook(slow) as hook, SmsChannel(fine.url, timeout=TIMEOUT) as sms:
        dispatcher = Dispatcher(store, {"webhook": hook, "sms": sms}, FakeClock(T0))
        started = time.monotonic()
        dispatcher.dispatch_due()
        assert time.monotonic() - started < 2 * BOUND
    records = {r.entry.key: r for r in store.outbox_records()}
    assert records["e3:sms:0"].status == "sent"
    first, second = records["e1:hook:0"], records["e2:hook:0"]
    assert (first.status, first.attempts) == ("pending", 1)
    assert "timed out" in (first.last_error or "")
    assert second.status == "pending"
    assert (dispatcher.stats.sent, dispatcher.stats.retried, dispatcher.stats.held) == (1, 1, 1)


def test_a_2xx_with_an_endless_body_is_delivered_without_reading_it() -> None:
    with RawServer(endless(b"200 OK")) as server, webhook(server) as channel:
        started = time.monotonic()
        channel.send(message())
        assert time.monotonic() - started < BOUND
    assert server.sent < 8 << 20  # httpx alone read until the server stopped (64 MiB)


def test_a_5xx_with_an_endless_body_keeps_its_start_and_is_retried() -> None:
    with RawServer(endless(b"503 Service Unavailable")) as server, \
            SmsChannel(server.url, timeout=TIMEOUT) as sms:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as caught:
            sms.send(replace(outbox_entry("e3:sms:0"), channel="sms", to="+15550123",
                             rendered=Rendered("otp", "sms", body="code 1")).message())
        assert time.monotonic() - started < BOUND
    assert server.sent < 8 << 20
    error = caught.value
    assert not error.permanent
    assert "HTTP 503 Service Unavailable" in str(error)
    assert error.detail.startswith("refused: zzz")
    assert len(error.detail) == 200


def test_a_gzip_bomb_in_a_failure_answer_is_not_decoded_whole() -> None:
    bomb()
    with RawServer(gzip_bomb) as server, webhook(server) as channel:
        tracemalloc.start()
        try:
            with pytest.raises(DeliveryError) as caught:
                channel.send(message())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert "HTTP 500" in str(caught.value)
    assert caught.value.detail == "0" * 200
    assert peak < 40 << 20  # the whole answer decoded is 200 MiB
