"""Wake-ups across processes on one SQLite file: what LISTEN/NOTIFY is on PostgreSQL
(engine/store/sql/notify.py), as datagrams between the processes.

Without them a `journeyman worker` beside an API process (`serve --no-worker`) on one
SQLite file found new events on its loops' safety interval (0.5 s): an API and a
worker on two cores handle more than `serve` alone, whose API, worker, timers and
dispatcher share one interpreter, but only if the worker hears about the events at once.

- Every process that listens (`journeyman serve` and `journeyman worker`; an API-only
  process only sends) binds a datagram socket in Linux's abstract namespace, named
  `journeyman-wake-<token>`, and keeps a file named `<token>` in a folder beside the
  database (`<database>-wake/`, by the file's real path; made with the permissions of
  the database's folder, which every process on the file can write already: SQLite
  makes its -wal and -shm files there): the folder lists who listens. The listener
  touches its file every second (and makes it, and the folder, again if they went).
- A writer's notes (the same topics and payloads as PostgreSQL's) go after its
  transaction commits (the store keeps them until then; a rolled-back transaction
  sends nothing): one datagram per commit to every listener but itself. The listener
  reads whatever is queued at once and wakes each loop once.
- The file holds the lane of the inbox the listener's worker serves (`K/N`; `0/1` is
  every profile): a lane worker with nothing of its own takes the events of the
  profiles no live listener's lane holds (`lanes_served`, engine/runtime/takeover.py):
  a SIGKILLed worker's 10 s (`STALE`) after its last heartbeat, a stopped one's (its
  file removed) at once. A file whose text is not a lane, or that cannot be read as a
  small plain file (a FIFO, a link, another user's without read permission), makes the
  lanes served unknown (the takeover's 30 s rule), never a lane nobody serves.
- A process that died leaves its file behind (another namespace's is removed by whoever
  reads the lanes served, once a minute old: `FORGOTTEN`); its socket went with it, so sending to it
  is refused, and the sender removes the file once it is older than a few heartbeats (a
  live listener's is never that old). Abstract sockets belong to a network namespace:
  the token starts with the namespace's id, and a process sends only to (and, until
  they are a minute old, removes only files of) its own namespace; processes on one
  file in different namespaces (two containers sharing a volume) find each other's
  work on their `--tick`.
- A full receive queue (10 datagrams on Linux by default) drops the datagram: the loops
  it would have woken run on their safety interval instead. The listener empties its
  queue whenever it runs, so that takes ten commits between two of its turns.

Abstract sockets need no file (a socket path is limited to 108 bytes, a pytest temporary
folder is longer) and vanish with their process. Elsewhere than Linux there are none:
`WakeSockets.beside()` returns None and processes find work on their safety interval,
as before; so does a process whose folder cannot be written (it says so in its log). A
datagram is only ever a wake-up (a spurious one costs one empty run), so another local
program sending one can do no more than that.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from engine.ports import Lane
from engine.store.sql.notify import Wake, deliver, payload_time

log = logging.getLogger("journeyman.notify")

ADDRESS_PREFIX = b"\0journeyman-wake-"
MAX_DATAGRAM = 4096  # a commit's notes: a few topics and an ISO timestamp
HEARTBEAT = 1.0  # seconds between a listener's touches of its file
STALE = 10 * HEARTBEAT  # a file this old whose socket refuses is a dead listener's
# A file this old is a dead listener's whatever its namespace (whose senders alone can
# ask its socket): removed by whoever reads the lanes served
FORGOTTEN = 60 * HEARTBEAT
_TOKEN = re.compile(r"\d+-\d+-[0-9a-f]{12}")  # a listener's file name (`listen`)
LANE_TEXT_MAX = 32  # bytes of a listener's file read (`K/N`)


class WakeSockets:
    """The wake-ups of one SQLite database file: send notes, listen for them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.namespace = _network_namespace()
        self._own: str | None = None  # this process's token while it listens
        self._own_pid = os.getpid()  # a forked child is not the listener
        # the folder's mtime, when it was listed, and its listeners (see _listeners)
        self._listed: tuple[int, float, list[os.DirEntry[str]]] | None = None
        # lanes_served: the folder's mtime and when it was read, what it said, and
        # whether this process's own file was among the live ones (`alone`)
        self._served: tuple[int, float, tuple[Lane, ...] | None, bool] | None = None
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    @classmethod
    def beside(cls, database: str) -> WakeSockets | None:
        """The wake-ups of the database file at `database` (None where abstract sockets
        do not exist)."""
        if not sys.platform.startswith("linux") or not hasattr(socket, "AF_UNIX"):
            return None
        return cls(Path(f"{os.path.realpath(database)}-wake"))

    def send(self, notes: Iterable[tuple[str, str]]) -> None:
        """One datagram with the notes to every other listener (after the commit).
        Never raises: the write it follows is committed already."""
        try:
            self._send(notes)
        except Exception as exc:  # a wake-up lost: the loops' safety interval finds it
            log.debug("wake-ups not sent: %s", exc)

    def _send(self, notes: Iterable[tuple[str, str]]) -> None:
        lines = [f"{topic}\t{payload}" for topic, payload in dict.fromkeys(notes)]
        if not lines:
            return
        message = "\n".join(lines).encode()
        listeners = self._listeners()
        own = self._own if self._own_pid == os.getpid() else None
        for entry in listeners:
            if entry.name == own:
                continue  # this process woke its own loops directly
            try:
                self._sender.sendto(message, ADDRESS_PREFIX + os.fsencode(entry.name))
            except BlockingIOError:
                continue  # its queue is full: its loops run on their safety interval
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(entry)  # nobody binds its name: a dead listener's file
            except OSError as exc:  # never fail a committed write over a wake-up
                log.debug("a wake-up to %s failed: %s", entry.name, exc)

    def _listeners(self) -> list[os.DirEntry[str]]:
        """The listeners of this namespace, as the folder lists them: read again when
        the folder changed (its mtime) or a second has passed (a listener that came
        within the folder's timestamp granularity of the last read), not on every
        commit (`serve` alone commits hundreds of times a second to a folder that only
        lists itself)."""
        try:
            changed = os.stat(self.folder).st_mtime_ns
        except OSError:
            return []  # no folder (yet, or the database went): nobody listens
        now = time.monotonic()
        cached = self._listed
        if cached is not None and cached[0] == changed and now - cached[1] < HEARTBEAT:
            return cached[2]
        try:
            listeners = [entry for entry in os.scandir(self.folder)
                         if entry.name.startswith(f"{self.namespace}-")]
        except OSError:
            return []
        self._listed = (changed, now, listeners)
        return listeners

    def _forget(self, entry: os.DirEntry[str]) -> None:
        """Remove a refused listener's file, if it is stale: a live listener touches its
        own every second, and one that has just bound its socket may not have made it
        yet (the other way round is harmless)."""
        with contextlib.suppress(OSError):
            # file times are the wall clock's, never a test clock's
            if time.time() - entry.stat().st_mtime > STALE:  # noqa: TID251
                os.unlink(entry.path)

    def lanes_served(self) -> tuple[Lane, ...] | None:
        """The lanes the live listeners' workers serve (every namespace's: the files
        touched within `STALE`), this process's among them; None when that is not known:
        this process does not listen, or a live listener does not say (an older
        journeyman's empty file). Read again when the folder changed (a listener came or
        went) or half a heartbeat has passed (one may have died)."""
        return self._lanes()[0]

    def alone(self) -> bool:
        """This process listens, its own file is live, and no other live listener's is
        (the folder read again as `lanes_served` says)."""
        served, own_live = self._lanes()
        return served is not None and len(served) == 1 and own_live

    def _lanes(self) -> tuple[tuple[Lane, ...] | None, bool]:
        """`lanes_served`, and whether this process's own file is among the live."""
        if self._own is None or self._own_pid != os.getpid():
            return None, False
        try:
            changed = os.stat(self.folder).st_mtime_ns
        except OSError:
            return None, False  # our own file is not there either
        now = time.monotonic()
        cached = self._served
        if cached is not None and cached[0] == changed and now - cached[1] < HEARTBEAT / 2:
            return cached[2], cached[3]
        served, own_live = self._read_lanes()
        self._served = (changed, now, served, own_live)
        return served, own_live

    def _read_lanes(self) -> tuple[tuple[Lane, ...] | None, bool]:
        served: list[Lane] = []
        own_live = False
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return None, False  # our own file is not there either
        for entry in entries:
            if entry.name.startswith("."):  # a marker being written (_touch), or left
                self._forget(entry)  # half written by a killed process
                continue
            if not _TOKEN.fullmatch(entry.name):
                continue  # no listener's name
            try:
                # file times are the wall clock's, never a test clock's
                age = time.time() - entry.stat(follow_symlinks=False).st_mtime  # noqa: TID251
                if age > STALE:  # a dead listener's, not yet removed
                    if age > FORGOTTEN:  # by the senders of its namespace: nobody's left
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                    continue
                lane = _lane_in(entry.path)
            except FileNotFoundError:
                continue  # gone meanwhile
            except OSError:
                return None, False  # there, but not readable: not known
            if lane is None:
                return None, False  # a listener that does not say which lane
            served.append(lane)
            own_live = own_live or entry.name == self._own
        return tuple(served), own_live

    def listen(self, wakes: Mapping[str, Wake], serves: Lane | None = None
               ) -> Callable[[], None]:
        """Call `wakes[topic]` on each note from another process (the timers' with the
        due time); returns the function that stops listening. `serves`: the lane of the
        inbox this process's worker handles, written in its file (`lanes_served`). A
        folder that cannot be written means no wake-ups, not a process that cannot
        start."""
        token = f"{self.namespace}-{os.getpid()}-{secrets.token_hex(6)}"
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        marker = self.folder / token
        content = "" if serves is None else str(serves)
        try:
            receiver.bind(ADDRESS_PREFIX + token.encode())
            self._touch(marker, content)
        except OSError as exc:
            receiver.close()
            log.warning("no wake-ups from other processes on this database (%s): they "
                        "are found on the loops' safety interval", exc)
            return lambda: None
        receiver.settimeout(HEARTBEAT)
        self._own, self._own_pid = token, os.getpid()
        stop = threading.Event()

        def run() -> None:
            touched = time.monotonic()
            while not stop.is_set():
                try:
                    first: bytes | None = receiver.recv(MAX_DATAGRAM)
                except TimeoutError:
                    first = None
                except OSError as exc:
                    if not stop.is_set():
                        log.error("wake-ups from other processes ended (%s): no more "
                                  "heartbeats, so other lane workers take this one's lane",
                                  exc)
                    return  # closed: stopping
                try:
                    for topic, payload in (_drain(receiver, first).items()
                                           if first is not None else ()):
                        try:
                            deliver(wakes, topic, payload)
                        except Exception:  # a wake-up must not end the listening
                            log.exception("a wake-up failed")
                except Exception:  # nor a datagram: it ends neither the heartbeat
                    log.exception("wake-ups could not be read")
                if time.monotonic() - touched >= HEARTBEAT:
                    touched = time.monotonic()
                    with contextlib.suppress(OSError):
                        self._touch(marker, content)  # the heartbeat (back, if it went)

        thread = threading.Thread(target=run, name="journeyman-wakes", daemon=True)
        thread.start()

        def stop_listening() -> None:
            stop.set()
            if self._own == token:
                self._own = None
            with contextlib.suppress(OSError):  # wakes the thread from its recv
                self._sender.sendto(b"", ADDRESS_PREFIX + token.encode())
            thread.join(5)
            with contextlib.suppress(OSError):  # after the thread: no heartbeat brings it back
                marker.unlink()
            receiver.close()

        return stop_listening

    def _touch(self, marker: Path, content: str) -> None:
        """Touch the marker, or make it with `content` (written beside it under a name
        no listener has, then renamed: a reader never sees it half written), and the
        folder first if it went."""
        try:
            os.utime(marker)
            return
        except FileNotFoundError:
            pass
        try:
            os.mkdir(self.folder)
        except FileExistsError:
            pass
        else:  # made now: as the database's folder, so that a process of another user
            # on the same file (which can write there) can write here too, or its lane
            # would look unserved; never writable by all (a /tmp), and never through a
            # link put in its place meanwhile
            with contextlib.suppress(OSError):
                fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                try:
                    os.fchmod(fd, os.stat(self.folder.parent).st_mode & 0o2775)
                finally:
                    os.close(fd)
        part = self.folder / f".{marker.name}"
        part.write_text(content)
        os.replace(part, marker)

    def close(self) -> None:
        self._sender.close()


