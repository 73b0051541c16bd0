"""Stamps of the profiles' state: how SQLite's optimistic batches know that nobody wrote
what they read (migration 0018).

Why: SQLite has one writer at a time. A worker that handled a batch inside its write
transaction held the lock for the whole batch, so the API's ingest waited for it and a
second worker on the file could only take turns with the first (issue 11's eighth
session: the worker's CPU was the wall clock while the second core idled). So a SQLite
worker reads and handles a batch in a read transaction (`snapshot()`), without the
lock, then takes the lock only to check and write it (engine/runtime/worker.py).

The check: every key of state a unit reads (a profile, an identifier) hashes to one of
2**20 slots, each with a stamp (a counter). In the snapshot the unit's reads note their
keys (`Snapshot.stamps()` reads their stamps there, in the same read transaction as the
state, so they agree); in the write transaction `unchanged()` reads them again. Every
write of a profile's state adds one to its slots' stamps in the same transaction:
`write_changes`/`write_prepared` for the keys it writes, and any other write
transaction on SQLite to slot 0, which every check reads, unless it says it changes no
profile's state (`_write(stamped=True)`: the ingest, the outbox, the worker's own
transactions). So a new kind of write is safe by default: it only costs the batches
that overlap it a second pass, inside the lock as before. Two keys sharing a slot cost
the same, never a missed change.

PostgreSQL writes no stamps: its workers lock each profile for the whole transaction
(advisory locks) and handle it inside.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection

from engine.ports import Change, Lane, MergeStep, Snapshot, WriteRun
from engine.store.errors import StoreError
from engine.store.sql.db import (
    ANY_STATE,
    INSERT_CHUNK,
    STAMP,
    SqlBase,
    _chunks,
    _driver,
    _marks,
    _plain_file,
)

SLOTS = 1 << 20


def profile_key(profile_id: str) -> str:
    return "p\x00" + profile_id


def identity_key(kind: str, value: str) -> str:
    return f"i\x00{kind}\x00{value}"


def slot_of(key: str) -> int:
    """1 .. SLOTS: the slot of a key of state (slot 0 is ANY_STATE)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % SLOTS + 1


def written_keys(changes: Iterable[Change]) -> set[str]:
    """The keys of state a unit's changes write (a merge writes both its profiles)."""
    keys: set[str] = set()
    for change in changes:
        if isinstance(change, MergeStep):
            keys.update((profile_key(change.into), profile_key(change.from_)))
            continue
        assert isinstance(change, WriteRun)
        run = change
        profiles = {*run.profiles, *(e.profile_id for e in run.enrollments.values()),
                    *(pid for pid, _ in run.entries), *(pid for pid, _ in run.segments),
                    *(t.profile_id for t in run.timers_added.values()),
                    *run.identities.values(), *(s.profile_id for s in run.sends),
                    *(pid for pid, _, _ in run.withdrawn)}
        keys.update(profile_key(p) for p in profiles)
        keys.update(identity_key(kind, value) for kind, value in run.identities)
    return keys


class StampQueries(SqlBase):
    # Set by this store's first snapshot: an optimistic worker of this process reads the
    # stamps (its loops' batches check each other's writes), so they are kept per profile
    _snapshots_taken = False

    @property
    def snapshots_work(self) -> bool:
        """SQLite on a plain file (WAL: a read transaction beside the writer). Not in
        memory, where the threads share one connection, and not on PostgreSQL."""
        return not self._pg and _plain_file(self._db.url) is not None

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """SQLite: the store's reads in the block (this thread) join one read transaction
        and note the keys they read; a write in the block is an error. Call `stamps()`
        before the block ends."""
        if self._pg:
            raise StoreError("snapshots are SQLite's (PostgreSQL workers lock profiles)")
        if self.in_transaction:
            raise StoreError("a snapshot cannot join a transaction")
        snapshot = Snapshot()
        self._snapshots_taken = True
        with self._read() as conn:
            self._local.conn = conn
            self._local.snapshot = snapshot
            try:
                yield snapshot
            finally:
                self._local.conn = None
                self._local.snapshot = None

    def stamps(self, snapshot: Snapshot) -> None:
        """Read the stamps of what the snapshot read (inside its block)."""
        assert getattr(self._local, "snapshot", None) is snapshot, "inside the snapshot"
        snapshot.read = self._read_stamps(self._local.conn, _slots(snapshot.keys))

    def unchanged(self, snapshot: Snapshot) -> bool:
        """Inside the write transaction: whether nobody wrote what the snapshot read."""
        assert snapshot.read is not None, "stamps() first"
        with self._write() as conn:
            return self._read_stamps(conn, snapshot.read) == snapshot.read

    def _noted(self, keys: Iterable[str]) -> None:
        """The keys a unit's read read (kept only inside a snapshot)."""
        snapshot: Snapshot | None = getattr(self._local, "snapshot", None)
        if snapshot is not None:
            snapshot.keys.update(keys)

    def _stamp_keys(self, conn: Connection, keys: Iterable[str]) -> None:
        """SQLite: one more on the stamps of these keys of state (in `conn`'s transaction):
        a unit's (`written_keys`), a merge's identifiers."""
        self._stamp_slots(conn, self._written_slots(keys))

    def _written_slots(self, keys: Iterable[str]) -> list[int]:
        """The slots whose stamps a write of these keys bumps, in order (SQLite; none on
        PostgreSQL): found before the write turn by `prepare_changes`. Slot 0 alone
        while nobody reads them: this process takes no snapshots and is the only one
        listening on the file (`serve` by itself). Every check reads slot 0, so that is
        always correct; an optimistic worker that comes later has its batches that
        overlap these writes done again inside the write lock until it is seen (within
        a second of listening). What it saves is a page of the stamps table per profile
        written (random by design): a third of the pages a storm of timers writes
        (docs/benchmarks.md)."""
        slots = set() if self._pg else {slot_of(k) for k in keys}
        if slots and self._writing_alone():
            return [ANY_STATE]
        return sorted(slots)

    def lanes_served(self) -> tuple[Lane, ...] | None:
        """The lanes live workers on this SQLite file serve, this process's among them
        (None when not known: engine/store/sql/wake_sockets.py)."""
        return None if self._wake_sockets is None else self._wake_sockets.lanes_served()

    def _writing_alone(self) -> bool:
        """No snapshot of this store, and this process listens on the file and no other
        live listener does (engine/store/sql/wake_sockets.py). A worker that cannot
        listen is not seen: its batches that overlap any of these writes are then done
        again inside the write lock."""
        return (not self._snapshots_taken and self._wake_sockets is not None
                and self._wake_sockets.alone())

    @staticmethod
    def _stamp_slots(conn: Connection, slots: Sequence[int]) -> None:
        if slots:
            _driver(conn).executemany(STAMP, [(s,) for s in slots])

    @staticmethod
    def _read_stamps(conn: Connection, slots: Collection[int]) -> dict[int, int]:
        found = dict.fromkeys(slots, 0)
        for chunk in _chunks(sorted(slots), INSERT_CHUNK):
            found.update(_driver(conn).execute(
                f"SELECT slot, stamp FROM state_stamps WHERE slot IN ({_marks(len(chunk))})",
                chunk).fetchall())
        return found


def _slots(keys: Iterable[str]) -> set[int]:
    return {ANY_STATE, *(slot_of(k) for k in keys)}
