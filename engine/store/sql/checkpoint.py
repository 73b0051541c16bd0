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

A PASSIVE checkpoint never starts the WAL again from the beginning; a writer does, when
it begins while every frame is copied and no reader holds one, which steady reads and
writes (a storm of timers beside the API) never leave it: the thread then restarts it
itself, in the store's write turn (`WalCheckpointer.restart`), once it holds
`WAL_RESTART_PAGES` frames.

The connections' own checkpoint (`wal_autocheckpoint`, engine/store/sql/db.py) stays
as the safety net, at `WAL_AUTOCHECKPOINT_PAGES`: a process without this thread (the
CLI's commands, tests), or a burst the thread did not keep up with, still checkpoints.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import quote

from engine.work_kind import background_work

log = logging.getLogger("journeyman.store")

WAL_AUTOCHECKPOINT_PAGES = 8_000  # ~32 MB of 4 KiB pages before a commit checkpoints
WAL_CHECKPOINT_EVERY = 0.2  # seconds between the thread's checkpoints
# A WAL of this many frames (4 KiB pages) is started again from the beginning (`restart`)
WAL_RESTART_PAGES = 2_048
RESTART_PATIENCE_MS = 10  # how long a RESTART waits for the readers of the WAL's frames
RESTART_BACKOFF = (1.0, 30.0)  # seconds before trying again after a busy RESTART: doubling
STOP_PATIENCE = 1.0  # seconds `stop` waits for the thread (it may wait for the write turn)


class WalCheckpointer:
    """Checkpoints one SQLite file's WAL every `every` seconds until stopped."""

    def __init__(self, path: str, every: float = WAL_CHECKPOINT_EVERY, *,
                 turn: Callable[[], AbstractContextManager[None]] | None = None) -> None:
        # `path`: the database file, absolute (the thread connects later, from any
        # working directory); `turn`: the store's write turn, held by a restart
        self.path, self.every, self.turn = path, every, turn
        self.checkpoints = 0  # those that ran, for tests and metrics
        self.restarts = 0  # the WAL started again from the beginning
        self._restarted_at: int | None = None  # the WAL's frames when it last restarted
        self._retry_at = 0.0  # time.monotonic() before which no restart is tried
        self._backoff = RESTART_BACKOFF[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journeyman-wal-checkpoint",
                                        daemon=True)

    def start(self) -> Callable[[], None]:
        self._thread.start()
        return self.stop

    def stop(self) -> None:
        """Stop the thread; waits at most `STOP_PATIENCE` (a restart may be waiting for
        the write turn, held by another process or by the caller itself: the daemon
        thread then ends after it, doing nothing more)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_PATIENCE)

    def restart(self, conn: sqlite3.Connection) -> bool:
        """Start the WAL again from the beginning (`PRAGMA wal_checkpoint(RESTART)`) in
        the store's write turn, as background work (waiting API requests go first);
        whether it did. A writer restarts the WAL by itself only when it begins while
        every frame is copied and no reader holds a frame, which under steady writes
        and reads never came: past `WAL_AUTOCHECKPOINT_PAGES` every commit of a storm of
        timers checkpointed too (copy and sync: 10-25 ms of the turn held while API
        requests waited for it), and with that raised to see it, 20,000 timers grew the
        WAL to 66,000 frames (258 MB). In the turn
        no writer of ours adds frames; RESTART copies the last ones, syncs (~12 ms here)
        and waits up to `RESTART_PATIENCE_MS` for readers to leave the frames (else it
        is busy: a reader held them, a long one maybe, so the next try waits
        `RESTART_BACKOFF`, doubling, rather than take the turn every look)."""
        assert self.turn is not None
        with background_work(), self.turn():
            if self._stop.is_set():  # stopped while it waited for the turn
                return False
            [(busy, frames, _)] = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        if busy:
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(RESTART_BACKOFF[1], self._backoff * 2)
            return False
        self._restarted_at, self._backoff = frames, RESTART_BACKOFF[0]
        self.restarts += 1
        return True

    def _restart_due(self, frames: int, copied: int) -> bool:
        """A long WAL, not the one last restarted (until a writer writes, the WAL keeps
        its frames: restarting it again would change nothing), and no busy restart's
        back-off running."""
        return (self.turn is not None and frames >= WAL_RESTART_PAGES
                and not (frames == copied == self._restarted_at)
                and time.monotonic() >= self._retry_at)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.every):
                try:
                    if conn is None:  # mode=rw: a file gone is an error, not a new file
                        conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True,
                                               isolation_level=None, check_same_thread=False)
                        conn.execute(f"PRAGMA busy_timeout={RESTART_PATIENCE_MS}")
                    [(_, frames, copied)] = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                    if self._restart_due(frames, copied):
                        self.restart(conn)
                except sqlite3.Error:  # a full disk, a file gone: the writers' own net holds
                    log.warning("WAL checkpoint of %s failed; writers checkpoint meanwhile",
                                self.path, exc_info=True)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
