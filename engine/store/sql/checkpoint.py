"""SQLite: the WAL checkpointed from a thread of its own, not by the committing writer.

In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies them back
into the database file and syncs it. By default SQLite checkpoints inside whichever
commit takes the WAL past 1,000 pages, so every few batches one of the worker's
commits also copies and syncs a few megabytes while it holds the write lock:
bench/journey_bench.py measured 8-9% of the worker's time in those commits (10,000
events, 2026-12-02). A long-running process (`serve`, `worker`) instead runs
`PRAGMA wal_checkpoint(PASSIVE)` every `every` seconds on a connection of its own, in
a thread that holds no lock while SQLite works (the sqlite3 module lets go of the GIL
around it). PASSIVE never waits for readers or writers: it copies what it can, and the
writer that next finds the WAL wholly copied starts it again from the beginning, so
the file stays small.

The connections' own checkpoint (`wal_autocheckpoint`, engine/store/sql/db.py) stays
as the safety net, at `WAL_AUTOCHECKPOINT_PAGES`: a process without this thread (the
CLI's commands, tests), or a burst the thread did not keep up with, still checkpoints.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from urllib.parse import quote

log = logging.getLogger("journeyman.store")

WAL_AUTOCHECKPOINT_PAGES = 8_000  # ~32 MB of 4 KiB pages before a commit checkpoints
WAL_CHECKPOINT_EVERY = 0.2  # seconds between the thread's checkpoints


class WalCheckpointer:
    """Checkpoints one SQLite file's WAL every `every` seconds until stopped."""

    def __init__(self, path: str, every: float = WAL_CHECKPOINT_EVERY) -> None:
        # `path`: the database file, absolute (the thread connects later, from any
        # working directory)
        self.path, self.every = path, every
        self.checkpoints = 0  # those that ran, for tests and metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journeyman-wal-checkpoint",
                                        daemon=True)

    def start(self) -> Callable[[], None]:
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every):
                try:
                    if conn is None:  # mode=rw: a file gone is an error, not a new file
                        conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True,
                                               isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:  # a full disk, a file gone: the writers' own net holds
                    log.warning("WAL checkpoint of %s failed; writers checkpoint meanwhile",
                                self.path, exc_info=True)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
