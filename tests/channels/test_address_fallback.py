"""A name with two addresses whose first swallows the connection (a broken IPv6 route, a
firewall dropping SYNs): the second gets a connect timeout of its own, as
`socket.create_connection` gives each address, within the send's deadline. When the
backend began looking names up itself (channels/deadline.py) the addresses shared one
connect timeout: the first took it all and such a host never got a send again."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from channels.webhook import WebhookChannel
from tests.channels.http_server import ScriptedServer
from tests.channels.test_webhook import SECRET, message

TIMEOUT = 0.4


@pytest.fixture
def swallowing_and_live() -> Iterator[tuple[ScriptedServer, int]]:
    """A live server on 127.0.0.1:P, and on 127.0.0.2:P a listener whose accept queue
    is full: the kernel drops further SYNs, a connect there hangs until its timeout."""
    with ScriptedServer() as server:
        port = int(server.httpd.server_address[1])
        full = socket.socket()
        full.bind(("127.0.0.2", port))
        full.listen(0)
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.2", port))
            fillers.append(filler)
        time.sleep(0.1)
        try:
            yield server, port
        finally:
            for filler in fillers:
                filler.close()
            full.close()


def test_the_next_address_gets_its_own_connect_timeout(
        swallowing_and_live: tuple[ScriptedServer, int]) -> None:
    server, port = swallowing_and_live
    with WebhookChannel(f"http://hooks.example.invalid:{port}/in", secret=SECRET,
                        timeout=TIMEOUT,
                        resolver=lambda host, port: ["127.0.0.2", "127.0.0.1"]) as hook:
        start = time.monotonic()
        hook.send(message())
        took = time.monotonic() - start
    assert len(server.requests) == 1
    assert TIMEOUT <= took < hook.longest_send(1)
