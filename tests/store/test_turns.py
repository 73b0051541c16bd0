"""Writers of different processes on one SQLite file take turns, API requests first
(engine/store/sql/turns.py).

A second process writes in a loop as background work (a worker's batches: a
transaction held 20 ms, begun again at once), and this process accepts events as an API
request does. With SQLite's busy handler alone the request slept and polled while the
other process took the lock back after every commit, until the busy timeout failed it
(run this file with `_process_turns` returning None to see it); with turns each
request waits for at most the one transaction in progress."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.store.sql import SqlStore
from engine.store.sql.turns import CLAIM, ProcessTurns, process_turns, release_turns
from engine.work_kind import background_work

HOLD = 0.02  # seconds each background transaction holds the write lock


def _background_writer(url: str, stop: str, started: str) -> None:
    store = SqlStore(url)
    n = 0
    with background_work():
        while not os.path.exists(stop):
            with store.transaction():
                n += 1
                store.accept_events([{"messageId": f"bg-{n}", "type": "track",
                                      "event": "Tick", "userId": "bg"}], "background")
                if n == 3:
                    Path(started).touch()
                time.sleep(HOLD)
    store.close()


def test_a_request_waits_for_one_transaction_of_another_process_not_for_its_polls(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'turns.db'}"
    SqlStore(url, create=True).close()
    stop, started = str(tmp_path / "stop"), tmp_path / "started"
    writer = multiprocessing.get_context("spawn").Process(
        target=_background_writer, args=(url, stop, str(started)))
    writer.start()
    store = SqlStore(url)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert writer.is_alive(), "the writer died"
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.01)
        waits = []
        for i in range(30):
            t0 = time.perf_counter()
            store.accept_events([{"messageId": f"api-{i}", "type": "track",
                                  "event": "Signed Up", "userId": f"u{i}"}])
            waits.append(time.perf_counter() - t0)
            time.sleep(0.003)
        assert (tmp_path / "turns.db-turn").exists()
        # One transaction of the other process (20 ms) and the request's own work (with
        # room for a loaded machine). With the busy handler alone the first request
        # never got in: "database is locked" after the 30 s busy timeout.
        assert max(waits) < 0.5, sorted(waits)[-5:]
        assert sum(waits) < 3.0, sum(waits)
        assert store.inbox_counts().get("pending", 0) >= 30
    finally:
        Path(stop).touch()
        writer.join(10)
        store.close()
    assert writer.exitcode == 0


def test_turns_are_one_per_file_in_a_process_and_a_thread_may_nest(tmp_path: Path) -> None:
    path = str(tmp_path / "x.db")
    a, b = process_turns(path), process_turns(path)
    assert a is not None
    assert a is b
    assert a.users == 2
    with a.turn(background=False), a.turn(background=True):  # a nested write passes
        other: list[float] = []

        def second_writer() -> None:
            t0 = time.monotonic()
            with a.turn(background=False):
                other.append(time.monotonic() - t0)

        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.05)
        assert not other  # another thread of this process waits for the turn
    thread.join(5)
    assert other
    assert other[0] >= 0.04
    release_turns(a)
    release_turns(b)
    c = process_turns(path)
    assert c is not None
    assert c is not a  # the last store closed it: a new one
    release_turns(c)


def test_closing_while_another_thread_holds_the_turn_waits_for_it(tmp_path: Path) -> None:
    """A store closed while another of its threads is inside a transaction: the turn is
    let go normally when that transaction ends (closing the file under it dropped the
    lock and made the committed write raise)."""
    turns = ProcessTurns(str(tmp_path / "z.db"))
    inside, errors = threading.Event(), []

    def writer() -> None:
        try:
            with turns.turn(background=True):
                inside.set()
                time.sleep(0.1)
        except Exception as exc:  # the failure under test
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(5)
    turns.close()  # waits for the writer's turn to end
    thread.join(5)
    assert errors == []
    assert turns._fd == -1
    with turns.turn(background=False):  # closed: a writer goes on without turns
        pass


def test_a_turn_held_too_long_elsewhere_is_given_up_after_the_patience(
        tmp_path: Path) -> None:
    """A writer stopped mid-transaction in another process must not hang the others:
    after the patience (the busy timeout) they go on and meet SQLite's timeout."""
    path = str(tmp_path / "y.db")
    with _held_elsewhere(_hold_turn, path):
        turns = ProcessTurns(path, patience=0.2)
        t0 = time.monotonic()
        with turns.turn(background=False):
            waited = time.monotonic() - t0
        assert 0.2 <= waited < 1.0
        turns.close()


def test_requests_of_another_process_are_seen_waiting(tmp_path: Path) -> None:
    """Background work holding the write turn commits early when an API request of
    another process waits for it (it holds the requests' claim: F_GETLK sees it); this
    process's own claims are counted by ForegroundWaits, not here."""
    path = str(tmp_path / "claims.db")
    turns = ProcessTurns(path)
    assert not turns.requests_waiting()
    with _held_elsewhere(_hold_claim, path):
        assert turns.requests_waiting()
    assert not turns.requests_waiting()
    fcntl.lockf(turns._fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, CLAIM)  # our own claim
    assert not turns.requests_waiting()
    turns.close()


