"""SQLite's writers take turns, API requests first: the threads of a process
(`FairWriteGate`), and the processes on one database file (`ProcessTurns`).

SQLite's own busy handler is no queue: a writer that finds the database locked sleeps
and polls (1, 2, 5, 10 ... 100 ms), while a worker that commits and begins its next
batch at once holds the lock again before the sleeper wakes. With an API process and a
worker process on one file, the API posted 3,000 events in 2.0 s instead of 0.9 s
(bench/journey_bench.py's workload), waiting out the worker's batches one poll at a
time. `FairWriteGate` (below) settles this between the threads of one process;
`ProcessTurns` settles it between processes, with two POSIX byte-range locks on a file
beside the database (`<database>-turn`):

- byte 0, the turn: held while a writer's transaction runs (`BEGIN IMMEDIATE` then
  finds SQLite's lock free). A waiter looks every half millisecond (every 5 ms after
  0.1 s), not after SQLite's growing sleeps, and gives up after the busy timeout (then
  SQLite decides, as before).
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

import contextlib
import errno
import fcntl
import logging
import math
import os
import stat
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from engine.work_kind import ForegroundWaits, is_background_work

log = logging.getLogger("journeyman.store")

TURN, CLAIM = 0, 1  # the bytes locked
SQLITE_NEW_FILE_MODE = 0o644  # the mode SQLite makes a new database file with, less the umask
BACKGROUND_PATIENCE = 0.05  # seconds background work lets waiting requests go first
# An API request of this process that wrote this many seconds ago or less makes the API
# busy (`FairWriteGate.requests_lately`): background work then holds the turn briefly.
REQUESTS_LATELY = 1.0
_POLL = 0.0005  # seconds between looks at a lock held elsewhere, at first ...
_POLL_SLOW = 0.005  # ... and after `_POLL_FOR` seconds of waiting (a long wait: less CPU)
_POLL_FOR = 0.1
_BUSY = {errno.EAGAIN, errno.EACCES}  # what a lock held elsewhere answers
# Linux's `struct flock` (64-bit off_t), for F_GETLK: type, whence, start, length, pid
_FLOCK = "hhqqi4x"


def _open_beside(path: str, database_path: str) -> int:
    """The lock file, opened for writing (a lock to write needs it), with the database
    file's mode and group, as SQLite gives its `-wal` and `-shm` files (and its owner
    too when root makes it): a process of another user that may write the database
    takes turns too. Made under another name with those already set, then linked into
    place, so no process ever finds it half made (one that could not open it would
    write without turns for its life: a warning says so). A new database's file does
    not exist yet: this one then gets the mode SQLite will give it (0644 less the
    umask), and its owner's next start sets it again from the database's."""
    try:
        return _open_made(path, database_path)
    except FileNotFoundError:
        pass
    try:
        fd, part = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".turn-")
    except OSError as exc:  # a read-only folder: said of the turn file, not of a temp name
        raise OSError(exc.errno, f"cannot make {path}: {exc.strerror}") from None
    try:
        with contextlib.suppress(OSError):  # a file system that keeps no modes
            _like_database(fd, database_path, _umask())
        os.link(part, path)
    except FileExistsError:  # another process made it meanwhile
        pass
    except OSError:  # no hard links here (vfat, some network mounts): made in place
        with contextlib.suppress(FileExistsError):
            os.close(_made_in_place(path, database_path))
    finally:
        os.close(fd)
        os.unlink(part)
    return _open_made(path, database_path)


def _made_in_place(path: str, database_path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with contextlib.suppress(OSError):  # a file system that keeps no modes
        _like_database(fd, database_path, _umask())
    return fd


def _open_made(path: str, database_path: str) -> int:
    """Open the lock file; its owner sets its mode and group again from the database's
    (a database made shareable since), only on a plain file of one link: never through
    a hard link planted in a shared folder, which would change another file's."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        held = os.fstat(fd)
        if (held.st_uid == os.geteuid() and held.st_nlink == 1
                and stat.S_ISREG(held.st_mode)):
            _like_database(fd, database_path)
    except OSError:  # a file system that keeps no modes: the file as it is
        pass
    return fd


