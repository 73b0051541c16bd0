"""A transient failure of one recipient holds that recipient's sends only: a greylisted
mailbox (a 4xx to RCPT TO) on a real SMTP server, a send's own webhook URL that is down
(`allow_to_override`) beside a live one. The channel's other sends in the same claim go
out; a channel that fails as a whole still holds its rest (tests/engine/test_dispatch.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from channels.email import EmailChannel
from channels.webhook import WebhookChannel
from engine.runtime.dispatch import SEND_CHUNK, Dispatcher
from engine.testing import FakeClock, InMemoryStore
from tests.channels.raw_server import RawServer
from tests.channels.test_email import Sink, make_channel
from tests.channels.test_hostile_providers import TIMEOUT, trickled_headers
from tests.channels.test_webhook import SECRET, webhook_entry
from tests.net import free_port
from tests.store.helpers import T0, outbox_entry

GREY = "grey@example.com"


@dataclass
class Greylisting(Sink):
    """Answers 450 to RCPT TO of `GREY`, every time; takes the others."""

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any, address: str,
            options: list[str]) -> str:
        if address == GREY:
            return "450 4.7.1 greylisted, try again later"
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def greylisting() -> Iterator[tuple[Greylisting, EmailChannel]]:
    sink = Greylisting()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    channel = make_channel(port)
    try:
        yield sink, channel
    finally:
        channel.close()
        controller.stop()


def test_a_greylisted_recipient_holds_only_its_own_sends(
        greylisting: tuple[Greylisting, EmailChannel]) -> None:
    """The greylisted address in the first chunk of the batch (SEND_CHUNK sends), and
    again in the second: there it waits untried; everyone else's mail goes out."""
    sink, channel = greylisting
    store, clock = InMemoryStore(), FakeClock(T0)
    addresses = [f"c{n}@example.com" for n in range(25)]
    addresses[0] = addresses[SEND_CHUNK + 1] = GREY
    for n, to in enumerate(addresses):
        store.enqueue_send(replace(outbox_entry(f"k{n}", profile=f"p{n}"), to=to))
    dispatcher = Dispatcher(store, {"email": channel}, clock)

    assert dispatcher.dispatch_due() == 25

    records = [store.outbox_records()[n] for n in range(25)]
    assert [r.entry.to for r in records] == addresses
    others = [r for r in records if r.entry.to != GREY]
    assert {r.status for r in others} == {"sent"}
    assert sorted(to for rcpts in sink.recipients for to in rcpts) == sorted(
        r.entry.to for r in others)
    greylisted, held = records[0], records[SEND_CHUNK + 1]
    assert (greylisted.status, greylisted.attempts) == ("pending", 1)
    assert "450 4.7.1 greylisted" in (greylisted.last_error or "")
    assert (held.status, held.attempts, held.last_error) == (
        "pending", 0, "recipient_unavailable")
    assert (dispatcher.stats.sent, dispatcher.stats.retried, dispatcher.stats.held) == (
        23, 1, 1)
    assert [e.kind for e in store.engagements()] == ["soft_bounce"]


def test_a_held_send_keeps_the_relays_answer_to_its_attempt_before(
        greylisting: tuple[Greylisting, EmailChannel]) -> None:
    """k1 was greylisted (450); at its retry a send of the same address queued before
    it comes first (a chunk before), is greylisted too, and k1 waits untried:
    `journeyman outbox` says so and still shows the relay's answer to k1's attempt
    (the hold's word replaced it)."""
    _, channel = greylisting
    store, clock = InMemoryStore(), FakeClock(T0)
    later = T0 + timedelta(hours=2)
    store.enqueue_send(replace(outbox_entry("k0", at=later, profile="p0"), to=GREY))
    for n in range(SEND_CHUNK - 1):  # the rest of k0's chunk
        store.enqueue_send(replace(outbox_entry(f"f{n:02}", at=later, profile=f"f{n}"),
                                   to=f"f{n}@example.com"))
    store.enqueue_send(replace(outbox_entry("k1", profile="p1"), to=GREY))
    dispatcher = Dispatcher(store, {"email": channel}, clock)
    assert dispatcher.dispatch_due() == 1  # k1: greylisted
    first = store.outbox_records()[-1].last_error or ""
    assert "450 4.7.1 greylisted" in first
    clock.set(later)
    assert dispatcher.dispatch_due() == SEND_CHUNK + 1
    records = store.outbox_records()
    k0, k1 = records[0], records[-1]
    assert (k0.attempts, k1.attempts) == (1, 1)  # k1's second claim was no attempt
    assert k1.last_error == "recipient_unavailable; last error: " + first
    assert (k1.held, k1.error) == ("recipient_unavailable", first)


