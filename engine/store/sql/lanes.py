"""Lanes: how SQLite workers share the inbox (`journeyman worker --lane K/N`).

A lane is a hash of an inbox row's profile id modulo the number of lanes, so each
profile's events are read by one worker, in order, and two workers on one file work on
different profiles (engine/runtime/worker.py reads and handles a batch outside the
write lock, engine/store/sql/stamps.py checks it). SQLite computes it with `jm_lane`,
this function registered on each connection (db.py), so the inbox is filtered where
it is read. Two workers given the same lane stay correct (each batch is checked before
it is written) and only waste work. Events of a lane nobody serves (its worker stopped,
or lanes counted differently: 0/2 beside 1/3 leaves some profiles in no lane) are taken
over by another lane worker once they have waited `LANE_TAKEOVER` (engine/runtime/
worker.py).
"""

from __future__ import annotations

import zlib


def lane_of(profile_id: str, count: int) -> int:
    """The lane (0 .. count - 1) of a profile id; SQLite's `jm_lane(profile_id, count)`."""
    if count <= 1:
        return 0
    return zlib.crc32(str(profile_id).encode("utf-8", "surrogatepass")) % count
