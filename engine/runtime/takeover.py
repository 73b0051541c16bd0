"""A SQLite lane worker's takeover: the events and timers of the lanes nobody serves.

Workers on one SQLite file split the inbox in lanes (`journeyman worker --lane K/N`,
engine/store/sql/lanes.py). A lane worker with nothing of its own looks for work no
other worker will do: a lane whose worker was stopped, or profiles in no lane at all
(`--lane 0/2` beside `--lane 1/3`). Each process that listens for wake-ups names the
lane it serves in the wake-ups' folder and touches its file every second
(engine/store/sql/wake_sockets.py), so:

- the events and due timers of the profiles no live worker's lane holds are taken at
  once: a stopped worker's lane ~10 s after its last heartbeat (`STALE`), and from then
  on with no wait (until 2026-12-06 each of its events waited `LANE_TAKEOVER`);
- a lane whose worker lives is taken over only when its work has waited
  `LIVE_LANE_TAKEOVER` (a worker that lives but is stuck): a worker that is merely
  behind (a burst) keeps its lane; a takeover would read the same rows as it does, and
  the check before writing (engine/store/sql/stamps.py) would send one of the two
  batches round again, each time;
- where the lanes served are not known (this process does not listen: no abstract
  sockets, a folder that cannot be written; or a live listener does not say, an older
  journeyman), any lane's work that has waited `LANE_TAKEOVER` is taken, as before.

Taking over is always correct (every batch is checked before it is written); the rules
above only keep two workers from doing the same work.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from engine.core.model import ScheduleTimer
from engine.ports import InboxItem, Lane, SnapshotStore

LANE_TAKEOVER = timedelta(seconds=30)
LIVE_LANE_TAKEOVER = timedelta(minutes=5)


def events(snapshots: SnapshotStore, limit: int, now: datetime) -> list[InboxItem]:
    """Events of the lanes nobody serves (see the module doc), oldest first."""
    served = snapshots.lanes_served()
    if served is None:
        return snapshots.peek_inbox(limit, now, Lane(), waiting_since=now - LANE_TAKEOVER)
    return snapshots.peek_inbox(limit, now, Lane(), waiting_since=now - LIVE_LANE_TAKEOVER,
                                served=None if serve_every_profile(served) else served)


def timers(snapshots: SnapshotStore, limit: int, now: datetime) -> list[ScheduleTimer]:
    """Due timers of the lanes nobody serves (see the module doc)."""
    served = snapshots.lanes_served()
    if served is None:
        return snapshots.peek_timers(now - LANE_TAKEOVER, limit, Lane())
    if serve_every_profile(served):
        return snapshots.peek_timers(now - LIVE_LANE_TAKEOVER, limit, Lane())
    return snapshots.peek_timers(now, limit, Lane(), overdue_since=now - LIVE_LANE_TAKEOVER,
                                 served=served)


def serve_every_profile(lanes: Iterable[Lane]) -> bool:
    """Whether `lanes` hold every profile between them: one of them is the whole inbox
    (`0/1`), or every lane of some count is there."""
    indexes: dict[int, set[int]] = {}
    for lane in lanes:
        indexes.setdefault(lane.count, set()).add(lane.index)
    return any(len(found) == count for count, found in indexes.items())
