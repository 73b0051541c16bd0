"""Lanes: how SQLite workers share the inbox (`journeyman worker --lane K/N`).

A lane is a hash of an inbox row's profile id modulo the number of lanes, so each
profile's events are read by one worker, in order, and two workers on one file work on
different profiles (engine/runtime/worker.py reads and handles a batch outside the
write lock, engine/store/sql/stamps.py checks it). SQLite computes it with `jm_lane`,
this function registered on each connection (db.py), so the inbox is filtered where
it is read. Two workers given the same lane stay correct (each batch is checked before
it is written) and only waste work. Events of a lane nobody serves (its worker stopped,
or lanes counted differently: 0/2 beside 1/3 leaves some profiles in no lane) are taken
over by another lane worker (engine/runtime/takeover.py): at once when no live
worker's lane holds them (each listening process names its lane in the wake-ups'
folder, engine/store/sql/wake_sockets.py), else once they have waited long.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from functools import lru_cache

from engine.ports import Lane


def lane_of(profile_id: str, count: int) -> int:
    """The lane (0 .. count - 1) of a profile id; SQLite's `jm_lane(profile_id, count)`."""
    if count <= 1:
        return 0
    return zlib.crc32(str(profile_id).encode("utf-8", "surrogatepass")) % count


def unserved(profile_id: str, served: str) -> int:
    """1 if no lane of `served` (`K/N` texts, space-separated) holds the profile, else 0:
    SQLite's `jm_unserved(profile_id, served)`, a lane worker's look at the lanes no live
    worker serves (engine/runtime/takeover.py)."""
    return int(all(lane_of(profile_id, count) != index for index, count in _lanes(served)))


def served_text(lanes: Iterable[Lane]) -> str:
    """`lanes` as `unserved` reads them."""
    return " ".join(str(lane) for lane in lanes)


@lru_cache(maxsize=64)
def _lanes(served: str) -> tuple[tuple[int, int], ...]:
    return tuple((lane.index, lane.count) for lane in map(Lane.parse, served.split()))
