"""Wake-ups between the processes on one SQLite file (engine/store/sql/wake_sockets.py):
what NOTIFY is on PostgreSQL. Two stores on one file stand for two processes (each
listens under a token of its own); the real processes are in
tests/service/test_serve.py."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.store.sql import SqlStore
from engine.store.sql.wake_sockets import ADDRESS_PREFIX, WakeSockets
from engine.values import WriteRun
from tests.store.helpers import T0, later, outbox_entry, timer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="abstract sockets are Linux's")


class Heard:
    """What a listener was woken for, in order: (topic, due time or None)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, datetime | None]] = []
        self.changed = threading.Condition()

    def wakes(self) -> dict[str, Callable[..., None]]:
        def wake(topic: str) -> Callable[..., None]:
            def woken(at: datetime | None = None) -> None:
                with self.changed:
                    self.items.append((topic, at))
                    self.changed.notify_all()
            return woken
        return {topic: wake(topic) for topic in ("inbox", "timers", "outbox")}

    def wait_for(self, topic: str, timeout: float = 5.0) -> tuple[str, datetime | None]:
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((i for i in self.items if i[0] == topic), None), timeout)
        assert found, f"no {topic} wake-up within {timeout}s (heard {self.items})"
        return found


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SqlStore, SqlStore, Heard]]:
    """A writer store and a listening store on one file."""
    url = f"sqlite:///{tmp_path / 'wakes.db'}"
    writer = SqlStore(url, create=True)
    listener = SqlStore(url)
    heard = Heard()
    stop = listener.listen(heard.wakes())
    try:
        yield writer, listener, heard
    finally:
        stop()
        writer.close()
        listener.close()


def event(n: int) -> dict[str, Any]:
    return {"messageId": f"m-{n}", "type": "track", "event": "Signed Up", "userId": f"u{n}"}


def test_accepted_events_wake_the_other_process_after_the_commit(
        pair: tuple[SqlStore, SqlStore, Heard]) -> None:
    writer, listener, heard = pair
    with writer.transaction():
        writer.accept_events([event(1)])
        time.sleep(0.2)
        assert heard.items == [], "woken before the commit: it would find nothing"
    committed = time.monotonic()
    heard.wait_for("inbox")
    # at once, not on the listener's 1 s heartbeat (a drain that waited for its
    # timeout once made every wake-up a second late)
    assert time.monotonic() - committed < 0.5
    # Woken after the commit: the event is there to be claimed.
    assert listener.inbox_counts().get("pending") == 1


def test_a_rolled_back_transaction_wakes_nobody(
        pair: tuple[SqlStore, SqlStore, Heard]) -> None:
    writer, _, heard = pair
    def rolled_back() -> None:
        with writer.transaction():
            writer.accept_events([event(2)])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        rolled_back()
    writer.accept_events([event(3)])  # the next commit sends only its own note
    heard.wait_for("inbox")
    time.sleep(0.2)
    assert heard.items == [("inbox", None)]


def test_a_process_does_not_wake_itself(tmp_path: Path) -> None:
    """Its own loops were woken directly (the worker's on_sends, the API's wake_events)."""
    store = SqlStore(f"sqlite:///{tmp_path / 'self.db'}", create=True)
    heard = Heard()
    stop = store.listen(heard.wakes())
    try:
        store.accept_events([event(4)])
        time.sleep(0.3)
        assert heard.items == []
    finally:
        stop()
        store.close()


def test_a_batch_wakes_the_outbox_and_the_timers_at_its_earliest_timer(
        pair: tuple[SqlStore, SqlStore, Heard]) -> None:
    writer, _, heard = pair
    run = WriteRun()
    run.add_timer(timer("k-late", later(3)))
    run.add_timer(timer("k-soon", later(1)))
    run.sends.append(outbox_entry("send-1"))
    writer.write_changes([run])
    assert heard.wait_for("timers") == ("timers", later(1))
    assert heard.wait_for("outbox") == ("outbox", None)


