"""The email channel against a real SMTP server (aiosmtpd on a free local port)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import hashlib
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from channels.email import EmailChannel
from engine.ports import DeliveryError, Message
from engine.qa.preview import preview
from engine.runtime.dispatch import Dispatcher
from engine.testing import FakeClock, InMemoryStore
from journeys.templating import Rendered
from tests.engine.helpers import HELLO, write_folder
from tests.net import free_port
from tests.store.helpers import T0, outbox_entry

UNSUBSCRIBE = ("<https://shop.example/u/eyJhbGciOiJIUzI1NiJ9.eyJwcm9maWxlIjoicDEiLCJqb3VybmV5Ijoid2V"
               "sY29tZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU>, "
               "<mailto:unsubscribe@shop.example?subject=unsubscribe%20p1>")
UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"


@dataclass
class Sink:
    """An aiosmtpd handler: records what arrives; answers as scripted, then 250."""

    mail_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)  # accepted messages
    attempts: list[bytes] = field(default_factory=list)  # every DATA seen, accepted or not
    recipients: list[list[str]] = field(default_factory=list)  # RCPT TO of every DATA
    ehlos: int = 0  # one per SMTP connection (the client says EHLO once per connection)
    servers: list[Any] = field(default_factory=list)  # the server-side protocol objects

    async def handle_EHLO(  # noqa: N802 -- aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any, hostname: str,
            responses: list[str]) -> list[str]:
        self.ehlos += 1
        self.servers.append(server)
        session.host_name = hostname
        return responses

    async def handle_MAIL(  # noqa: N802 -- aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any, address: str,
            options: list[str]) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 -- aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any, address: str,
            options: list[str]) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 -- aiosmtpd's hook name
            self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        self.attempts.append(content)
        self.recipients.append(list(envelope.rcpt_tos))
        if self.data_replies:
            return self.data_replies.pop(0)
        self.delivered.append(content)
        return "250 Message accepted for delivery"

    def parsed(self) -> list[EmailMessage]:
        return [parse(raw) for raw in self.delivered]


def parse(raw: bytes) -> EmailMessage:
    """A received message; SMTP line ends (CRLF) turned into Python's."""
    parsed = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@dataclass
class Server:
    sink: Sink
    controller: Controller
    port: int


@pytest.fixture
def server() -> Iterator[Server]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield Server(sink, controller, port)
    finally:
        controller.stop()


def make_channel(port: int, **options: Any) -> EmailChannel:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": port, "timeout": 5.0,
                                "from_addr": "Shop <hello@shop.example>"}
    settings.update(options)
    return EmailChannel(**settings)


@pytest.fixture
def channel(server: Server) -> Iterator[EmailChannel]:
    adapter = make_channel(server.port, reply_to="Support <help@shop.example>")
    try:
        yield adapter
    finally:
        adapter.close()  # before the server stops: no half-open sockets left behind


