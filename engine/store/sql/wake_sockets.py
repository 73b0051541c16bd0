"""Wake-ups across processes on one SQLite file: what LISTEN/NOTIFY is on PostgreSQL
(engine/store/sql/notify.py), as datagrams between the processes.

Without them a `journeyman worker` beside an API process (`serve --no-worker`) on one
SQLite file found new events on its loops' safety interval (0.5 s): an API and a
worker on two cores handle more than `serve` alone, whose API, worker, timers and
dispatcher share one interpreter, but only if the worker hears about the events at once.

- Every process that listens (`journeyman serve` and `journeyman worker`; an API-only
  process only sends) binds a datagram socket in Linux's abstract namespace, named
  `journeyman-wake-<token>`, and leaves an empty file named `<token>` in a folder beside
  the database (`<database>-wake/`): the folder lists who listens.
- A writer's notes (the same topics and payloads as PostgreSQL's) are sent after its
  transaction commits (the store keeps them until then; a rolled-back transaction
  sends nothing), one datagram per note to every listener but itself.
- A process that died leaves its file behind; its socket went with it, so sending to it
  is refused, and the sender removes the file. A full receive queue drops the datagram:
  that listener has wake-ups waiting already.

Abstract sockets need no file (a socket path is limited to 108 bytes, a pytest temporary
folder is longer) and vanish with their process. Elsewhere than Linux there are none:
`WakeSockets.beside()` returns None and processes find work on their safety interval,
as before. A datagram is only ever a wake-up (a spurious one costs one empty run), so
another local program sending one can do no more than that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from engine.store.sql.notify import Wake, deliver

log = logging.getLogger("journeyman.notify")

ADDRESS_PREFIX = b"\0journeyman-wake-"
MAX_DATAGRAM = 512  # topic and an ISO timestamp; anything longer is not ours


class WakeSockets:
    """The wake-ups of one SQLite database file: send notes, listen for them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._own: str | None = None  # this process's token while it listens
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    @classmethod
    def beside(cls, database: str) -> WakeSockets | None:
        """The wake-ups of the database file at `database` (None where abstract sockets
        do not exist, or the folder cannot be made)."""
        if not sys.platform.startswith("linux") or not hasattr(socket, "AF_UNIX"):
            return None
        folder = Path(f"{database}-wake")
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            log.warning("no wake-ups between processes on %s: %s", database, exc)
            return None
        return cls(folder)

    def send(self, notes: Iterable[tuple[str, str]]) -> None:
        """One datagram per note to every other listener (after the commit)."""
        messages = [f"{topic}\n{payload}".encode() for topic, payload in dict.fromkeys(notes)]
        if not messages:
            return
        try:
            listeners = [entry.name for entry in os.scandir(self.folder)]
        except OSError:
            return  # the folder went (the database was deleted): nobody to wake
        for token in listeners:
            if token == self._own:
                continue  # this process woke its own loops directly
            address = ADDRESS_PREFIX + token.encode()
            for message in messages:
                try:
                    self._sender.sendto(message, address)
                except BlockingIOError:
                    break  # its queue is full: it has wake-ups waiting already
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):  # gone: nobody binds its name
                        (self.folder / token).unlink()
                    break
                except OSError as exc:  # never fail a commit over a wake-up
                    log.debug("a wake-up to %s failed: %s", token, exc)
                    break

    def listen(self, wakes: Mapping[str, Wake]) -> Callable[[], None]:
        """Call `wakes[topic]` on each note from another process (the timers' with the
        due time); returns the function that stops listening."""
        token = f"{os.getpid()}-{secrets.token_hex(6)}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(ADDRESS_PREFIX + token.encode())
        receiver.settimeout(1.0)
        marker = self.folder / token
        marker.touch()
        self._own = token
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                try:
                    data = receiver.recv(MAX_DATAGRAM)
                except TimeoutError:
                    continue
                except OSError:
                    return  # closed: stopping
                topic, _, payload = data.decode(errors="replace").partition("\n")
                try:
                    deliver(wakes, topic, payload)
                except Exception:  # a wake-up must not end the listening
                    log.exception("a wake-up failed")

        thread = threading.Thread(target=run, name="journeyman-wakes", daemon=True)
        thread.start()

        def stop_listening() -> None:
            stop.set()
            self._own = None
            with contextlib.suppress(OSError):
                marker.unlink()
            thread.join(5)
            receiver.close()

        return stop_listening

    def close(self) -> None:
        self._sender.close()