def _lane_in(path: str) -> Lane | None:
    """The lane a listener's file names; None if it names none, or is no small plain
    file (a FIFO would block the read, a link point anywhere, a big file cost memory).
    Raises OSError when it cannot be opened (FileNotFoundError: gone)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, LANE_TEXT_MAX + 1)
    finally:
        os.close(fd)
    try:
        return Lane.parse(data.decode("ascii").strip()) if len(data) <= LANE_TEXT_MAX else None
    except (UnicodeDecodeError, ValueError):
        return None


def _drain(receiver: socket.socket, first: bytes) -> dict[str, str]:
    """The notes of `first` and of every datagram queued behind it, each topic once
    (the timers' with the earliest due time; none at all means now): one wake-up per
    loop, and the queue left empty for the next commits."""
    topics: dict[str, str] = {}
    data: bytes | None = first
    timeout = receiver.gettimeout()
    receiver.settimeout(0.0)  # with a timeout set, recv would wait for it
    try:
        while data is not None:
            for line in data.decode(errors="replace").splitlines():
                topic, _, payload = line.partition("\t")
                known = topics.get(topic)
                topics[topic] = payload if known is None else _sooner(known, payload)
            try:
                data = receiver.recv(MAX_DATAGRAM)
            except OSError:  # nothing more queued (BlockingIOError), or closed
                data = None
    finally:
        with contextlib.suppress(OSError):
            receiver.settimeout(timeout)
    return topics


def _sooner(a: str, b: str) -> str:
    """Of two payloads, the one that asks for the sooner run: no time (or not a time)
    is now."""
    at_a, at_b = payload_time(a), payload_time(b)
    if at_a is None or at_b is None:
        return a if at_a is None else b
    return a if at_a <= at_b else b


def _network_namespace() -> str:
    """The id of this process's network namespace (abstract sockets are per namespace)."""
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return "0"