def _umask() -> int:
    """This process's umask, read without setting it (`os.umask` sets it, for every
    thread at once): Linux's /proc says it; elsewhere the usual 022."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _like_database(fd: int, database_path: str, umask: int | None = None) -> None:
    """Give the file `fd` the database file's mode and group (its owner too, as root),
    where allowed; without a database file, with `umask` (if given) the mode SQLite
    gives a new database (`SQLITE_DEFAULT_FILE_PERMISSIONS`, 0644, less the umask)."""
    held = os.fstat(fd)
    try:
        database = os.stat(database_path)
    except OSError:
        if umask is not None:
            os.fchmod(fd, SQLITE_NEW_FILE_MODE & ~umask)
        return
    with contextlib.suppress(OSError):  # not a member of its group: the mode alone
        if (held.st_gid, held.st_uid) != (database.st_gid, database.st_uid):
            os.fchown(fd, database.st_uid if os.geteuid() == 0 else -1, database.st_gid)
    if held.st_mode & 0o777 != database.st_mode & 0o666:
        os.fchmod(fd, database.st_mode & 0o666)


class ProcessTurns:
    """Writers of all processes on one SQLite file, one at a time (see the module doc)."""

    def __init__(self, database_path: str, patience: float = 30.0) -> None:
        self.path = database_path + "-turn"
        self.patience = patience  # seconds a writer waits for the turn (the busy timeout)
        self._fd = _open_beside(self.path, database_path)
        self._mutex = threading.RLock()  # this process's holder
        self._depth = 0
        self._closing = False  # closed while a turn was held: closed when it ends
        self.users = 0  # stores sharing it (process_turns)

    @contextmanager
    def turn(self, *, background: bool) -> Iterator[None]:
        # Another thread of this process holds the turn: wait for it, but no longer than
        # the patience (two stores on one file, a thread writing to one inside the
        # other's transaction, could otherwise wait for each other for ever).
        if not self._mutex.acquire(timeout=self.patience):
            yield
            return
        try:
            if self._depth or self._fd < 0:  # nested in this thread's turn, or closed
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
                if held and self._fd >= 0:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, TURN)
                if self._closing:
                    self._close()
        finally:
            self._mutex.release()

    def _take(self, background: bool) -> bool:
        """Take the turn; False if it did not come within `patience` (the writer then
        goes on and meets SQLite's busy handler and its timeout, as without turns)."""
        if background:
            if self._lock(CLAIM, BACKGROUND_PATIENCE):  # no request waits, or waited enough
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, CLAIM)
            return self._lock(TURN, self.patience)
        if not self._lock(CLAIM, self.patience, shared=True):
            return self._lock(TURN, self.patience)
        try:
            return self._lock(TURN, self.patience)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, CLAIM)

    def _lock(self, byte: int, patience: float, *, shared: bool = False) -> bool:
        """Lock `byte` (exclusive, or shared), looking every `_POLL` seconds, then every
        `_POLL_SLOW`; False after `patience`. Not a blocking lock: that could not time
        out, and a writer stopped mid-transaction would hang its waiters instead of
        failing them as SQLite's busy timeout does. A file system without POSIX locks
        answers something else: no turns then (False at once)."""
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        started = time.monotonic()
        while True:
            try:
                fcntl.lockf(self._fd, mode, 1, byte)
                return True
            except OSError as exc:
                if exc.errno not in _BUSY:
                    log.warning("write turns on %s unavailable: %s", self.path, exc)
                    return False
                waited = time.monotonic() - started
                if waited >= patience:
                    return False
                time.sleep(_POLL if waited < _POLL_FOR else _POLL_SLOW)

    def requests_waiting(self) -> bool:
        """Whether an API request of another process waits for the turn (holds the
        requests' claim): background work holding the turn commits soon. F_GETLK
        answers for other processes' locks only, and takes none (Linux; elsewhere
        False: the requests then wait for the batch, as before)."""
        if self._fd < 0 or not sys.platform.startswith("linux"):
            return False
        probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, CLAIM, 1, 0)
        try:
            answer = fcntl.fcntl(self._fd, fcntl.F_GETLK, probe)
        except OSError:
            return False
        return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)

    def close(self) -> None:
        """Close the file; if a thread of this process holds the turn, when it ends
        (closing the file would let go of the lock under it)."""
        with self._mutex:
            if self._depth:
                self._closing = True
            else:
                self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _after_fork_in_child(self) -> None:
        """A forked child has none of its parent's POSIX locks, and no thread of the
        parent: its turns start over, its own."""
        self._mutex = threading.RLock()
        self._depth = 0


