"""A name whose address is a link-local IPv6 one (`fe80::...`, a printer's or a
device's on the local link): the address means nothing without its zone, the
interface it is on. The system resolver (channels/resolve.py) dropped it, keeping only
the tuple's host, and the connect failed (EINVAL, `Invalid argument`), the webhook
and SMS adapters' and the email adapter's alike. Here real servers listen on a link-local
address of this machine, and the lookups are the operating system's of that address
(as /etc/hosts or mDNS would give it for a name, zone and all)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from channels.resolve import system_resolver
from channels.webhook import WebhookChannel
from tests.channels.raw_server import RawServer
from tests.channels.test_email import Sink, make_channel
from tests.channels.test_webhook import SECRET, message
from tests.store.helpers import outbox_entry


def _link_local() -> tuple[str, str, int] | None:
    """A link-local IPv6 address of this machine: (address, interface, its index)."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        raw, index, _, scope, _, name = line.split()
        if int(scope, 16) == 0x20:  # IPV6_ADDR_LINKLOCAL
            address = ":".join(raw[i:i + 4] for i in range(0, 32, 4))
            return (socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6,
                                                                       address)),
                    name, int(index, 16))
    return None


LINK_LOCAL = _link_local()
needs_link_local = pytest.mark.skipif(
    LINK_LOCAL is None, reason="no link-local IPv6 address on this machine (/proc/net/if_inet6)")


def test_the_system_resolver_keeps_a_link_local_addresss_zone() -> None:
    """getaddrinfo's answer for a zoned address gives the zone as the tuple's scope id,
    the host without it; the resolver's answer carries it as `%index`."""
    index, name = socket.if_nameindex()[0]
    for zoned in (f"fe80::1%{name}", f"fe80::1%{index}"):
        assert system_resolver(zoned, 80) == [f"fe80::1%{index}"]
    assert system_resolver("::1", 80) == ["::1"]  # no zone, none added


def _created(server: RawServer, conn: socket.socket) -> None:
    server.write(conn, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@needs_link_local
def test_a_webhook_to_a_name_with_a_link_local_address_connects() -> None:
    assert LINK_LOCAL is not None
    address, name, index = LINK_LOCAL
    with RawServer(_created, bind=(address, 0, 0, index)) as server:
        # the operating system's lookup of a name that has this address (as /etc/hosts
        # or mDNS would give it, zone and all)
        with WebhookChannel(f"http://device.example:{server.port}/hook", secret=SECRET,
                            timeout=2.0, resolver=lambda host, port: system_resolver(
                                f"{address}%{name}", port)) as hook:
            hook.send(message())
        assert server.sent > 0  # it answered: the request came


@needs_link_local
def test_email_to_a_relay_with_a_link_local_address_connects() -> None:
    assert LINK_LOCAL is not None
    address, name, index = LINK_LOCAL
    sink = Sink()
    with socket.socket(socket.AF_INET6) as sock:  # a port free on that address
        sock.bind((address, 0, 0, index))
        port = int(sock.getsockname()[1])
    controller = Controller(sink, hostname=f"{address}%{name}", port=port)
    controller.start()
    channel = make_channel(port, host="relay.example",
                           resolver=lambda host, port: system_resolver(f"{address}%{name}",
                                                                       port))
    try:
        channel.send(replace(outbox_entry("k1"), to="ana@example.com").message())
    finally:
        channel.close()
        controller.stop()
    assert sink.recipients == [["ana@example.com"]]
