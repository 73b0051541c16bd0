"""A name lookup inside the send's deadline (channels/resolve.py, channels/deadline.py).

The operating system's `getaddrinfo` takes no timeout, and httpx's sync transport called
it before any of its own: a webhook or SMS send to a host whose name nobody answered for
held the dispatcher past the adapter's `longest_send`, and so past its claim's lease. The
adapters take their lookup as a `resolver` (the system's by default); here one that does
not answer for seconds stands in for a DNS server that does not (there is no local DNS
server to make slow), and everything after the lookup is real: sockets, a local HTTP or
SMTP server, the dispatcher and its store."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from channels.deadline import bounded_client
from channels.resolve import MAX_LOOKUPS, Resolver, start_lookup
from channels.sms import SmsChannel
from channels.webhook import WebhookChannel
from engine.ports import DeliveryError, SystemClock
from engine.runtime.dispatch import Dispatcher
from engine.store import SqlStore
from tests.channels.http_server import ScriptedServer
from tests.channels.test_email import Sink, make_channel
from tests.channels.test_email import message as email_message
from tests.channels.test_sms import message as sms_message
from tests.channels.test_webhook import SECRET, message, webhook_entry
from tests.net import free_port

TIMEOUT = 0.2
SLACK = 0.5  # a busy machine's: thread start, scheduling


class Stuck:
    """A resolver that does not answer until released (or for 10 s): a DNS server that
    takes its time. Counts the lookups it was asked for."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        self.release.wait(10)
        return ["127.0.0.1"]


def lookups_ended() -> None:
    """Wait for the lookups under way in this process to end (they hold their slots)."""
    for thread in threading.enumerate():
        if thread.name == "journeyman-lookup":
            thread.join(5)


@pytest.fixture
def stuck() -> Iterator[Stuck]:
    resolver = Stuck()
    try:
        yield resolver
    finally:
        resolver.release.set()
        lookups_ended()


def to(address: str) -> Resolver:
    """A resolver that answers at once with `address` for any name."""
    return lambda host, port: [address]


def port_of(server: ScriptedServer) -> int:
    return int(server.httpd.server_address[1])


def test_a_webhook_whose_lookup_hangs_fails_transiently_within_its_deadline(stuck: Stuck) -> None:
    with WebhookChannel(
        "http://hooks.example.invalid/in", secret=SECRET, timeout=TIMEOUT, resolver=stuck
    ) as hook:
        start = time.monotonic()
        with pytest.raises(DeliveryError, match="timed out") as failure:
            hook.send(message())
        took = time.monotonic() - start
    assert not failure.value.permanent
    assert stuck.asked == ["hooks.example.invalid"]
    assert took < TIMEOUT + SLACK  # the connect timeout covers the lookup
    assert took < hook.longest_send(1)


def test_an_sms_whose_lookup_hangs_fails_transiently_within_its_deadline(stuck: Stuck) -> None:
    with SmsChannel("https://sms.example.invalid/send", timeout=TIMEOUT, resolver=stuck) as sms:
        start = time.monotonic()
        with pytest.raises(DeliveryError, match="timed out") as failure:
            sms.send(sms_message())
        took = time.monotonic() - start
    assert not failure.value.permanent
    assert took < TIMEOUT + SLACK
    assert took < sms.longest_send(1)


def test_a_webhook_to_localhost_goes_out_with_the_systems_lookup() -> None:
    with (
        ScriptedServer() as server,
        WebhookChannel(f"http://localhost:{port_of(server)}/in", secret=SECRET, timeout=2) as hook,
    ):
        hook.send(message("e1:hook:0"))
        hook.send(message("e2:hook:0"))  # the kept connection
    assert [r.headers["idempotency-key"] for r in server.requests] == ["e1:hook:0", "e2:hook:0"]
    assert server.requests[0].headers["host"] == f"localhost:{port_of(server)}"


def test_an_ip_address_is_not_looked_up(stuck: Stuck) -> None:
    with (
        ScriptedServer() as server,
        WebhookChannel(server.url, secret=SECRET, timeout=2, resolver=stuck) as hook,
    ):
        hook.send(message())
    assert stuck.asked == []
    assert len(server.requests) == 1


def test_the_resolvers_address_is_where_the_send_goes_under_the_urls_name() -> None:
    """The lookup decides the address only: the request still names the URL's host."""
    with (
        ScriptedServer() as server,
        WebhookChannel(
            f"http://hooks.example.invalid:{port_of(server)}/in",
            secret=SECRET,
            timeout=2,
            resolver=to("127.0.0.1"),
        ) as hook,
    ):
        hook.send(message())
    assert server.requests[0].headers["host"] == f"hooks.example.invalid:{port_of(server)}"
    assert server.requests[0].path == "/in"


def test_each_address_of_a_name_is_tried_in_turn() -> None:
    """127.0.0.2 refuses (nothing listens there), 127.0.0.1 answers."""
    with (
        ScriptedServer() as server,
        WebhookChannel(
            f"http://hooks.example.invalid:{port_of(server)}/",
            secret=SECRET,
            timeout=2,
            resolver=lambda host, port: ["127.0.0.2", "127.0.0.1"],
        ) as hook,
    ):
        hook.send(message())
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (lambda host, port: [], "gave no IP address"),
        (lambda host, port: ["not-an-address"], "not-an-address"),
    ],
)
def test_a_lookup_with_no_usable_address_is_a_transient_failure(
    answer: Resolver, said: str
) -> None:
    with (
        WebhookChannel(
            "http://hooks.example.invalid/", secret=SECRET, timeout=TIMEOUT, resolver=answer
        ) as hook,
        pytest.raises(DeliveryError, match=said) as failure,
    ):
        hook.send(message())
    assert not failure.value.permanent