def _closed_port_url() -> str:
    """An http URL on which nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def _created(server: RawServer, conn: socket.socket) -> None:
    server.write(conn, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_a_sends_own_webhook_url_that_is_down_holds_only_that_url() -> None:
    dead = _closed_port_url()
    store, clock = InMemoryStore(), FakeClock(T0)
    with RawServer(_created) as live:
        order = [("h0", dead), ("h1", live.url), ("h2", dead), ("h3", None)]
        for key, to in order:
            store.enqueue_send(replace(webhook_entry(f"{key}:hook:0", to), profile_id=key))
        with WebhookChannel(live.url, secret=SECRET, timeout=2.0,
                            allow_to_override=True) as hook:
            dispatcher = Dispatcher(store, {"webhook": hook}, clock)
            assert dispatcher.dispatch_due() == 4
    records = {r.entry.key.split(":")[0]: r for r in store.outbox_records()}
    assert [records[k].status for k in ("h1", "h3")] == ["sent", "sent"]
    assert (records["h0"].status, records["h0"].attempts) == ("pending", 1)
    assert (records["h2"].status, records["h2"].attempts, records["h2"].last_error) == (
        "pending", 0, "recipient_unavailable")


def test_a_sends_own_url_that_times_out_holds_the_channel() -> None:
    """Slow failures stay the channel's: a claim of sends to many slow URLs would
    otherwise take three timeouts each."""
    store, clock = InMemoryStore(), FakeClock(T0)
    with RawServer(trickled_headers) as slow, RawServer(_created) as live:
        for key, to in (("h0", slow.url), ("h1", live.url)):
            store.enqueue_send(replace(webhook_entry(f"{key}:hook:0", to), profile_id=key))
        with WebhookChannel(live.url, secret=SECRET, timeout=TIMEOUT,
                            allow_to_override=True) as hook:
            Dispatcher(store, {"webhook": hook}, clock).dispatch_due()
    assert [(r.attempts, r.last_error == "channel_unavailable")
            for r in store.outbox_records()] == [(1, False), (0, True)]


def test_a_sends_own_url_whose_lookup_times_out_at_once_holds_only_that_url() -> None:
    """What decides is what the failure cost, not its kind: a lookup that the resolver
    itself gives up on at once (its own timeout, a cached one) cost the claim nothing,
    and holds that URL's sends only (it held the channel: the failure was a timeout).
    A resolver failing every name is still the channel's, after RECIPIENT_STREAK."""
    import httpx

    def resolver(host: str, port: int) -> list[str]:
        if host == "stuck.example":
            raise TimeoutError("the resolver's own timeout")
        return ["127.0.0.1"]

    store, clock = InMemoryStore(), FakeClock(T0)
    with RawServer(_created) as live:
        stuck = f"http://stuck.example:{httpx.URL(live.url).port}/hook"
        other = live.url.replace("127.0.0.1", "other.example")
        order = [("h0", stuck), ("h1", other), ("h2", stuck), ("h3", None)]
        for key, to in order:
            store.enqueue_send(replace(webhook_entry(f"{key}:hook:0", to), profile_id=key))
        with WebhookChannel(live.url, secret=SECRET, timeout=2.0, allow_to_override=True,
                            resolver=resolver) as hook:
            Dispatcher(store, {"webhook": hook}, clock).dispatch_due()
    records = {r.entry.key.split(":")[0]: r for r in store.outbox_records()}
    assert [records[k].status for k in ("h1", "h3")] == ["sent", "sent"]
    assert (records["h0"].status, records["h0"].attempts) == ("pending", 1)
    assert "timeout" in (records["h0"].last_error or "").lower()
    assert (records["h2"].attempts, records["h2"].last_error) == (0, "recipient_unavailable")


