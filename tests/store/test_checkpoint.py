"""SQLite's WAL is checkpointed by a thread of the long-running process, not inside the
worker's commits (engine/store/sql/checkpoint.py).

What a checkpoint does is seen from outside: the database file alone (copied without
its `-wal`) holds what was committed only once the WAL has been copied back into it."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.store import SqlStore
from engine.store.sql.checkpoint import RESTART_PATIENCE_MS, WAL_AUTOCHECKPOINT_PAGES
from tests.store.conftest import make_sqlite_store


def _accept(store: SqlStore, n: int, tag: str) -> None:
    store.accept_events([{"type": "track", "event": "Signed Up", "userId": f"u{i}",
                          "messageId": f"{tag}-{i}", "timestamp": "2026-03-02T09:00:00Z"}
                         for i in range(n)], "test")


def _inbox_in_main_file(db: Path, tmp_path: Path) -> int:
    """How many inbox rows the database file holds without its WAL."""
    copy = tmp_path / "main-only.db"
    shutil.copyfile(db, copy)
    with sqlite3.connect(copy) as conn:
        return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])


def test_commits_reach_the_database_file_through_the_thread(
        sqlite_template: Path, tmp_path: Path) -> None:
    store = make_sqlite_store(sqlite_template, tmp_path)
    db = Path(store.sql_engine.url.database or "")
    try:
        with store.sql_engine.connect() as conn:  # the writers' own net is far off
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == WAL_AUTOCHECKPOINT_PAGES
        _accept(store, 50, "before")
        assert _inbox_in_main_file(db, tmp_path) == 0  # still only in the WAL
        stop = store.checkpoint_in_background()
        try:
            _accept(store, 50, "during")
            deadline = time.monotonic() + 10
            while _inbox_in_main_file(db, tmp_path) < 100 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _inbox_in_main_file(db, tmp_path) == 100
        finally:
            stop()
        _accept(store, 50, "after")  # stopped: nothing copies it any more
        time.sleep(0.5)
        assert _inbox_in_main_file(db, tmp_path) == 100
        assert store.inbox_counts() == {"pending": 150}
    finally:
        store.close()


def test_nothing_to_checkpoint_elsewhere(tmp_path: Path) -> None:
    store = SqlStore("sqlite:///:memory:", create=True)
    try:
        store.checkpoint_in_background()()  # in memory: no WAL, no thread
    finally:
        store.close()


def test_forget_truncates_the_wal_while_the_thread_checkpoints(
        sqlite_template: Path, tmp_path: Path) -> None:
    """`profiles forget` truncates the WAL (no byte of the person left in it) while a
    running service checkpoints it: SQLite answers busy at once during the thread's
    checkpoint, and forget tries again (engine/store/sql/privacy.py)."""
    from engine.store.sql.checkpoint import WalCheckpointer

    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        busy = WalCheckpointer(str(store.sql_engine.url.database), every=0.0005)
        stop = busy.start()
        try:
            for round_ in range(5):
                _accept(store, 200, f"r{round_}")  # pages for the thread to copy
                assert store.forget_person("u1")["sqlite_scrubbed"] == 1
        finally:
            stop()
        assert busy.checkpoints > 10
    finally:
        store.close()


def test_no_thread_for_a_url_with_options_and_no_file_made(tmp_path: Path) -> None:
    """`?uri=true&cache=...` names the file in SQLite's own way: no thread (it would
    have opened `data.db` beside the real file). The thread never creates a file."""
    import os

    from engine.store.sql.checkpoint import WalCheckpointer

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        store = SqlStore("sqlite:///data.db?cache=private&uri=true", create=True)
        try:
            stop = store.checkpoint_in_background()
            assert "journeyman-wal-checkpoint" not in {t.name for t in threading.enumerate()}
            stop()
        finally:
            store.close()
        assert not (tmp_path / "data.db").exists()
    finally:
        os.chdir(here)
    thread = WalCheckpointer(str(tmp_path / "missing.db"), every=0.01)
    stop = thread.start()
    time.sleep(0.1)
    stop()
    assert not (tmp_path / "missing.db").exists()
    assert thread.checkpoints == 0


def _frames(conn: sqlite3.Connection) -> int:
    """The frames in the WAL now (a PASSIVE checkpoint's answer: busy, log, copied)."""
    return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_a_wal_that_readers_keep_from_restarting_is_restarted_in_the_write_turn(
        tmp_path: Path) -> None:
    """Under steady reads and writes a writer never finds the WAL copied and free of
    readers, so it never starts it again: it grows (a storm of timers: 66,000 frames),
    and past the connections' autocheckpoint every commit checkpoints. The thread's
    restart, in the store's write turn, starts it again: the next commit writes from
    its beginning, so the WAL holds only that commit's frames."""
    from engine.store.sql.checkpoint import WalCheckpointer

    db = tmp_path / "wal.db"
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x BLOB)")
    reader = sqlite3.connect(db, isolation_level=None)
    # the thread's connection waits RESTART_PATIENCE_MS for readers, not sqlite3's 5 s
    checkpoints = sqlite3.connect(db, isolation_level=None, timeout=RESTART_PATIENCE_MS / 1000)
    blob = b"x" * 3000
    writer.executemany("INSERT INTO t VALUES (?)", [(blob,)] * 100)
    grown = []
    for _ in range(5):
        reader.execute("BEGIN")  # a reader on the WAL's frames whenever a write begins
        reader.execute("SELECT count(*) FROM t").fetchone()
        grown.append(_frames(checkpoints))  # every frame copied, as the thread's PASSIVE
        writer.executemany("INSERT INTO t VALUES (?)", [(blob,)] * 100)
        reader.execute("COMMIT")
    assert grown == sorted(set(grown)), grown  # never started again: it only grew

    turns: list[str] = []

    @contextmanager
    def turn() -> Iterator[None]:
        turns.append("held")
        yield

    checkpointer = WalCheckpointer(str(db), turn=turn)
    reader.execute("BEGIN")  # a reader on the WAL's frames: RESTART cannot, and says so
    reader.execute("SELECT count(*) FROM t").fetchone()
    writer.execute("INSERT INTO t VALUES (?)", (blob,))
    assert not checkpointer.restart(checkpoints)
    reader.execute("COMMIT")
    assert checkpointer.restart(checkpoints)
    assert (turns, checkpointer.restarts) == (["held", "held"], 1)
    writer.execute("INSERT INTO t VALUES (?)", (blob,))
    assert _frames(checkpoints) <= 3  # written from the WAL's beginning
    for conn in (writer, reader, checkpoints):
        conn.close()


