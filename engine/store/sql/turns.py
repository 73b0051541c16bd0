"""SQLite's writers take turns, API requests first: the threads of a process
(`FairWriteGate`), and the processes on one database file (`ProcessTurns`).

SQLite's own busy handler is no queue: a writer that finds the database locked sleeps
and polls (1, 2, 5, 10 ... 100 ms), while a worker that commits and begins its next
batch at once holds the lock again before the sleeper wakes. With an API process and a
worker process on one file, the API posted 3,000 events in 2.0 s instead of 0.9 s
(bench/journey_bench.py's workload), waiting out the worker's batches one poll at a
time. `FairWriteGate` (engine/store/sql/db.py) settles this between the threads of one
process; this settles it between processes, with two POSIX byte-range locks on a file
beside the database (`<database>-turn`):

- byte 0, the turn: held while a writer's transaction runs (`BEGIN IMMEDIATE` then
  finds SQLite's lock free). A waiter looks every half millisecond, not after SQLite's
  growing sleeps, and gives up after the busy timeout (then SQLite decides, as before).
- byte 1, the requests' claim: an API request holds it shared while it waits for the
  turn. Background work (the service's loops) about to take the turn first looks
  whether anyone holds the claim, and if so lets them go first (for at most
  `BACKGROUND_PATIENCE` seconds, so a flood of requests cannot starve the loops).

This is fairness only: SQLite's own lock still guards the data, so a writer that does
not take turns (another program, an older journeyman) is merely not queued.

POSIX locks belong to a process, not to a thread or a file handle, and closing any
handle of the file lets go of all of them. So a process has one `ProcessTurns` per
database file (`process_turns`), shared by its stores, and one thread holds it at a
time (a re-entrant lock: a thread's nested writes pass). A process that dies lets go of
both locks with its last breath (the kernel drops them): a SIGKILL never leaves the
turn held.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from engine.ports import ForegroundWaits, is_background_work

log = logging.getLogger("journeyman.store")

TURN, CLAIM = 0, 1  # the bytes locked
BACKGROUND_PATIENCE = 0.05  # seconds background work lets waiting requests go first
_POLL = 0.0005  # seconds between looks at a lock held elsewhere


class ProcessTurns:
    """Writers of all processes on one SQLite file, one at a time (see the module doc)."""

    def __init__(self, database_path: str, patience: float = 30.0) -> None:
        self.path = database_path + "-turn"
        self.patience = patience  # seconds a writer waits for the turn (the busy timeout)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        self._mutex = threading.RLock()  # this process's holder
        self._depth = 0
        self.users = 0  # stores sharing it (process_turns)

    @contextmanager
    def turn(self, *, background: bool) -> Iterator[None]:
        with self._mutex:
            if self._depth:  # a nested write of the thread holding the turn
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            held = self._take(background)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                if held:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, TURN)

    def _take(self, background: bool) -> bool:
        """Take the turn; False if it did not come within `patience` (the writer then
        goes on and meets SQLite's busy handler and its timeout, as without turns)."""
        if background:
            self._wait_while(CLAIM, BACKGROUND_PATIENCE)  # requests waiting go first
            return self._lock(TURN, self.patience)
        fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, CLAIM)
        try:
            return self._lock(TURN, self.patience)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, CLAIM)

    def _lock(self, byte: int, patience: float) -> bool:
        """Lock `byte` exclusively, looking every `_POLL` seconds (a blocking lock could
        not time out: a writer stopped mid-transaction would hang its waiters instead of
        failing them after the busy timeout, as SQLite does)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(_POLL)

    def _wait_while(self, byte: int, patience: float) -> None:
        """Wait while another process holds `byte` (up to `patience` seconds)."""
        if self._lock(byte, patience):
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, byte)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_SHARED: dict[str, ProcessTurns] = {}
_SHARED_LOCK = threading.Lock()


def process_turns(database_path: str, patience: float = 30.0) -> ProcessTurns | None:
    """This process's turns on the file at `database_path` (absolute), shared by its
    stores; None if the lock file cannot be opened (a read-only folder: writers then
    meet SQLite's busy handler alone, as before)."""
    with _SHARED_LOCK:
        turns = _SHARED.get(database_path)
        if turns is None:
            try:
                turns = ProcessTurns(database_path, patience)
            except OSError as exc:
                log.warning("no write turns across processes for %s: %s", database_path, exc)
                return None
            _SHARED[database_path] = turns
        turns.users += 1
        return turns


def release_turns(turns: ProcessTurns) -> None:
    """A store is done with its turns: the last one closes the file."""
    with _SHARED_LOCK:
        turns.users -= 1
        if turns.users <= 0:
            _SHARED.pop(turns.path.removesuffix("-turn"), None)
            turns.close()


class FairWriteGate:
    """One writer at a time in this process; a foreground writer (an API request) goes
    before waiting background writers (the service's loops, `background_work`), but
    never more than `FOREGROUND_STREAK` times in a row while one waits, so the loops
    are not starved by a flood of requests. A thread that already holds the gate passes
    through (its nested writes join its transaction)."""

    FOREGROUND_STREAK = 8

    def __init__(self, processes: ProcessTurns | None = None) -> None:
        # Writers of other processes on the same file (engine/store/sql/turns.py)
        self._processes = processes
        self._turn = threading.Condition()
        self._holder: int | None = None
        self._waiting = {True: 0, False: 0}  # background?: how many wait
        self._foreground_streak = 0  # foreground turns since the last background turn

    def close(self) -> None:
        if self._processes is not None:
            release_turns(self._processes)
            self._processes = None

    def _may_go(self, background: bool) -> bool:
        if self._holder is not None:
            return False
        background_due = (self._waiting[True]
                          and self._foreground_streak >= self.FOREGROUND_STREAK)
        if background:  # after the requests, unless it has waited its turn long enough
            return background_due or not self._waiting[False]
        return not background_due

    @contextmanager
    def held(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._holder == me:
            yield
            return
        background = is_background_work()
        with self._turn:
            self._waiting[background] += 1
            if not background:
                ForegroundWaits.add(1)
            try:
                while not self._may_go(background):
                    self._turn.wait()
            finally:
                self._waiting[background] -= 1
                if not background:
                    ForegroundWaits.add(-1)
            self._foreground_streak = 0 if background else self._foreground_streak + 1
            self._holder = me
        try:
            if self._processes is None:
                yield
            else:
                with self._processes.turn(background=background):
                    yield
        finally:
            with self._turn:
                self._holder = None
                self._turn.notify_all()