def test_queued_notes_wake_each_loop_once_at_the_soonest_time(tmp_path: Path) -> None:
    """The listener reads everything queued at once: one wake-up per loop (timers at the
    soonest time asked for), and the queue is empty again for the next commits."""
    sender, listener = WakeSockets(tmp_path), WakeSockets(tmp_path)
    heard = Heard()
    gate = threading.Event()
    wakes = heard.wakes()
    first_inbox = wakes["inbox"]

    def slow_inbox(at: datetime | None = None) -> None:
        first_inbox(at)
        gate.wait(5)  # the listener is busy: what comes meanwhile queues

    stop = listener.listen({**wakes, "inbox": slow_inbox})
    try:
        sender.send([("inbox", "")])
        heard.wait_for("inbox")
        for when in ("2026-03-02T10:00:00Z", "2026-03-02T09:00:00.5Z",
                     "2026-03-02T09:30:00Z"):
            sender.send([("timers", when), ("outbox", "")])
        gate.set()
        heard.wait_for("timers")
        time.sleep(0.2)
        assert heard.items == [("inbox", None), ("timers", T0 + timedelta(seconds=0.5)),
                               ("outbox", None)]
    finally:
        gate.set()
        stop()
        sender.close()
        listener.close()


def test_a_dead_listener_is_forgotten_and_a_stopped_one_leaves_nothing(
        tmp_path: Path) -> None:
    """A killed process leaves its file: nobody binds its name any more, the send is
    refused and the file removed once it is older than a live listener's ever is. A
    fresh refused file (a listener between binding and its first touch) is left. A
    listener that stops removes its own."""
    sender, listener = WakeSockets(tmp_path), WakeSockets(tmp_path)
    dead = tmp_path / f"{sender.namespace}-12345-deadbeef0000"
    dead.touch()
    os.utime(dead, (time.time() - 60, time.time() - 60))
    fresh = tmp_path / f"{sender.namespace}-12346-deadbeef0001"
    fresh.touch()
    heard = Heard()
    stop = listener.listen(heard.wakes())
    sender.send([("inbox", "")])
    heard.wait_for("inbox")  # the live one still hears
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([listener._own, fresh.name])
    stop()
    assert [p.name for p in tmp_path.iterdir()] == [fresh.name]
    sender.send([("inbox", "")])  # nobody left: nothing happens
    sender.close()
    listener.close()


def test_a_listener_that_comes_later_is_heard_from_the_next_commit(tmp_path: Path) -> None:
    """A sender lists the folder again when it changed, not on every commit."""
    folder = tmp_path / "db-wake"
    folder.mkdir()
    sender, listener = WakeSockets(folder), WakeSockets(folder)
    sender.send([("inbox", "")])  # nobody listens yet: an empty listing, kept
    heard = Heard()
    stop = listener.listen(heard.wakes())
    try:
        sent = time.monotonic()
        sender.send([("inbox", "")])
        heard.wait_for("inbox")
        assert time.monotonic() - sent < 0.5
    finally:
        stop()
        sender.close()
        listener.close()


def test_a_file_name_that_is_no_text_costs_nothing_but_its_wake_up(tmp_path: Path) -> None:
    """`send` follows a committed write: whatever lies in the folder, it never raises
    (a name that is not UTF-8 came back from scandir with surrogates)."""
    sender = WakeSockets(tmp_path)
    odd = os.fsencode(str(tmp_path)) + b"/" + sender.namespace.encode() + b"-\xff\xfe"
    with open(odd, "wb"):
        pass
    sender.send([("inbox", "")])  # refused (nobody binds it), not raised
    sender.close()


def test_another_network_namespace_is_neither_woken_nor_forgotten(tmp_path: Path) -> None:
    """Abstract sockets are per network namespace: a listener of another one (a
    container sharing the volume) refuses every datagram, and its file must not be
    taken for a dead listener's."""
    sender = WakeSockets(tmp_path)
    other = tmp_path / f"{int(sender.namespace) + 1}-777-cafe00000000"
    other.touch()
    os.utime(other, (time.time() - 60, time.time() - 60))
    sender.send([("inbox", "")])
    assert other.exists()
    sender.close()