@contextmanager
def _held_elsewhere(hold: Callable[[str, Any, Any], None], path: str) -> Iterator[None]:
    """`hold(path, held, stop)` in a process of its own, from `held` to the block's end."""
    ctx = multiprocessing.get_context("spawn")
    held, stop = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=hold, args=(path, held, stop))
    holder.start()
    try:
        assert held.wait(30)
        yield
    finally:
        stop.set()
        holder.join(10)


def _hold_claim(path: str, held: Any, stop: Any) -> None:
    turns = ProcessTurns(path)
    fcntl.lockf(turns._fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, CLAIM)
    held.set()
    stop.wait(30)


def _hold_turn(path: str, held: object, stop: object) -> None:
    turns = ProcessTurns(path)
    with turns.turn(background=True):
        held.set()  # type: ignore[attr-defined]
        stop.wait(30)  # type: ignore[attr-defined]


def test_the_turn_file_has_the_database_files_permissions(tmp_path: Path) -> None:
    """As SQLite's `-wal` and `-shm` files: a database another user may write shares its
    turns with that user's processes too (made with the umask's 0644, their open for
    writing failed and they wrote without turns)."""
    path = tmp_path / "shared.db"
    path.touch()
    os.chmod(path, 0o660)
    turns = ProcessTurns(str(path))
    assert os.stat(f"{path}-turn").st_mode & 0o777 == 0o660
    turns.close()
    os.chmod(path, 0o666)  # made shareable after the first start: the next opening follows
    turns = ProcessTurns(str(path))
    assert os.stat(f"{path}-turn").st_mode & 0o777 == 0o666
    turns.close()
    # no database file yet: the mode SQLite will give it (0644 less the umask), which a
    # umask of 002 does not widen to 0664
    new = tmp_path / "new.db"
    umask = os.umask(0o002)
    try:
        ProcessTurns(str(new)).close()
    finally:
        os.umask(umask)
    assert os.stat(f"{new}-turn").st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".turn-*"))  # made under another name, linked in place


def test_a_hard_link_put_in_place_of_the_turn_file_is_used_but_not_changed(
        tmp_path: Path) -> None:
    """Whoever may write a shared folder may put a link to another file of the owner's
    there: the owner's process locks it as the turn file but never sets its mode or
    group (the fix-up is for a plain file of one link)."""
    path = tmp_path / "shared.db"
    path.touch()
    os.chmod(path, 0o666)
    secret = tmp_path / "secret"
    secret.write_text("key")
    os.chmod(secret, 0o600)
    os.link(secret, f"{path}-turn")
    ProcessTurns(str(path)).close()
    assert os.stat(secret).st_mode & 0o777 == 0o600
    assert secret.read_text() == "key"


def test_without_hard_links_the_turn_file_is_made_in_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without hard links (vfat, some network mounts): the file is made
    where it belongs, with the database's mode, and turns work."""
    path = tmp_path / "fat.db"
    path.touch()
    os.chmod(path, 0o660)

    def no_links(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    turns = ProcessTurns(str(path))
    try:
        assert os.stat(f"{path}-turn").st_mode & 0o777 == 0o660
        assert turns._take(background=True)
    finally:
        turns.close()
    assert not list(tmp_path.glob(".turn-*"))


def test_a_file_system_that_refuses_modes_leaks_no_descriptor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fchmod refused (vfat, CIFS): the turn file is used as it is, and each opening
    holds one descriptor, closed with the turns."""
    path = tmp_path / "fat.db"
    path.touch()
    os.chmod(path, 0o660)
    ProcessTurns(str(path)).close()
    os.chmod(path, 0o666)  # the next opening would set the turn file's mode: refused

    def refused(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refused)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        ProcessTurns(str(path)).close()
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_takes_turns_on_a_file_root_made() -> None:
    """A forked child turned `nobody`, without root's groups (the interpreter may sit
    where nobody can run it), takes the turn on nobody's database (0660) that root
    opened first: root gives the turn file the database's owner and group, as SQLite
    does its `-wal`. The child's exit status is the answer: 0 when it held the lock. In
    a folder of /tmp: pytest's own folders are root's alone."""
    folder = Path(tempfile.mkdtemp(prefix="jm-turns-"))
    try:
        os.chmod(folder, 0o777)
        path = folder / "shared.db"
        path.touch()
        os.chmod(path, 0o660)
        os.chown(path, 65534, 65534)
        ProcessTurns(str(path)).close()
        made = os.stat(f"{path}-turn")
        assert (made.st_uid, made.st_gid, made.st_mode & 0o777) == (65534, 65534, 0o660)
        child = os.fork()
        if child == 0:  # pragma: no cover (the child's)
            code = 1
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                taker = ProcessTurns(str(path), patience=5)
                code = 0 if taker._take(background=True) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60
        while (done := os.waitpid(child, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(child, 9)
            os.waitpid(child, 0)
            pytest.fail("the child did not finish in 60 s")
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        shutil.rmtree(folder)
