"""Network helpers shared by the tests that start real servers."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the OS picks it). For servers that
    cannot be told to pick one themselves (aiosmtpd's Controller(port=0) does not work;
    `journeyman serve --port`, PgBouncer's config). Another process could take it before
    the server binds it: that server then fails to start, loudly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
