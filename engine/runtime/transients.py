"""Transient database errors in a row, per kind of work (events, timers): how long the
worker waits before its next try, and when a batch is done in parts instead.

A transient error (locked, deadlock, connection lost: `Store.is_transient`) rolls a
batch back and the same work comes round again. Once, that is right. In a row, it is
either the database being away (down, restarting, full), or an error the driver calls
transient that comes with one profile's data every time (a trigger of the operator's,
an error code misfiled by a driver). Tried again every few milliseconds, the
first fills the log and keeps a core busy asking; the second stalls every profile of
the batch behind one (issue 10). So:

- each error in a row doubles the wait before the next try of that kind of work, from
  `FIRST_WAIT` up to `LONGEST_WAIT`; a warning is logged at the 1st, 2nd, 4th, 8th...
  error of a streak, and an info line when the database answers after two or more;
- from the `IN_PARTS_AFTER`-th error in a row, the worker does the batch one profile
  per transaction, as when the database refuses a batch's writes (engine/runtime/
  parts.py). A profile whose part fails while other parts of the same round commit is
  done once more (a lock may have been released in between), and if it fails again it
  has an error of its own: that counts as its failed attempt (backoff, then parked:
  `journeyman failures`). When no part commits, the database is away and nothing is
  counted against anyone. A part's error does not add to the streak (its round's did).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.ports import Clock
from engine.runtime.errortext import without_values

log = logging.getLogger("journeyman.worker")

FIRST_WAIT = timedelta(milliseconds=100)
LONGEST_WAIT = timedelta(seconds=5)
IN_PARTS_AFTER = 3
# In parts, this many parts in a row failing transiently before any part committed end
# the round: the database is away, and asking once per profile of the batch (each a
# connection attempt, maybe a timeout) would only make the wait longer.
AWAY_AFTER = 3


@dataclass(frozen=True, slots=True)
class Transient:
    """A transaction rolled back by a transient database error: nothing was written."""

    error: str


class TransientErrors:
    """The streak of transient errors of each kind of work, and how long it waits."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._streak: dict[str, int] = {}
        self._resume_at: dict[str, datetime] = {}

    def failed(self, kind: str, exc: BaseException, *, streak: bool = True) -> Transient:
        """Note one more transient error of `kind` in a row (not with `streak=False`: a
        part of a round, or a look at what is due, whose round counted); returns what
        the round got."""
        error = without_values(str(exc))
        if not streak:
            return Transient(error)
        count = self._streak[kind] = self._streak.get(kind, 0) + 1
        wait = min(LONGEST_WAIT, FIRST_WAIT * 2 ** min(count - 1, 16))
        self._resume_at[kind] = self.clock.now() + wait
        if count & (count - 1) == 0:  # 1, 2, 4, 8...: the log says it is still so
            log.warning("a transient database error (%s: %d in a row); trying again in "
                        "%.1f s: %s", kind, count, wait.total_seconds(), error)
        return Transient(error)

    def succeeded(self, kind: str) -> None:
        """A transaction of `kind` committed: the streak is over."""
        streak = self._streak.pop(kind, 0)
        self._resume_at.pop(kind, None)
        if streak >= 2:
            log.info("the database answers again (%s) after %d transient errors in a row",
                     kind, streak)

    def streak(self, kind: str) -> int:
        return self._streak.get(kind, 0)

    def in_parts(self, kind: str) -> bool:
        """Whether the next round of `kind` after this error is done in parts."""
        return self.streak(kind) >= IN_PARTS_AFTER

    def waiting_until(self, kind: str) -> datetime | None:
        """When `kind` may be tried again, if that is still to come."""
        at = self._resume_at.get(kind)
        return at if at is not None and at > self.clock.now() else None

    def not_before(self, kind: str, due: datetime | None) -> datetime | None:
        """When `kind` next runs: `due` moved to the end of the wait if it falls inside
        it, and the wait's end when nothing is known due (work a rollback gave back is
        not held: the store knows no time for it)."""
        at = self.waiting_until(kind)
        return due if at is None or (due is not None and due >= at) else at


def known_transient(is_transient: Callable[[BaseException], bool] | None,
                    error: BaseException) -> bool:
    """`is_transient(error)` (the store's answer), where an error in asking, or no one to
    ask, is a no: the error is then handled as any other (logged in full, a 500)."""
    try:
        return is_transient is not None and is_transient(error)
    except Exception:
        return False