def test_lookups_that_never_end_are_capped_and_then_others_run_again(stuck: Stuck) -> None:
    """A resolver that never answers would leave a thread behind each send: past
    MAX_LOOKUPS under way, a lookup fails at once instead; when they end, lookups work."""
    lookups_ended()  # none left from other tests
    abandoned = [start_lookup(stuck, f"h{n}.example.invalid", 80) for n in range(MAX_LOOKUPS)]
    with (
        ScriptedServer() as server,
        WebhookChannel(
            f"http://hooks.example.invalid:{port_of(server)}/",
            secret=SECRET,
            timeout=TIMEOUT,
            resolver=to("127.0.0.1"),
        ) as hook,
    ):
        start = time.monotonic()
        with pytest.raises(DeliveryError, match="lookups are still under way") as failure:
            hook.send(message())
        assert time.monotonic() - start < SLACK
        assert not failure.value.permanent
        stuck.release.set()
        for future in abandoned:
            assert future.result(5) == ["127.0.0.1"]
        hook.send(message())
    assert len(server.requests) == 1


def test_the_dispatcher_keeps_its_lease_when_a_lookup_hangs(tmp_path: Path, stuck: Stuck) -> None:
    """A send whose lookup hangs, on a lease of 1 s: the send ends by its deadline, so the
    claim keeps within `longest_send` (no second dispatcher could take the row meanwhile),
    and the row waits for its retry with the reason."""
    clock = SystemClock()
    store = SqlStore(f"sqlite:///{tmp_path / 'outbox.db'}", create=True, clock=clock)
    try:
        queued = clock.now() - timedelta(seconds=1)
        store.enqueue_send(replace(webhook_entry(), created_at=queued))
        with WebhookChannel(
            "http://hooks.example.invalid/", secret=SECRET, timeout=TIMEOUT, resolver=stuck
        ) as hook:
            dispatcher = Dispatcher(store, {"webhook": hook}, clock, lease=timedelta(seconds=1))
            start = time.monotonic()
            dispatcher.dispatch_due()
            took = time.monotonic() - start
        assert took < hook.longest_send(1)
        [record] = store.outbox_records()
        assert (record.status, record.attempts) == ("pending", 1)
        assert "timed out" in (record.last_error or "")
    finally:
        store.close()


def test_an_smtp_connect_whose_lookup_hangs_fails_transiently_within_its_timeout(
    stuck: Stuck,
) -> None:
    """aiosmtplib bounds its connect, the lookup included, by `timeout`: the email adapter
    had no such gap; its lookups now run in threads of their own, not in the loop's small
    executor, and it takes a resolver like the HTTP adapters."""
    channel = make_channel(25, host="mail.example.invalid", timeout=TIMEOUT, resolver=stuck)
    try:
        start = time.monotonic()
        with pytest.raises(DeliveryError, match="cannot open SMTP connection") as failure:
            channel.send(email_message())
        took = time.monotonic() - start
    finally:
        channel.close()
    assert not failure.value.permanent
    assert stuck.asked == ["mail.example.invalid"]
    assert took < TIMEOUT + SLACK
    assert took < channel.longest_send(1)


@pytest.mark.parametrize("resolver", [None, to("127.0.0.1")])
def test_email_to_a_named_host_goes_out(resolver: Resolver | None) -> None:
    """`localhost` by the system's lookup; a made-up name by the resolver's."""
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    channel = (
        make_channel(port, host="localhost")
        if resolver is None
        else make_channel(port, host="mail.example.invalid", resolver=resolver)
    )
    try:
        channel.send(email_message())
    finally:
        channel.close()
        controller.stop()
    assert len(sink.delivered) == 1


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (its own CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.parametrize(
    ("served", "ok"), [("hooks.example.invalid", True), ("other.example", False)]
)
def test_tls_checks_the_urls_name_not_the_looked_up_address(
    tmp_path: Path, served: str, ok: bool
) -> None:
    """The connection goes to the resolver's address; the certificate is checked against
    the URL's name (SNI too), as when the system looked it up: a certificate for that
    name is taken, one for another name refused."""
    cert_file, key_file = certificate(tmp_path, served)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert_file, key_file)
    trusted = ssl.create_default_context(cafile=str(cert_file))
    server = ScriptedServer()
    server.httpd.socket = server_side.wrap_socket(server.httpd.socket, server_side=True)
    url = f"https://hooks.example.invalid:{port_of(server)}/in"
    with server, bounded_client(resolver=to("127.0.0.1"), verify=trusted, timeout=2) as client:
        if ok:
            assert client.post(url, content=b"{}").status_code == 200
            assert server.requests[0].headers["host"] == f"hooks.example.invalid:{port_of(server)}"
        else:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                client.post(url, content=b"{}")
            assert server.requests == []
