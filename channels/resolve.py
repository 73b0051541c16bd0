"""Name lookups that end by a deadline.

The operating system's lookup (`getaddrinfo`) takes no timeout: a resolver that does not
answer holds it for as long as resolv.conf's timeouts and attempts add up to, or longer
(NSS modules, a hung nscd). httpx's sync transport calls it inside
`socket.create_connection`, before any of its timeouts or channels/deadline.py's deadline
applies, so a send to a host whose name nobody answers for outran the adapter's
`longest_send`. Here the lookup runs in a thread of its own and the caller waits for it
only as long as it has left: past that, the send fails (and is retried), while the lookup
ends on its own, its answer thrown away.

A `Resolver` is the lookup itself, `resolver(host, port) -> addresses`: the IP addresses
to try, in order. The adapters take one (`resolver=`) and default to `system_resolver`,
the operating system's, as `socket.create_connection` uses it.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence

Resolver = Callable[[str, int], Sequence[str]]

# Lookups under way at once, the abandoned ones included; past it a lookup fails at once
# (transient) instead of starting yet another thread behind a resolver that never ends.
MAX_LOOKUPS = 64
_slots = threading.BoundedSemaphore(MAX_LOOKUPS)


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's addresses for `host`, in its order (getaddrinfo, TCP). A
    link-local IPv6 address keeps its zone, `fe80::1%4` (the interface's index): without
    it the connect cannot tell which link, and fails (EINVAL)."""
    found: list[str] = []
    for family, *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) == 4 and sockaddr[3]:
            address = f"{address.partition('%')[0]}%{sockaddr[3]}"  # (.., flowinfo, scope)
        if address not in found:
            found.append(address)
    return found


def ip_literal(host: str) -> bool:
    """Is `host` an IP address already (nothing to look up)?"""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def start_lookup(resolver: Resolver, host: str, port: int) -> concurrent.futures.Future[list[str]]:
    """`resolver(host, port)` in a daemon thread of its own (a thread pool's workers
    would all end up waiting on a resolver that does not answer). The future holds the
    addresses, checked to be IP addresses, or the lookup's error: an `OSError` for no
    address, too many lookups under way (MAX_LOOKUPS), or an answer that is not one."""
    future: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
    future.set_running_or_notify_cancel()
    if not _slots.acquire(blocking=False):
        future.set_exception(
            OSError(f"cannot look up {host}: {MAX_LOOKUPS} name lookups are still under way")
        )
        return future

    def run() -> None:
        addresses: list[str] = []
        failure: BaseException | None = None
        try:
            addresses = [str(a) for a in resolver(host, port)]
            wrong = [a for a in addresses if not ip_literal(a)]
            if wrong or not addresses:
                raise OSError(
                    f"the lookup of {host} gave no IP address"
                    + (f" ({wrong[0]!r})" if wrong else "")
                )
        except BaseException as exc:  # handed to the caller, who may be gone by now
            failure = exc
        _slots.release()  # before the answer: a lookup that has ended holds no slot
        if failure is None:
            future.set_result(addresses)
        else:
            future.set_exception(failure)

    try:
        threading.Thread(target=run, name="journeyman-lookup", daemon=True).start()
    except RuntimeError as exc:  # no thread to be had: nothing started, nothing counted
        _slots.release()
        future.set_exception(OSError(f"cannot look up {host}: {exc}"))
    return future


def lookup(resolver: Resolver, host: str, port: int, seconds: float | None) -> list[str]:
    """The addresses of `host`, waiting at most `seconds` (None: as long as it takes);
    raises `TimeoutError` when the lookup has not ended by then, or its `OSError`."""
    if ip_literal(host):
        return [host]
    future = start_lookup(resolver, host, port)
    try:
        return future.result(seconds)
    except concurrent.futures.TimeoutError:
        if future.done():  # the resolver's own timeout
            raise
        raise TimeoutError(f"the name lookup of {host} did not end in {seconds:g} s") from None


__all__ = ["MAX_LOOKUPS", "Resolver", "ip_literal", "lookup", "start_lookup", "system_resolver"]