def test_the_channels_own_url_down_still_holds_the_channel() -> None:
    """Without an overridden URL the failure is the channel's: its later sends wait."""
    store, clock = InMemoryStore(), FakeClock(T0)
    for key in ("h0", "h1"):
        store.enqueue_send(replace(webhook_entry(f"{key}:hook:0"), profile_id=key))
    with WebhookChannel(_closed_port_url(), secret=SECRET, timeout=2.0,
                        allow_to_override=True) as hook:
        dispatcher = Dispatcher(store, {"webhook": hook}, clock)
        dispatcher.dispatch_due()
    assert [(r.attempts, r.last_error == "channel_unavailable")
            for r in store.outbox_records()] == [(1, False), (0, True)]



def _unavailable_slowly(server: RawServer, conn: socket.socket) -> None:
    """A 503 whose promised body comes a byte every 0.1 s: the status is decided at
    once, the exchange lasts until the send's deadline (three timeouts)."""
    server.write(conn, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 60\r\n\r\n")
    for _ in range(60):
        if not server.write(conn, b"x"):
            return
        server.stop.wait(0.1)


def test_a_sends_own_url_that_fails_slowly_holds_the_channel() -> None:
    """An error answer whose body dawdles until the deadline is a slow failure like a
    timeout: the channel's, or a claim of sends to many such URLs would take three
    timeouts each (here the second URL's send would wait its turn behind the first)."""
    store, clock = InMemoryStore(), FakeClock(T0)
    with RawServer(_unavailable_slowly) as slow, RawServer(_created) as live:
        for key, to in (("h0", slow.url), ("h1", slow.url + "/other"), ("h2", live.url)):
            store.enqueue_send(replace(webhook_entry(f"{key}:hook:0", to), profile_id=key))
        with WebhookChannel(live.url, secret=SECRET, timeout=TIMEOUT,
                            allow_to_override=True) as hook:
            Dispatcher(store, {"webhook": hook}, clock).dispatch_due()
    assert [(r.attempts, r.last_error == "channel_unavailable")
            for r in store.outbox_records()] == [(1, False), (0, True), (0, True)]


def test_every_recipient_refused_for_now_is_the_channels_failure() -> None:
    """A relay that answers 450 to every RCPT TO (Postfix's recipient rate limit: "too
    many recipients from [ip]") fails no one recipient: after RECIPIENT_STREAK of them
    in a row, none delivered between, the channel is held as a whole, as before
    recipients were told apart. Otherwise every send of the claim was tried, each an
    attempt and a soft bounce, hammering the relay that asked for a pause."""
    sink = Sink(rcpt_replies=["450 4.7.1 Error: too many recipients from [127.0.0.1]"] * 100)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    channel = make_channel(port)
    store, clock = InMemoryStore(), FakeClock(T0)
    try:
        for n in range(3 * SEND_CHUNK):
            store.enqueue_send(replace(outbox_entry(f"k{n:02}", profile=f"p{n}"),
                                       to=f"c{n}@example.com"))
        Dispatcher(store, {"email": channel}, clock).dispatch_due()
    finally:
        channel.close()
        controller.stop()
    records = sorted(store.outbox_records(), key=lambda r: r.entry.key)
    assert {r.attempts for r in records[:SEND_CHUNK]} == {1}
    assert {(r.attempts, r.last_error) for r in records[SEND_CHUNK:]} == {
        (0, "channel_unavailable")}
    assert len(store.engagements()) == SEND_CHUNK


def test_many_own_webhook_urls_down_in_a_row_hold_the_channel() -> None:
    """Each send's own URL refused (no route out, a resolver that fails every name):
    after RECIPIENT_STREAK of them in a row the channel waits, its default URL too."""
    store, clock = InMemoryStore(), FakeClock(T0)
    with RawServer(_created) as live:
        order = [(f"h{n}", _closed_port_url()) for n in range(5)] + [("h5", None)]
        for key, to in order:
            store.enqueue_send(replace(webhook_entry(f"{key}:hook:0", to), profile_id=key))
        with WebhookChannel(live.url, secret=SECRET, timeout=2.0,
                            allow_to_override=True) as hook:
            Dispatcher(store, {"webhook": hook}, clock).dispatch_due()
    records = {r.entry.key.split(":")[0]: r for r in store.outbox_records()}
    assert [(records[f"h{n}"].attempts, records[f"h{n}"].last_error == "channel_unavailable")
            for n in range(6)] == [(1, False)] * 3 + [(0, True)] * 3
