"""Providers that answer every send in time, but slowly, on real sockets: a claim's sends
take longer than its lease, and another worker's dispatcher (its own store on the same
SQLite file) runs meanwhile. It used to claim the rows whose outcomes were not written
yet and send every one again (20 of 20 twice, webhook and SMTP alike); the claim's lease
is now kept beyond the adapter's longest send (engine/runtime/lease.py), so each message
goes out once. And an email batch ends within the adapter's `longest_send` even when its
event loop is stuck."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from channels.console import ConsoleChannel
from channels.email import EmailChannel
from channels.file import FileChannel
from channels.sms import SmsChannel
from channels.webhook import WebhookChannel
from engine.ports import Channel, DeliveryError, SystemClock
from engine.runtime.dispatch import Dispatcher
from engine.store import SqlStore
from tests.channels.http_server import Reply, ScriptedServer
from tests.channels.test_email import Sink, expected_message_id, make_channel, message
from tests.channels.test_webhook import SECRET, webhook_entry
from tests.net import free_port
from tests.store.helpers import outbox_entry


@contextmanager
def two_workers(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore, SystemClock]]:
    db, clock = f"sqlite:///{tmp_path / 'outbox.db'}", SystemClock()
    first = SqlStore(db, create=True, clock=clock)
    second = SqlStore(db, clock=clock)
    try:
        yield first, second, clock
    finally:
        first.close()
        second.close()


def race(first: SqlStore, second: SqlStore, clock: SystemClock, lease: timedelta,
         one: Channel, two: Channel, started: Callable[[], bool]) -> Dispatcher:
    """The first worker's dispatcher delivers the outbox; the second's runs every 50 ms
    from the first send on, until the outbox is empty."""
    name = one.name
    sender = Dispatcher(first, {name: one}, clock, lease=lease)
    other = Dispatcher(second, {name: two}, clock, lease=lease)
    done = threading.Event()
    errors: list[BaseException] = []

    def meanwhile() -> None:
        try:
            while not started() and not done.is_set():  # the sender's claim first
                done.wait(0.01)
            while not done.is_set():
                other.dispatch_due()
                done.wait(0.05)
        except BaseException as exc:  # reported below
            errors.append(exc)

    watcher = threading.Thread(target=meanwhile)
    watcher.start()
    try:
        deadline = time.monotonic() + 20
        while first.next_outbox_at() is not None and time.monotonic() < deadline:
            sender.dispatch_due()
            time.sleep(0.02)
    finally:
        done.set()
        watcher.join()
    assert errors == []
    assert other.stats.sent == 0
    return sender


def test_a_slow_webhook_provider_gets_each_send_once_from_two_dispatchers(
        tmp_path: Path) -> None:
    """20 sends of 0.1 s each, a 1 s lease: the claim takes twice its lease."""
    with two_workers(tmp_path) as (first, second, clock), \
            ScriptedServer(Reply(200, sleep=0.1)) as server, \
            WebhookChannel(server.url, secret=SECRET, timeout=2) as one, \
            WebhookChannel(server.url, secret=SECRET, timeout=2) as two:
        queued = clock.now() - timedelta(seconds=1)
        keys = [f"e{n}:hook:0" for n in range(20)]
        for key in keys:
            first.enqueue_send(replace(webhook_entry(key), created_at=queued))
        sender = race(first, second, clock, timedelta(seconds=1), one, two,
                      lambda: bool(server.requests))
        sent = [request.headers["idempotency-key"] for request in server.requests]
        assert sorted(sent) == sorted(keys)  # each once
        assert {r.status for r in first.outbox_records()} == {"sent"}
        assert sender.stats.extended >= 1


@dataclass
class Tarpit(Sink):
    """A slow SMTP server: each DATA answered after `delay` seconds (within the timeout)."""

    delay: float = 0.1

    async def handle_DATA(  # noqa: N802 -- aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def test_a_slow_smtp_server_gets_each_message_once_from_two_dispatchers(
        tmp_path: Path) -> None:
    """20 messages at 0.1 s each, in one send_batch chunk, on a 1 s lease."""
    sink, port = Tarpit(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    one, two = make_channel(port), make_channel(port)
    try:
        with two_workers(tmp_path) as (first, second, clock):
            queued = clock.now() - timedelta(seconds=1)
            keys = [f"e{n}:send:0" for n in range(20)]
            for key in keys:
                first.enqueue_send(replace(outbox_entry(key), created_at=queued))
            sender = race(first, second, clock, timedelta(seconds=1), one, two,
                          lambda: bool(sink.attempts))
            assert {r.status for r in first.outbox_records()} == {"sent"}
            assert sender.stats.extended >= 1
    finally:
        one.close()
        two.close()
        controller.stop()
    ids = sorted(str(m["Message-ID"]) for m in sink.parsed())
    assert ids == sorted(expected_message_id(key) for key in keys)  # once each


def test_an_email_batch_ends_within_its_longest_send_on_a_stuck_loop() -> None:
    """The adapter's event loop blocked (a bug, a starved thread): each of the batch's
    waits took `3 * timeout * n + timeout`, so five messages could hold the dispatcher
    for 5 s here; they now share one deadline, within `longest_send`."""
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    channel: EmailChannel = make_channel(port, timeout=0.2)
    release = threading.Event()
    try:
        assert channel.send_batch([message("warm")]) == [None]  # the loop runs, connected
        assert channel._loop is not None
        channel._loop.call_soon_threadsafe(release.wait, 5)  # the loop thread is stuck
        start = time.monotonic()
        results = channel.send_batch([message(f"k{n}") for n in range(5)])
        took = time.monotonic() - start
        release.set()
        assert took < 4 * 0.2 + 0.25 * 5  # it was 5 s: until the loop ran again
        assert channel.longest_send(5) == 4 * 0.2 + 0.25 * 5
        assert all(isinstance(r, DeliveryError) for r in results)
    finally:
        release.set()
        channel.close()
        controller.stop()


def test_every_built_in_adapter_states_its_longest_send(tmp_path: Path) -> None:
    """What the dispatcher keeps a claim's lease beyond (docs/service.md, "Guarantees")."""
    with WebhookChannel("http://127.0.0.1:9", secret=SECRET, timeout=2) as hook, \
            SmsChannel("http://127.0.0.1:9", timeout=2) as sms:
        assert hook.longest_send(1) == sms.longest_send(1) == 3 * 2 + 0.25
        assert hook.longest_send(3) == 3 * (3 * 2 + 0.25)  # one after another
    email = EmailChannel(from_addr="shop@example.com", timeout=2)
    assert email.longest_send(20) == 4 * 2 + 0.25 * 20
    assert ConsoleChannel().longest_send(20) == FileChannel(tmp_path / "f").longest_send(20) == 0


def test_quick_sends_on_the_services_lease_extend_nothing(tmp_path: Path) -> None:
    """The common case costs no statement: 60 messages to a quick server, the adapter's
    default 10 s timeout (45 s a chunk of 20, with the margin 50 s), the 60 s lease."""
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    channel = make_channel(port, timeout=10)
    try:
        with two_workers(tmp_path) as (store, _, clock):
            queued = clock.now() - timedelta(seconds=1)
            for n in range(60):
                store.enqueue_send(replace(outbox_entry(f"e{n}:send:0"), created_at=queued))
            dispatcher = Dispatcher(store, {"email": channel}, clock,
                                    lease=timedelta(seconds=60))
            dispatcher.dispatch_due()
            assert dispatcher.stats.sent == 60
            assert dispatcher.stats.extended == 0
    finally:
        channel.close()
        controller.stop()
    assert len(sink.delivered) == 60
