"""HTTP clients whose every exchange ends by a deadline, whatever the server does.

httpx's `timeout` bounds each network operation, not an exchange: a provider that
answers a byte every few seconds (its headers or its body), each within the read
timeout, holds a send -- and the dispatcher, which sends one row at a time -- for as
long as it likes. The clients made here clip every connect, read and write to the
time left before the deadline `deadline()` sets, and fail with httpx's own timeout
(`httpx.ReadTimeout`, ...) once it has passed.

The name lookup is inside the bound too: httpcore's own connect looks the host up with
`getaddrinfo`, which takes no timeout, so the backend looks it up itself, in a thread it
waits for only as long as the connect timeout (channels/resolve.py, the client's
`resolver`), and connects to the addresses it gets one after another, each within a
connect timeout of its own, as `socket.create_connection` does, and the deadline.

The clip sits in the connection pools' network backend, the one place every byte goes
through; httpx offers no public hook for it, so `bounded_client` wraps the backend of
each of a client's pools (env proxies included) and refuses to build a client whose
pools it cannot find, rather than hand out one without the bound.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

from channels.resolve import Resolver, lookup, system_resolver

BUILD_SECONDS = 0.25  # a request's own work before its exchange, at most
_DEADLINE: ContextVar[float | None] = ContextVar("journeyman_http_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every network operation of the bounded clients in this block (this thread) must
    end within `seconds` from now."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _clip(timeout: float | None, error: type[Exception]) -> float | None:
    end = _DEADLINE.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the exchange ran past its deadline")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clip(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clip(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname,
                                             _clip(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, resolver: Resolver) -> None:
        self._inner = inner
        self._resolver = resolver

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        """The lookup within the connect timeout (clipped to the deadline), then each
        address in turn with a connect timeout of its own, as `socket.create_connection`
        gives them, clipped to the deadline: the inner backend gets IP addresses only,
        nothing to look up. (Sharing one timeout, a first address that swallows the
        connection, a broken IPv6 route, left none for the next.)"""
        try:
            addresses = lookup(self._resolver, host, port,
                               _clip(timeout, httpcore.ConnectTimeout))
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # no such name, no answer (socket.gaierror)
            raise httpcore.ConnectError(f"cannot look up {host}: {exc}") from exc
        failure: Exception = httpcore.ConnectError(f"no address for {host}")
        for address in addresses:  # as socket.create_connection tries them
            seconds = _clip(timeout, httpcore.ConnectTimeout)  # past the deadline: raises
            try:
                return _Stream(self._inner.connect_tcp(address, port, seconds, local_address,
                                                       socket_options))
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None
                            ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(
            path, _clip(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def longest_exchanges(timeout: float, count: int) -> float:
    """An HTTP adapter's `longest_send` (engine/ports.py Channel): `count` sends one after
    another, each its own work (building, signing: BUILD_SECONDS at most) and an
    exchange bounded by `deadline(3 * timeout)`."""
    return count * (3 * timeout + BUILD_SECONDS)


def bounded_client(*, resolver: Resolver | None = None, **options: Any) -> httpx.Client:
    """An `httpx.Client(**options)` whose exchanges keep to `deadline()`, their name
    lookups by `resolver` (the system's by default) included. It asks for the encodings
    channels/webhook.py can decode a bounded part of (gzip, deflate)."""
    client = httpx.Client(**options)
    client.headers["Accept-Encoding"] = "gzip, deflate"
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        if transport is None:  # a mount that turns a pattern off
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if not isinstance(backend, httpcore.NetworkBackend):
            client.close()
            raise RuntimeError("cannot bound this httpx version's exchanges: its connection "
                               "pool has no network backend where journeyman expects one")
        if not isinstance(backend, _Backend):
            pool._network_backend = _Backend(  # type: ignore[union-attr]
                backend, resolver or system_resolver)
    return client


__all__ = ["Resolver", "bounded_client", "deadline", "longest_exchanges"]
