"""A SQLite lane worker's takeover: the events and timers of the lanes nobody serves.

Workers on one SQLite file split the inbox in lanes (`journeyman worker --lane K/N`,
engine/store/sql/lanes.py). A lane worker with nothing of its own looks for work no
other worker will do: a lane whose worker was stopped, or profiles in no lane at all
(`--lane 0/2` beside `--lane 1/3`). Each process that listens for wake-ups names the
lane it serves in the wake-ups' folder and touches its file every second
(engine/store/sql/wake_sockets.py), so:

- the events and due timers of the profiles no live worker's lane holds are taken with
  no wait, whenever the taker's own lane is empty: a SIGKILLed worker's lane from ~10 s
  after its last heartbeat (`STALE`), a stopped one's (its file removed) at once (until
  2026-12-06 each of its events waited `LANE_TAKEOVER`). Its events come with the
  taker's next look (the taker is woken for every event), its timers on the taker's
  safety tick (`--tick`, 0.5 s: the timer loop plans the taker's own lane's timers);
- a lane whose worker lives is taken over only when its work has waited
  `LIVE_LANE_TAKEOVER` (a worker that lives but is stuck): a worker that is merely
  behind (a burst) keeps its lane; a takeover would read the same rows as it does, and
  the check before writing (engine/store/sql/stamps.py) would send one of the two
  batches round again, each time;
- where the lanes served are not known (this process does not listen: no abstract
  sockets, a folder it cannot write; or a file there does not name a lane: a
  journeyman before 2026-12-06, or no plain file), any lane's work that has waited
  `LANE_TAKEOVER` is taken, as before. A worker that cannot write the folder has no
  file there, so the others take its lane as nobody's: the folder is made with the
  permissions of the database's folder, which every process on the file writes already.

The events taken for having waited are those before the first event (by id) queued
after then: two accepts read the clock before they take the write lock, so a profile's
earlier event may carry the later time (taken by time alone, it came second).

Taking over is always correct (every batch is checked before it is written); the rules
above only keep two workers from doing the same work.
"""

from __future__ import annotations

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
                                served=served)


def timers(snapshots: SnapshotStore, limit: int, now: datetime) -> list[ScheduleTimer]:
    """Due timers of the lanes nobody serves (see the module doc)."""
    served = snapshots.lanes_served()
    if served is None:
        return snapshots.peek_timers(now - LANE_TAKEOVER, limit, Lane())
    return snapshots.peek_timers(now, limit, Lane(), overdue_since=now - LIVE_LANE_TAKEOVER,
                                 served=served)
