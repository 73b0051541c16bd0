"""SQLite's WAL is checkpointed by a thread of the long-running process, not inside the
worker's commits (engine/store/sql/checkpoint.py).

What a checkpoint does is seen from outside: the database file alone (copied without
its `-wal`) holds what was committed only once the WAL has been copied back into it."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

from engine.store import SqlStore
from engine.store.sql.checkpoint import WAL_AUTOCHECKPOINT_PAGES
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
