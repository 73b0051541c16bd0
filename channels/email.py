"""The email channel: send each message over SMTP (aiosmtplib), on one kept-open connection.

The dispatcher is synchronous and aiosmtplib is asynchronous, so the adapter owns one
private event loop running in a daemon thread; `send()` builds the MIME message in the
caller's thread and hands the SMTP conversation to that loop. The SMTP connection is
opened on the first send and kept for the next ones; a connection the server dropped
while idle is reopened, and a send that fails because a reused connection turned out
to be dead is retried once on a fresh one. `close()` says QUIT and stops the loop.

Delivery outcomes, as the dispatcher (engine/runtime/dispatch.py) reads them:

- a 5xx reply to MAIL FROM, RCPT TO or DATA, no or a malformed address (or more than
  one), a header the message cannot carry, any failure building the message:
  `DeliveryError(permanent=True)`, never retried; the 5xx replies are hard bounces
  (`bounce=True`), which put the address on the suppression list;
- a 4xx reply, a timeout, a refused or lost connection, and any failure while opening
  the connection (banner, EHLO, STARTTLS, AUTH -- a server or configuration problem,
  not a property of this message): `DeliveryError(permanent=False)`, retried; a 4xx
  to RCPT TO (greylisted, mailbox full) is the recipient's alone (`recipient=True`): the
  dispatcher goes on with the other recipients.

`send_batch` settles every message on its own and never raises: one message that cannot
be built fails alone, and the messages the server accepted before it stay accepted (the
dispatcher marks them sent; nothing is sent twice).

The Message-ID is derived from the send's idempotency key, so every retry of one send
carries the same Message-ID and a receiver can drop a duplicate.

Headers are folded at 998 characters, not 78: aiosmtplib's own `send_message` folds at
78, which RFC 2047-encodes a long `List-Unsubscribe` URL, and mail providers then no
longer recognise it. The adapter therefore flattens the message itself and uses
`sendmail`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.errors
import email.policy
import email.utils
import hashlib
import ipaddress
import socket
import threading
import time
from collections.abc import Coroutine
from datetime import UTC
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiosmtplib

from channels.resolve import Resolver, ip_literal, start_lookup, system_resolver
from engine.ports import DeliveryError, Message
from journeys.header_text import one_line

if TYPE_CHECKING:
    from socket import _GetAddrInfoResult  # typeshed's, of asyncio's getaddrinfo

T = TypeVar("T")

# RFC 5322 allows 998 characters a line; never emit 8-bit bodies (no 8BITMIME needed).
_POLICY = email.policy.SMTP.clone(max_line_length=998, cte_type="7bit")
_POLICY_UTF8 = _POLICY.clone(utf8=True)

BUILD_SECONDS = 0.25  # building one message, at most (longest_send)

# Headers the adapter writes itself; a rendered header may not replace them (a
# template that could replace the Message-ID would break duplicate detection).
_OWN_HEADERS = frozenset({"to", "date", "message-id", "mime-version", "subject",
                          "content-type", "content-transfer-encoding", "cc", "bcc"})


class EmailChannel:
    """SMTP delivery. `start_tls=None` keeps aiosmtplib's behaviour (upgrade when the
    server offers STARTTLS), `False` never upgrades, `True` requires it; `use_tls` is
    implicit TLS (port 465). `timeout` bounds each SMTP command, and the connect with
    the lookup of `host`'s name; one `send()` returns within about three timeouts
    whatever the server, or the resolver, does. `resolver` looks `host` up
    (channels/resolve.py; the system's by default); it is for code, not channels.yaml."""

    name = "email"

    def __init__(self, *, from_addr: str, host: str = "localhost", port: int = 25,
                 use_tls: bool = False, start_tls: bool | None = None,
                 username: str | None = None, password: str | None = None,
                 timeout: float = 10.0, reply_to: str | None = None,
                 message_id_domain: str = "journeyman.local",
                 validate_certs: bool = True, resolver: Resolver | None = None) -> None:
        sender = email.utils.parseaddr(from_addr)[1]
        if "@" not in sender:
            raise ValueError(f"from_addr {from_addr!r} has no email address")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.host = host
        self.port = port
        self.use_tls = use_tls
        self.start_tls = start_tls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.from_addr = from_addr
        self.reply_to = reply_to
        self.message_id_domain = message_id_domain
        self.validate_certs = validate_certs
        self.resolver: Resolver = resolver or system_resolver
        self.sender = sender  # the envelope sender (MAIL FROM)
        self.connections = 0  # SMTP connections opened so far
        self.sent = 0
        self._lock = threading.Lock()  # one send at a time; the dispatcher may use threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._smtp: aiosmtplib.SMTP | None = None  # touched only on the loop thread
        self._turn: asyncio.Lock | None = None  # made and used on the loop thread

    # --- the public, synchronous side -------------------------------------------------

    def send(self, message: Message) -> None:
        rcpt, data, options = self._prepare(message)
        with self._lock:
            self._run(self._deliver(rcpt, data, options))
            self.sent += 1

    def send_batch(self, messages: list[Message]) -> list[Exception | None]:
        """Send several messages, in order, over the kept connection; one result per
        message (None: delivered). While one message is on the wire the next is built,
        so building (CPU) and the server's replies (waiting) overlap.

        Never raises: every message is settled on its own. A message that cannot be
        built (a malformed address, a bad header, anything `_prepare` trips over) is a
        permanent DeliveryError for that message alone, and messages handed to the
        server before it keep their own results -- so a bad row can neither stop the
        others nor make the dispatcher send already-accepted mail again."""
        results: list[Exception | None] = [None] * len(messages)
        pending: list[tuple[int, concurrent.futures.Future[None]]] = []
        budget = 3 * self.timeout
        with self._lock:
            try:
                loop = self._ensure_loop()
            except Exception as exc:  # no thread for the loop: nothing was sent
                return [DeliveryError(f"cannot start the SMTP loop: {_describe(exc)}")
                        for _ in messages]
            for index, message in enumerate(messages):
                try:
                    rcpt, data, options = self._prepare(message)
                except DeliveryError as exc:  # _prepare turns every failure into one
                    results[index] = exc
                    continue
                coro = _bounded(self._deliver_in_turn(rcpt, data, options), budget)
                try:
                    future = asyncio.run_coroutine_threadsafe(coro, loop)
                except Exception as exc:  # the loop is gone: transient, nothing sent
                    coro.close()
                    results[index] = DeliveryError(f"cannot hand the message to the SMTP "
                                                   f"loop: {_describe(exc)}")
                    continue
                pending.append((index, future))
            # One deadline for them all: each message's budget began when it was handed
            # over (its wait for its turn included), so the last ends by `budget` after
            # the last hand-off; the extra `timeout` is for a loop too busy to cancel.
            # `longest_send` promises it: waiting `budget * len(pending) + timeout` for
            # each in turn could take len(pending) times that on a stuck loop.
            end = time.monotonic() + budget + self.timeout
            for index, future in pending:
                try:
                    future.result(max(end - time.monotonic(), 0.0))
                    self.sent += 1
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    results[index] = DeliveryError(f"SMTP send to {self.host}:{self.port} "
                                                   "did not finish")
                except Exception as exc:
                    results[index] = exc
        return results

    def longest_send(self, count: int) -> float:
        """The seconds a `send` (count 1) or a `send_batch` of `count` takes at most,
        whatever the server does: building each message (BUILD_SECONDS, generous: the
        largest a template may render, ~1 MB, takes ~0.08 s), then `4 * timeout` after
        the last is handed over (the loop's budget of three, plus the wait's one). The
        dispatcher keeps its claim's lease beyond it (engine/runtime/lease.py)."""
        return 4 * self.timeout + BUILD_SECONDS * count

    def _prepare(self, message: Message) -> tuple[str, bytes, list[str]]:
        """(recipient, message bytes, MAIL options). Raises only DeliveryError: a message
        that cannot be built is a permanent failure of that message, whatever the cause
        (the stdlib's address parser, for one, raises AttributeError on `c@[c"`)."""
        try:
            rcpt = self._recipient(message)
            utf8 = not (rcpt.isascii() and self.sender.isascii())
            mime = self.build_message(message, utf8=utf8)
            data = mime.as_bytes(policy=_POLICY_UTF8 if utf8 else _POLICY)
        except DeliveryError:
            raise
        except Exception as exc:
            raise DeliveryError(f"cannot build the email: {_describe(exc)}",
                                permanent=True) from exc
        return rcpt, data, ["SMTPUTF8"] if utf8 else []

    def close(self) -> None:
        """QUIT the connection and stop the loop thread. A later `send()` starts afresh."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            with contextlib.suppress(Exception):  # closing: the server may be gone already
                asyncio.run_coroutine_threadsafe(self._disconnect(polite=True), loop).result(
                    self.timeout + 1)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.timeout + 1)
            self._loop = self._thread = None
            self._turn = None  # it belonged to the stopped loop

    def __enter__(self) -> EmailChannel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def message_id(self, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return f"<{digest}@{self.message_id_domain}>"

    def build_message(self, message: Message, *, utf8: bool = False) -> EmailMessage:
        """The MIME message for `message` (no network); raises a permanent DeliveryError
        when the message cannot be built (no address, a forbidden or malformed header)."""
        rendered = message.rendered
        at = message.at if message.at.tzinfo is not None else message.at.replace(tzinfo=UTC)
        mime = EmailMessage(policy=_POLICY_UTF8 if utf8 else _POLICY)
        extra = dict(rendered.headers)
        reply_to, sender = self.reply_to, self.from_addr
        for name in list(extra):
            lowered = name.lower()
            if lowered in _OWN_HEADERS:
                raise DeliveryError(f"header {name!r} is set by the email adapter and cannot "
                                    f"come from the template", permanent=True)
            if lowered == "reply-to":  # a journey may answer to another address
                reply_to = extra.pop(name)
            elif lowered == "from":  # a template's `from:` (the envelope sender stays)
                sender = extra.pop(name)
        try:  # header values on one line: no header injection, no failure (the renderer
            # folds them already; an outbox row rendered before it did may not be)
            mime["From"] = one_line(sender)
            mime["To"] = one_line(message.to or "")
            mime["Subject"] = one_line(rendered.subject or "")
            if reply_to:
                mime["Reply-To"] = one_line(reply_to)
            mime["Date"] = email.utils.format_datetime(at)
            mime["Message-ID"] = self.message_id(message.key)
            for name, value in extra.items():
                mime[name] = one_line(value)
            text = rendered.text if rendered.text is not None else rendered.body
            if text is None and rendered.html is not None:
                mime.set_content(rendered.html, subtype="html")
            else:
                mime.set_content(text or "")
                if rendered.html is not None:
                    mime.add_alternative(rendered.html, subtype="html")
        except Exception as exc:  # CR/LF in a header, a bad address (the parser's own bugs)
            raise DeliveryError(f"cannot build the email: {_describe(exc)}",
                                permanent=True) from exc
        return mime

    # --- helpers ----------------------------------------------------------------------

    @staticmethod
    def _recipient(message: Message) -> str:
        """The one envelope recipient, read the way the `To` header will be written: an
        address the header parser cannot read cleanly, or more than one address (the
        header would show someone the envelope never reaches), is refused for good."""
        if not message.to or not message.to.strip():
            raise DeliveryError("no email address", permanent=True)
        addresses = _addresses(one_line(message.to))  # as the To header is written
        if addresses is None or len(addresses) != 1:
            what = "more than one email address" if addresses else "invalid email address"
            # the address as given is the person's data: kept with the send, not logged
            raise DeliveryError(what, permanent=True, detail=repr(message.to))
        return addresses[0]

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = _ResolvingLoop(self.resolver)
            thread = threading.Thread(target=_run_loop, args=(loop,), daemon=True,
                                      name=f"journeyman-email-{self.host}:{self.port}")
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the adapter's loop and wait for it (caller holds the lock)."""
        budget = 3 * self.timeout
        future = asyncio.run_coroutine_threadsafe(_bounded(coro, budget), self._ensure_loop())
        try:
            return future.result(budget + self.timeout)
        except concurrent.futures.TimeoutError as exc:  # the loop itself is stuck
            future.cancel()
            raise DeliveryError(f"SMTP send to {self.host}:{self.port} did not finish in "
                                f"{budget + self.timeout:g} s") from exc

    # --- the asynchronous side (runs on the adapter's loop only) ----------------------

    async def _connect(self) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.use_tls,
                               start_tls=self.start_tls, username=self.username,
                               password=self.password, timeout=self.timeout,
                               validate_certs=self.validate_certs)
        try:
            await smtp.connect()
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, aiosmtplib.SMTPException | OSError):
                raise DeliveryError(f"cannot open SMTP connection to {self.host}:{self.port}: "
                                    f"{_describe(exc)}") from exc
            raise
        self.connections += 1
        self._smtp = smtp
        return smtp

    async def _disconnect(self, *, polite: bool = False) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if polite and smtp.is_connected:
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    async def _deliver_in_turn(self, rcpt: str, data: bytes, options: list[str]) -> None:
        """`_deliver` behind a FIFO lock: batch sends run one after another, in order."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            await self._deliver(rcpt, data, options)

    async def _deliver(self, rcpt: str, data: bytes, options: list[str]) -> None:
        smtp = self._smtp
        reused = smtp is not None and smtp.is_connected
        if smtp is None or not reused:
            await self._disconnect()  # the server closed it while idle, or first send
            smtp = await self._connect()
        try:
            try:
                await self._sendmail(smtp, rcpt, data, options)
            except _Stale as exc:
                await self._disconnect()
                if not reused:
                    raise DeliveryError(f"SMTP connection to {self.host}:{self.port} lost "
                                        f"during the send: {exc.reason}") from None
                smtp = await self._connect()  # the kept connection was dead: once, afresh
                try:
                    await self._sendmail(smtp, rcpt, data, options)
                except _Stale as again:
                    raise DeliveryError(f"SMTP connection to {self.host}:{self.port} lost "
                                        f"during the send: {again.reason}") from None
        except DeliveryError:
            if self._smtp is not None and not self._smtp.is_connected:
                await self._disconnect()  # a timeout closed it; a 4xx/5xx reply did not
            raise
        except BaseException:
            await self._disconnect()  # cancelled mid-dialogue: the connection is desynced
            raise

    async def _sendmail(self, smtp: aiosmtplib.SMTP, rcpt: str, data: bytes,
                        options: list[str]) -> None:
        """One MAIL/RCPT/DATA exchange, its failures translated for the dispatcher.
        Raises `_Stale` when the connection turned out to be unusable."""
        try:
            _errors, _reply = await smtp.sendmail(self.sender, [rcpt], data,
                                                  mail_options=options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = exc.recipients
            permanent = bool(refusals) and all(r.code >= 500 for r in refusals)
            detail = "; ".join(f"{r.code} {r.message}" for r in refusals)
            # A bounce either way: hard (5xx, suppressed) or soft (4xx, counted, retried).
            raise DeliveryError(f"recipient {rcpt} refused: {detail}",
                                permanent=permanent, bounce=True, recipient=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # "service not available, closing channel"
                raise _Stale(f"{exc.code} {exc.message}") from exc
            stage = ("sender" if isinstance(exc, aiosmtplib.SMTPSenderRefused)
                     else "message" if isinstance(exc, aiosmtplib.SMTPDataError)
                     else "send")
            # A 5xx to MAIL or DATA is a hard bounce too (a policy refusal of this
            # address or message): the address is suppressed (docs/engagement.md).
            raise DeliveryError(f"{stage} refused by {self.host}: {exc.code} {exc.message}",
                                permanent=exc.code >= 500, bounce=exc.code >= 500) from exc
        except aiosmtplib.SMTPNotSupported as exc:  # SMTPUTF8 needed but not offered
            raise DeliveryError(f"{self.host} cannot take this message: {exc}",
                                permanent=True) from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise DeliveryError(f"SMTP timeout talking to {self.host}:{self.port}: "
                                f"{_describe(exc)}") from exc
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _Stale(_describe(exc)) from exc
        except ValueError as exc:  # aiosmtplib refused an address
            raise DeliveryError("invalid address", permanent=True, detail=str(exc)) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP error from {self.host}:{self.port}: "
                                f"{_describe(exc)}") from exc


def _addresses(text: str) -> list[str] | None:
    """The addresses in a `To` value as the header parser reads them, or None when it
    cannot read them cleanly (a defect, an exception: the stdlib parser fails in odd
    ways on junk such as `c@[c"`). A UTF-8 local part is fine: SMTPUTF8 carries it."""
    try:
        header = _POLICY_UTF8.header_factory("To", text)
        addresses = [str(a.addr_spec) for a in header.addresses]
        defects = [d for d in header.defects
                   if not isinstance(d, email.errors.NonASCIILocalPartDefect)]
    except Exception:
        return None
    if defects or any(a.startswith("@") or "@" not in a or any(c.isspace() for c in a)
                      for a in addresses):
        return None
    return addresses


class _Stale(Exception):  # noqa: N818 -- internal signal, never leaves the adapter
    """The connection broke under a send (disconnect, 421): reconnect, maybe retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _bounded(coro: Coroutine[Any, Any, T], budget: float) -> T:
    try:
        async with asyncio.timeout(budget):
            return await coro
    except TimeoutError as exc:  # the adapter's own errors are DeliveryErrors, not these
        raise DeliveryError(f"SMTP send did not finish in {budget:g} s") from exc