def test_the_thread_restarts_a_long_wal_in_the_stores_write_turn(
        sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's thread (`checkpoint_in_background`), a reader holding the WAL's frames
    around each write as the service's loops do: past WAL_RESTART_PAGES the thread
    restarts the WAL, as background work in the store's turn; with nothing written after, it does not restart the same WAL again; stopped while
    another thread holds the turn, `stop` returns."""
    from engine.store.sql import checkpoint
    from engine.work_kind import is_background_work

    monkeypatch.setattr(checkpoint, "WAL_RESTART_PAGES", 40)
    store = make_sqlite_store(sqlite_template, tmp_path)
    db = Path(store.sql_engine.url.database or "")
    turns: list[bool] = []
    real_turn = store._writer_turn

    @contextmanager
    def turn() -> Iterator[None]:
        if threading.current_thread().name == "journeyman-wal-checkpoint":
            turns.append(is_background_work())
        with real_turn():
            yield

    monkeypatch.setattr(store, "_writer_turn", turn)
    stop = store.checkpoint_in_background()
    checkpointer = store.checkpointer
    assert checkpointer is not None
    assert checkpointer.turn is turn
    checkpointer.every = 0.01
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        for n in range(40):
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM inbox").fetchone()
            _accept(store, 20, f"r{n}")
            reader.execute("COMMIT")
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while not checkpointer.restarts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkpointer.restarts, turns
        assert turns, turns
        assert all(turns), turns  # background work, in the store's turn
        done = checkpointer.restarts
        time.sleep(0.3)  # nothing written: the same WAL is not restarted again
        assert checkpointer.restarts <= done + 1
        with store.transaction():  # the turn held by this thread: stop does not hang
            started = time.monotonic()
            stop()
            assert time.monotonic() - started < checkpoint.STOP_PATIENCE + 1
    finally:
        reader.close()
        store.close()
