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

import math
import zlib
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, literal_column, select

from engine.jsonfast import dumps
from engine.ports import Lane


def lane_of(profile_id: str, count: int) -> int:
    """The lane (0 .. count - 1) of a profile id; SQLite's `jm_lane(profile_id, count)`."""
    if count <= 1:
        return 0
    return zlib.crc32(str(profile_id).encode("utf-8", "surrogatepass")) % count


RESIDUES_MAX = 4096  # the largest modulus `unserved_residues` writes out


def unserved_residues(served: Sequence[Lane]) -> tuple[int, list[int]] | None:
    """The profiles no lane of `served` holds, as `jm_lane(profile_id, modulus)` in
    `residues`: every lane count divides the modulus, and a lane is one hash modulo its
    count, so the hash modulo the modulus tells every lane at once (`0/2` beside `1/3`:
    modulus 6, residues 1 and 5). One call of `jm_lane` per row, as a lane's own look
    (`unserved` per row cost 5 times as much). None when the modulus would be over
    `RESIDUES_MAX` (many lane counts): then `unserved`."""
    return _residues(tuple(sorted(set(served), key=lambda lane: (lane.count, lane.index))))


@lru_cache(maxsize=64)
def _residues(served: tuple[Lane, ...]) -> tuple[int, list[int]] | None:
    """`unserved_residues` of lanes in one order, kept (a look per empty lane)."""
    modulus = math.lcm(*(lane.count for lane in served)) if served else 1
    if modulus > RESIDUES_MAX:
        return None
    return modulus, [r for r in range(modulus)
                     if all(r % lane.count != lane.index for lane in served)]


def unserved(profile_id: str, served: str) -> int:
    """1 if no lane of `served` (`K/N` texts, space-separated) holds the profile, else 0:
    SQLite's `jm_unserved(profile_id, served)`, a lane worker's look at the lanes no live
    worker serves (engine/runtime/takeover.py)."""
    return int(all(lane_of(profile_id, count) != index for index, count in _lanes(served)))


def outside_lanes(profile_id: Any, *, by_lanes: bool = False) -> Any:
    """SQL: the profile is in no lane of the `:served` lanes (`unserved_parameters`): its
    `jm_lane` modulo `:modulus` one of `:residues`, or, `by_lanes` (`:served`
    the lanes' text), `jm_unserved`."""
    if by_lanes:
        return func.jm_unserved(profile_id, bindparam("served")) == 1
    residues: Any = select(literal_column("value")).select_from(
        func.json_each(bindparam("residues")))
    return func.jm_lane(profile_id, bindparam("modulus")).in_(residues)


def takeover_statements(query: Any, waited: Any, profile_id: Any) -> dict[str, Any]:
    """A takeover's statements, by the name `unserved_parameters` gives: `query` of the
    rows that `waited`, and of those or the profiles outside the served lanes."""
    return {"": query.where(waited),
            "_or_unserved": query.where(waited | outside_lanes(profile_id)),
            "_or_unserved_any": query.where(waited | outside_lanes(profile_id, by_lanes=True))}


def unserved_parameters(served: Sequence[Lane] | None) -> tuple[str, dict[str, Any]]:
    """Which statement of a takeover's and its parameters: `""` when no profile is
    outside `served`'s lanes (or `served` is None: not known), `"_or_unserved"` with
    `:modulus` and `:residues`, or `"_or_unserved_any"` with `:served`."""
    if served is None:
        return "", {}
    found = unserved_residues(served)
    if found is None:
        return "_or_unserved_any", {"served": " ".join(map(str, served))}
    modulus, residues = found
    if not residues:
        return "", {}
    return "_or_unserved", {"modulus": modulus, "residues": dumps(residues)}


@lru_cache(maxsize=64)
def _lanes(served: str) -> tuple[tuple[int, int], ...]:
    return tuple((lane.index, lane.count) for lane in map(Lane.parse, served.split()))