class _ResolvingLoop(asyncio.SelectorEventLoop):
    """The adapter's event loop, looking host names up with its resolver, each lookup in
    a thread of its own (channels/resolve.py): asyncio's own runs `getaddrinfo` in the
    loop's small default executor, whose threads a resolver that does not answer would
    all hold. aiosmtplib bounds the connect, its lookup included, by `timeout`; a lookup
    still running then ends on its own and its answer is dropped."""

    def __init__(self, resolver: Resolver) -> None:
        super().__init__()
        self._resolver = resolver

    async def getaddrinfo(
            self, host: bytes | str | None, port: bytes | str | int | None, *,
            family: int = 0, type: int = 0, proto: int = 0, flags: int = 0,
    ) -> _GetAddrInfoResult:
        if not isinstance(host, str) or not isinstance(port, int) or ip_literal(host):
            return await super().getaddrinfo(host, port, family=family, type=type,
                                             proto=proto, flags=flags)
        addresses = await asyncio.wrap_future(start_lookup(self._resolver, host, port),
                                              loop=self)
        found: _GetAddrInfoResult = []
        for address in addresses:
            if ipaddress.ip_address(address).version == 6:
                if family in (0, socket.AF_INET6):
                    found.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                                  "", (address, port, 0, 0)))
            elif family in (0, socket.AF_INET):
                found.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                              (address, port)))
        if not found:
            raise OSError(f"the lookup of {host} gave no address of the family asked for")
        return found


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