class _Registry:
    """The process's turns by file; the lock that guards it is made anew in a forked
    child (a thread of the parent may have held it at the fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_path: dict[str, ProcessTurns] = {}

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()
        for turns in self.by_path.values():
            turns._after_fork_in_child()


_REGISTRY = _Registry()
os.register_at_fork(after_in_child=_REGISTRY.after_fork_in_child)


def process_turns(database_path: str, patience: float = 30.0) -> ProcessTurns | None:
    """This process's turns on the file at `database_path`, shared by its stores (by
    its real path: a symlink to it shares them too); None if the lock file cannot be
    opened (a read-only folder: writers then meet SQLite's busy handler alone, as
    before)."""
    key = os.path.realpath(database_path)
    with _REGISTRY.lock:
        turns = _REGISTRY.by_path.get(key)
        if turns is None:
            try:
                turns = ProcessTurns(key, patience)
            except OSError as exc:
                log.warning("no write turns across processes for %s: %s", key, exc)
                return None
            _REGISTRY.by_path[key] = turns
        turns.users += 1
        return turns


def release_turns(turns: ProcessTurns) -> None:
    """A store is done with its turns: the last one closes the file."""
    with _REGISTRY.lock:
        turns.users -= 1
        if turns.users <= 0:
            _REGISTRY.by_path.pop(turns.path.removesuffix("-turn"), None)
            turns.close()


class FairWriteGate:
    """One writer at a time in this process; a foreground writer (an API request) goes
    before waiting background writers (the service's loops, `background_work`), but
    never more than `FOREGROUND_STREAK` times in a row while one waits, so the loops
    are not starved by a flood of requests. A thread that already holds the gate passes
    through (its nested writes join its transaction)."""

    FOREGROUND_STREAK = 8

    def __init__(self, processes: ProcessTurns | None = None, *,
                 lately: float = REQUESTS_LATELY) -> None:
        # Writers of other processes on the same file (ProcessTurns, above)
        self._processes = processes
        self._turn = threading.Condition()
        self._holder: int | None = None
        self._waiting = {True: 0, False: 0}  # background?: how many wait
        self._foreground_streak = 0  # foreground turns since the last background turn
        self._lately = lately
        self._foreground_at = -math.inf  # time.monotonic() of the last request's turn

    def close(self) -> None:
        if self._processes is not None:
            release_turns(self._processes)
            self._processes = None

    def requests_waiting(self) -> bool:
        """API requests of this process or another wait for their turn to write."""
        processes = self._processes
        return ForegroundWaits.any() or (processes is not None
                                         and processes.requests_waiting())

    def requests_lately(self) -> bool:
        """Asked by background work: API requests wait for the turn now, or one of this
        process took it within `lately` seconds (the API is busy: the next may come any
        moment). A request that comes during a background transaction waits for its
        commit: a timer chunk is cut when a request waits, but not its writes, nor an
        admission of sends, so background work keeps them short while this is true.
        Anyone else (a program driving the worker in its own thread, as the benches
        and the time-travel engine do) is no background work a request would wait for."""
        if not is_background_work():
            return False
        return (time.monotonic() - self._foreground_at < self._lately
                or self.requests_waiting())

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
            if not background:
                self._foreground_at = time.monotonic()
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