def test_a_symlinked_database_wakes_the_processes_of_its_real_file(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    SqlStore(f"sqlite:///{real}", create=True).close()
    (tmp_path / "current.db").symlink_to(real)
    writer = SqlStore(f"sqlite:///{tmp_path / 'current.db'}")
    listener = SqlStore(f"sqlite:///{real}")
    heard = Heard()
    stop = listener.listen(heard.wakes())
    try:
        writer.accept_events([event(7)])
        heard.wait_for("inbox")
    finally:
        stop()
        writer.close()
        listener.close()


def test_a_listener_makes_its_file_again_when_the_folder_went(
        pair: tuple[SqlStore, SqlStore, Heard]) -> None:
    writer, listener, heard = pair
    assert listener._wake_sockets is not None
    folder = listener._wake_sockets.folder
    shutil.rmtree(folder)
    deadline = time.monotonic() + 5
    # the listener's heartbeat, within a second or two: the folder, then its file in it
    # (a send between the two finds nobody listening)
    while not (folder.exists() and any(folder.iterdir())):
        assert time.monotonic() < deadline, "the listener did not come back"
        time.sleep(0.05)
    writer.accept_events([event(8)])
    heard.wait_for("inbox")


def test_a_folder_that_cannot_be_written_means_no_wake_ups_not_a_failure(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """(A file where the folder should be stands for a folder of another user's: the
    tests run as root, who may write anywhere.)"""
    url = f"sqlite:///{tmp_path / 'blocked.db'}"
    (tmp_path / "blocked.db-wake").write_text("not a folder")
    store = SqlStore(url, create=True)
    try:
        stop = store.listen(Heard().wakes())
        stop()
        assert "no wake-ups from other processes" in caplog.text
        store.accept_events([event(9)])  # writes go on; their notes go nowhere
        assert store.inbox_counts() == {"pending": 1}
    finally:
        store.close()


def test_hostile_datagrams_only_wake_or_are_ignored(
        pair: tuple[SqlStore, SqlStore, Heard]) -> None:
    """Any local program can send to an abstract socket: what it sends is at most a
    wake-up (an unknown topic or a bad time is ignored; a huge datagram is cut) and the
    listener goes on."""
    writer, listener, heard = pair
    assert listener._wake_sockets is not None
    token = listener._wake_sockets._own
    assert token is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        address = ADDRESS_PREFIX + token.encode()
        for junk in (b"", b"\xff\xfe\x00", b"nonsense\t", b"timers\tnot a time",
                     b"x" * 60_000, b"drop table\n;--",
                     # a time UTC cannot hold (it overflowed, and ended the thread and
                     # with it the heartbeat: the lane looked dead, engine/runtime/
                     # takeover.py)
                     b"timers\t0001-01-01T00:00:00+14:00\ntimers\t2020-01-01T00:00:00Z"):
            sock.sendto(junk, address)
    writer.accept_events([event(5)])
    heard.wait_for("inbox")
    assert all(topic in ("inbox", "timers") for topic, _ in heard.items)
    assert ("timers", None) in heard.items  # "not a time": a plain wake-up
    marker = listener._wake_sockets.folder / token
    before = marker.stat().st_mtime
    time.sleep(1.5)
    assert marker.stat().st_mtime > before  # the heartbeat goes on


def test_the_folder_takes_the_permissions_of_the_databases_folder(tmp_path: Path) -> None:
    """A worker of another user on the same file (which can write the database's folder)
    can make its file here too: else its lane would look unserved (engine/runtime/
    takeover.py)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)
    sockets = WakeSockets(shared / "jm.db-wake")
    stop = sockets.listen({})
    try:
        assert (sockets.folder.stat().st_mode & 0o7777) == 0o2775
    finally:
        stop()
        sockets.close()