def message(key: str = "e1:send_welcome:0", to: str | None = "ana@example.com",
            **rendered: Any) -> Message:
    fields: dict[str, Any] = {
        "subject": "Welcome, Ana — glad you're here",
        "text": "Hi Ana,\nwelcome to the shop.\n",
        "html": "<p>Hi Ana,</p><p>welcome to the <b>shop</b>.</p>",
        "headers": {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": UNSUBSCRIBE_POST},
    }
    fields.update(rendered)
    return Message(key, "p1", "welcome", "send_welcome", "email", to,
                   Rendered("welcome_email", "email", **fields), T0)


def expected_message_id(key: str, domain: str = "journeyman.local") -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def email_outbox(key: str = "e1:send:0") -> tuple[InMemoryStore, FakeClock]:
    store, clock = InMemoryStore(), FakeClock(T0)
    store.enqueue_send(outbox_entry(key))
    return store, clock


# --- 1. headers and MIME ---------------------------------------------------------------


def test_headers_and_mime_structure(server: Server, channel: EmailChannel) -> None:
    channel.send(message())

    [raw] = server.sink.delivered
    [received] = server.sink.parsed()
    assert received["From"] == "Shop <hello@shop.example>"
    assert received["To"] == "ana@example.com"
    assert received["Subject"] == "Welcome, Ana — glad you're here"
    assert received["Reply-To"] == "Support <help@shop.example>"
    assert email.utils.parsedate_to_datetime(received["Date"]) == T0
    assert received["Message-ID"] == expected_message_id("e1:send_welcome:0")
    assert re.fullmatch(r"<[0-9a-f]{32}@journeyman\.local>", received["Message-ID"])
    assert received["List-Unsubscribe"] == UNSUBSCRIBE
    assert received["List-Unsubscribe-Post"] == UNSUBSCRIBE_POST
    # verbatim on the wire too: one unfolded line, not RFC 2047-encoded (mail providers
    # only honour a List-Unsubscribe URL they can read as it is)
    assert f"List-Unsubscribe: {UNSUBSCRIBE}\r\n".encode() in raw
    assert b"=?utf-8?" not in raw.split(b"\r\nSubject:")[0]

    assert received.get_content_type() == "multipart/alternative"
    parts = list(received.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Hi Ana,\nwelcome to the shop.\n"
    assert parts[1].get_content().strip() == "<p>Hi Ana,</p><p>welcome to the <b>shop</b>.</p>"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert all(byte < 128 for byte in raw)  # 7-bit clean: no 8BITMIME or SMTPUTF8 needed


def test_text_only_and_body_fallback(server: Server, channel: EmailChannel) -> None:
    channel.send(message("k1", html=None))
    channel.send(message("k2", text=None, html=None, body="SMS-style body"))
    first, second = server.sink.parsed()
    assert (first.get_content_type(), first.get_content()) == (
        "text/plain", "Hi Ana,\nwelcome to the shop.\n")
    assert second.get_content().strip() == "SMS-style body"
    assert first["Message-ID"] != second["Message-ID"]


def test_a_template_reply_to_wins_and_owned_headers_are_refused(server: Server,
                                                               channel: EmailChannel) -> None:
    channel.send(message(headers={"Reply-To": "orders@shop.example",
                                  "From": "Orders <orders@shop.example>"}))
    assert server.sink.parsed()[0]["Reply-To"] == "orders@shop.example"
    assert server.sink.parsed()[0]["From"] == "Orders <orders@shop.example>"
    for name in ("Message-ID", "To", "Subject"):
        with pytest.raises(DeliveryError, match="set by the email adapter") as caught:
            channel.send(message(headers={name: "x@example.com"}))
        assert caught.value.permanent
    # A line break in a header value is folded to a space: no header injection
    channel.send(message(headers={"X-Tag": "a\r\nBcc: victim@example.com"}))
    assert server.sink.parsed()[1]["X-Tag"] == "a Bcc: victim@example.com"
    assert server.sink.parsed()[1]["Bcc"] is None
    assert len(server.sink.delivered) == 2


def test_line_breaks_in_header_values_are_folded_not_a_failure(server: Server,
                                                               channel: EmailChannel) -> None:
    """A trait with a line break in a subject (`first_name: "X\\r\\nBcc: evil@x.com"`)
    failed the send for good (`Header values may not contain linefeed or carriage
    return characters`): folded, it is sent, with no extra header and no extra
    recipient. Outbox rows rendered before the renderer folded them are folded here."""
    channel.send(message(subject="Hi X\r\nBcc: evil@x.com\u2028\x00!", headers={
        "From": "Orders\nTeam <orders@shop.example>",
        "Reply-To": "Help\r\n\tDesk <help@shop.example>"}))
    [received] = server.sink.parsed()
    assert received["Subject"] == "Hi X Bcc: evil@x.com !"
    assert received["From"] == "Orders Team <orders@shop.example>"
    assert received["Reply-To"] == "Help Desk <help@shop.example>"
    assert (received["Bcc"], received["Cc"]) == (None, None)
    assert server.sink.recipients == [["ana@example.com"]]


def test_a_trait_with_a_line_break_renders_and_sends_as_one_line(
        tmp_path: Path, server: Server, channel: EmailChannel) -> None:
    """Preview shows what is sent: the subject, From and To name on one line."""
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": """\
        channel: email
        subject: "Hi {{ profile.traits.first_name }}"
        from: "{{ profile.traits.first_name }} at Shop <hello@shop.example>"
        text: hi
        """})
    (folder / "hello.yaml").write_text((folder / "hello.yaml").read_text().replace(
        "template: welcome", "template: welcome, to: '{{ profile.traits.first_name }} "
        "<{{ profile.traits.email }}>'"))
    traits = {"first_name": "X\r\nBcc: evil@x.com", "email": "ana@example.com"}
    shown = preview(folder, "hello", "welcome", {"id": "ana", "traits": traits}, now=T0)
    entry = shown.entry
    assert entry.rendered.subject == "Hi X Bcc: evil@x.com"
    assert entry.rendered.headers["From"] == "X Bcc: evil@x.com at Shop <hello@shop.example>"
    assert entry.to == "X Bcc: evil@x.com <ana@example.com>"
    assert "subject: Hi X Bcc: evil@x.com" in shown.lines()
    channel.send(Message(entry.key, entry.profile_id, entry.journey, entry.step,
                         entry.channel, "ana@example.com", entry.rendered, T0))
    [received] = server.sink.parsed()
    assert received["Subject"] == entry.rendered.subject
    assert received["Bcc"] is None


# --- 2. a retried send keeps its Message-ID, and arrives once ----------------------------


def test_message_id_is_stable_across_a_retry_through_the_dispatcher(
        server: Server, channel: EmailChannel) -> None:
    server.sink.data_replies = ["451 4.3.0 try later"]
    store, clock = email_outbox()
    dispatcher = Dispatcher(store, {"email": channel}, clock)

    assert dispatcher.dispatch_due() == 1
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("pending", 1)
    assert "451 4.3.0 try later" in (record.last_error or "")
    assert server.sink.delivered == []

    due = store.next_outbox_at()
    assert due is not None
    assert due > T0
    clock.set(due)
    assert dispatcher.dispatch_due() == 1

    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("sent", 2)
    assert len(server.sink.delivered) == 1
    first_try, second_try = (parse(raw) for raw in server.sink.attempts)
    assert first_try["Message-ID"] == second_try["Message-ID"] == expected_message_id("e1:send:0")
    assert [d.what for d in store.decisions] == ["sent"]  # no skip, no failure
    assert server.sink.ehlos == 1  # the 451 did not cost the connection


def test_a_crash_between_send_and_mark_resends_once_with_the_same_message_id(
        server: Server, channel: EmailChannel) -> None:
    """The documented at-least-once window: the process dies after the server accepted
    the message and before the row was marked sent. After the lease the row is sent
    again with the same Message-ID, so the receiver can drop it; nothing else repeats."""
    store, clock = email_outbox()
    lease = timedelta(minutes=5)
    [entry] = store.claim_outbox(clock.now(), 10, lease)
    channel.send(entry.message(clock.now()))  # delivered ... and then the process died
    dispatcher = Dispatcher(store, {"email": channel}, clock, lease=lease)
    assert dispatcher.dispatch_due() == 0  # still leased by the dead process
    clock.advance(lease)
    assert dispatcher.dispatch_due() == 1
    assert dispatcher.dispatch_due() == 0
    first, second = server.sink.parsed()
    assert first["Message-ID"] == second["Message-ID"] == expected_message_id(entry.key)
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("sent", 2)


def test_a_batch_goes_out_in_order_over_one_connection_each_message_settled_alone(
        server: Server, channel: EmailChannel) -> None:
    """The dispatcher hands the email adapter chunks of rows (send_batch): a refused
    address or a 451 settles that row only; the others are delivered, in order."""
    from dataclasses import replace as with_

    store, clock = InMemoryStore(), FakeClock(T0)
    for n in range(5):
        entry = outbox_entry(f"e{n}:send:0")
        store.enqueue_send(with_(entry, to=None) if n == 1 else entry)
    server.sink.data_replies = ["250 OK", "451 4.3.0 try later"]  # 2nd DATA seen: e2
    Dispatcher(store, {"email": channel}, clock).dispatch_due()
    status = {r.entry.key: (r.status, r.attempts) for r in store.outbox_records()}
    assert status == {"e0:send:0": ("sent", 1), "e1:send:0": ("skipped", 1),
                      "e2:send:0": ("pending", 1), "e3:send:0": ("sent", 1),
                      "e4:send:0": ("sent", 1)}
    ids = [m["Message-ID"] for m in server.sink.parsed()]
    assert ids == [expected_message_id(f"e{n}:send:0") for n in (3, 4)]  # e0 got "250 OK"
    assert server.sink.ehlos == 1


def test_a_message_that_cannot_be_built_fails_alone_and_nothing_is_sent_twice(
        server: Server, channel: EmailChannel) -> None:
    """Issue 10: `c@[c"` makes the stdlib's address parser raise AttributeError. That
    row fails for good with a readable reason; the rows before and after it are
    delivered once each and marked sent, so a later round (after the lease) sends
    nothing again."""
    from dataclasses import replace as with_

    store, clock = InMemoryStore(), FakeClock(T0)
    recipients = ["alice@example.com", 'c@[c"', "bob@example.com"]
    for n, to in enumerate(recipients):
        store.enqueue_send(with_(outbox_entry(f"e{n}:send:0", profile=f"p{n}"), to=to))
    lease = timedelta(minutes=5)
    dispatcher = Dispatcher(store, {"email": channel}, clock, lease=lease)

    assert dispatcher.dispatch_due() == 3

    assert sorted(m["To"] for m in server.sink.parsed()) == ["alice@example.com",
                                                             "bob@example.com"]
    status = {r.entry.key: (r.status, r.attempts, r.last_error)
              for r in store.outbox_records()}
    assert status == {"e0:send:0": ("sent", 1, None),
                      "e1:send:0": ("failed", 1, "invalid email address: 'c@[c\"'"),
                      "e2:send:0": ("sent", 1, None)}
    [decision] = [d for d in store.decisions if d.what != "sent"]
    assert (decision.profile_id, decision.what, decision.reason) == (
        "p1", "failed", "permanent_failure")

    clock.advance(lease + timedelta(days=1))  # long after any lease or backoff
    assert dispatcher.dispatch_due() == 0
    assert len(server.sink.delivered) == 2
    assert len(server.sink.attempts) == 2


@pytest.mark.parametrize(("to", "reason"), [
    ('c@[c"', "invalid email address"),
    ("x@[1.2.3", "invalid email address"),
    ("ana@exa mple.com", "invalid email address"),
    ("a@", "invalid email address"),
    ("ana@example.com, eve@example.com", "more than one email address"),
])
def test_send_batch_never_raises_on_a_junk_address(server: Server, channel: EmailChannel,
                                                    to: str, reason: str) -> None:
    results = channel.send_batch([message("k1"), message("k2", to=to), message("k3")])
    first, bad, last = results
    assert first is None
    assert last is None
    assert isinstance(bad, DeliveryError)
    assert bad.permanent
    assert str(bad) == reason  # what is logged; the address as given is kept, not logged
    assert bad.detail == repr(to)
    assert len(server.sink.delivered) == 2


def test_a_junk_from_header_is_a_permanent_failure_of_that_message(
        server: Server, channel: EmailChannel) -> None:
    results = channel.send_batch([message("k1", headers={"From": 'x@[x"'}), message("k2")])
    assert isinstance(results[0], DeliveryError)
    assert results[0].permanent
    assert str(results[0]).startswith("cannot build the email: ")
    assert results[1] is None
    assert len(server.sink.delivered) == 1


def test_an_adapter_whose_send_batch_raises_cannot_escape_the_dispatcher() -> None:
    class Broken:
        name = "email"

        def send(self, message: Message) -> None:
            raise AssertionError("the dispatcher uses send_batch")

        def send_batch(self, messages: list[Message]) -> list[Exception | None]:
            raise RuntimeError("adapter bug")

    store, clock = email_outbox()
    Dispatcher(store, {"email": Broken()}, clock).dispatch_due()
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("pending", 1)
    assert record.last_error == "RuntimeError: adapter bug"


# --- 3. a 5xx is permanent ---------------------------------------------------------------


@pytest.mark.parametrize(("script", "code"), [
    ({"rcpt_replies": ["550 5.1.1 no such user"]}, "550"),
    ({"data_replies": ["554 5.7.1 message rejected as spam"]}, "554"),
    ({"mail_replies": ["553 5.1.8 sender domain does not exist"]}, "553"),
])
def test_a_5xx_reply_fails_the_send_for_good(server: Server, channel: EmailChannel,
                                             script: dict[str, list[str]], code: str) -> None:
    for name, replies in script.items():
        setattr(server.sink, name, list(replies))
    store, clock = email_outbox()
    dispatcher = Dispatcher(store, {"email": channel}, clock)

    dispatcher.dispatch_due()
    clock.advance(timedelta(days=1))  # nothing is due again: a failed row stays failed
    dispatcher.dispatch_due()

    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("failed", 1)
    assert code in (record.last_error or "")
    [decision] = store.decisions
    assert (decision.what, decision.reason) == ("failed", "permanent_failure")
    assert code in decision.details["error"]
    assert server.sink.delivered == []

    channel.send(message())  # the connection is still good for the next message
    assert len(server.sink.delivered) == 1
    assert server.sink.ehlos == 1


def test_a_4xx_recipient_refusal_is_transient(server: Server, channel: EmailChannel) -> None:
    server.sink.rcpt_replies = ["450 4.2.1 mailbox busy"]
    with pytest.raises(DeliveryError, match=r"450 4\.2\.1 mailbox busy") as caught:
        channel.send(message())
    assert not caught.value.permanent
    channel.send(message())
    assert len(server.sink.delivered) == 1


# --- 4. a server that is down is transient, and fast -------------------------------------


def test_a_server_that_is_down_is_a_fast_transient_failure() -> None:
    adapter = make_channel(free_port(), timeout=5.0)  # nobody listens there
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match="cannot open SMTP connection") as caught:
            adapter.send(message())
        elapsed = time.monotonic() - started
        assert not caught.value.permanent
        assert elapsed < 1.0
    finally:
        adapter.close()


def test_a_silent_server_times_out_as_transient() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts TCP connections, never says a word
        adapter = make_channel(listener.getsockname()[1], timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(DeliveryError) as caught:
                adapter.send(message())
            elapsed = time.monotonic() - started
        finally:
            adapter.close()
    assert not caught.value.permanent
    assert 0.25 < elapsed < 1.0


def test_the_dispatcher_retries_when_the_server_is_down() -> None:
    adapter = make_channel(free_port())
    store, clock = email_outbox()
    try:
        Dispatcher(store, {"email": adapter}, clock).dispatch_due()
    finally:
        adapter.close()
    record = store.outbox_records()[0]
    assert (record.status, record.attempts) == ("pending", 1)
    assert "cannot open SMTP connection" in (record.last_error or "")


# --- 5. one connection for many sends ----------------------------------------------------


def test_several_sends_share_one_connection(server: Server, channel: EmailChannel) -> None:
    keys = [f"e{i}:send_welcome:0" for i in range(5)]
    for key in keys:
        channel.send(message(key))
    assert server.sink.ehlos == 1
    assert channel.connections == 1
    assert [m["Message-ID"] for m in server.sink.parsed()] == [
        expected_message_id(key) for key in keys]


def test_a_connection_the_server_dropped_is_reopened(server: Server,
                                                    channel: EmailChannel) -> None:
    channel.send(message("k1"))
    [session] = server.sink.servers

    async def hang_up() -> None:  # what a server does to a connection idle for too long
        session.transport.close()

    asyncio.run_coroutine_threadsafe(hang_up(), server.controller.loop).result(2)
    channel.send(message("k2"))
    assert len(server.sink.delivered) == 2
    assert server.sink.ehlos == 2


def test_a_421_on_a_kept_connection_is_retried_once_on_a_fresh_one(
        server: Server, channel: EmailChannel) -> None:
    channel.send(message("k1"))
    server.sink.mail_replies = ["421 4.4.2 idle too long, closing"]
    channel.send(message("k2"))  # no error: reconnected and sent again
    assert len(server.sink.delivered) == 2
    assert server.sink.ehlos == 2
    assert channel.connections == 2


def test_a_421_on_a_fresh_connection_is_transient(server: Server,
                                                  channel: EmailChannel) -> None:
    server.sink.mail_replies = ["421 4.3.2 shutting down"]
    with pytest.raises(DeliveryError, match="421") as caught:
        channel.send(message())
    assert not caught.value.permanent
    assert server.sink.ehlos == 1  # not retried on the spot: the dispatcher retries later


def test_close_says_quit_and_a_later_send_reconnects(server: Server) -> None:
    adapter = make_channel(server.port)
    try:
        adapter.send(message("k1"))
        adapter.close()
        adapter.close()  # idempotent
        adapter.send(message("k2"))
    finally:
        adapter.close()
    assert len(server.sink.delivered) == 2
    assert server.sink.ehlos == 2


def test_start_tls_false_is_passed_through(server: Server) -> None:
    # aiosmtpd without a TLS context offers no STARTTLS; requiring it must fail
    # (transient: a server configuration problem), disabling it must work.
    with make_channel(server.port, start_tls=True) as strict:
        with pytest.raises(DeliveryError) as caught:
            strict.send(message())
        assert not caught.value.permanent
    with make_channel(server.port, start_tls=False) as plain:
        plain.send(message())
    assert len(server.sink.delivered) == 1


# --- 6. no address -----------------------------------------------------------------------


@pytest.mark.parametrize("to", [None, "", "   "])
def test_no_address_is_a_permanent_failure(to: str | None) -> None:
    adapter = make_channel(free_port())  # never contacted
    with pytest.raises(DeliveryError, match="no email address") as caught:
        adapter.send(message(to=to))
    assert caught.value.permanent
    adapter.close()


def test_no_address_skips_the_outbox_row_as_no_address() -> None:
    """A send with no address is not counted as sent: skipped, with the reason."""
    adapter = make_channel(free_port())
    store, clock = InMemoryStore(), FakeClock(T0)
    store.enqueue_send(replace(outbox_entry("e1:send:0"), to=None))
    Dispatcher(store, {"email": adapter}, clock).dispatch_due()
    adapter.close()
    record = store.outbox_records()[0]
    assert (record.status, record.attempts, record.last_error) == ("skipped", 1, "no_address")
    assert (store.decisions[0].what, store.decisions[0].reason) == ("skipped", "no_address")


def test_a_malformed_address_is_permanent() -> None:
    adapter = make_channel(free_port())
    with pytest.raises(DeliveryError, match="invalid email address") as caught:
        adapter.send(message(to="not an address"))
    assert caught.value.permanent
    adapter.close()


def test_from_addr_must_hold_an_address() -> None:
    with pytest.raises(ValueError, match="no email address"):
        EmailChannel(from_addr="Shop")
