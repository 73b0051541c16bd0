"""The outcomes of a claim's sends, and their write once the sends have gone out
(engine/runtime/dispatch.py), including when the database drops the connection.

Delivered sends' outcomes are written a chunk at a time, in one transaction; a write
that fails leaves their rows leased, and when the lease ends they go out again. An
operator's trial terminated every PostgreSQL backend four times, 0.7 s apart, under
load: ~20 sends a round went out twice. So a failed write is not the end of it:

- **It failed before its COMMIT** on an error the store calls transient (a statement on
  a connection lost meanwhile: the pool hands out a connection used a moment ago
  unpinged, engine/store/sql/pg_engine.py; SQLite busy; a pooler's conversation out of
  step, which the engine drops like a lost connection): nothing committed, and it is
  written again after a pause.
- **It failed at its COMMIT** (any error: the server may have committed and the answer
  been lost, or not): writing again blindly would log the decisions twice, take a
  deferral's attempt back twice and park a failure twice; not writing sends the rows
  again. So the database is asked, after a pause, on a connection of its own. A chunk's
  outcomes commit all or nothing, and each moves its row away from the claim's lease:
  a final status, or a `next_attempt_at` other than the lease's (`Chunk.moved`). If all
  those rows are still pending at the lease, the write did not commit: it is written
  again. If none is, it committed (or another dispatcher claimed them once the lease had
  run out, and they are its now): nothing more is written. Anything else is raised, as
  before, and the rows wait for their lease.

The question is the lease's own UPDATE pushing the lease to where it is
(`ClaimLease.look`), not a read: it waits for the row locks of a COMMIT still under way
on the lost connection, and sees what it did; on PostgreSQL it waits at most
EXTEND_LOCK_WAIT_MS (engine/store/sql/outbox.py) for rows a transaction lost unseen
still holds, then counts as no answer. The normal path runs no statement more.

Each write again, and each question, comes after the next of `PAUSES`; when they run
out the error is raised. 3.2 s of pauses in all (plus each try's own time: a connect,
a lock wait), long enough for the pool to connect anew to a server that has just
dropped every connection. Within the default lease's margin (lease.py MARGIN, 5 s);
a `--lease` under 20 s has a smaller margin, and a write that outlasts it lets another
dispatcher re-send after the lease, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from engine.core.model import EnrollmentOutline, Profile
from engine.ports import Decision, Store
from engine.runtime.lease import ClaimLease

log = logging.getLogger("journeyman.dispatch")

PAUSES = (0.2, 1.0, 2.0)  # seconds before each write again or question, in turn


@dataclass
class Chunk:
    """The rows of a claim being dispatched: what the checks need, loaded in bulk, and
    the outcomes waiting to be written in one transaction."""

    enrollments: dict[str, EnrollmentOutline]
    profiles: dict[str, Profile]
    claimed: int = 0
    short: bool = False  # the claim found fewer rows than its limit (Store.claim_was_short)
    outcomes: list[Callable[[], object]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # written with the outcomes
    # the two outcomes of nearly every row, (key, at), each kind one statement
    admissions: list[tuple[str, datetime]] = field(default_factory=list)
    sent: list[tuple[str, datetime]] = field(default_factory=list)
    # not now (quiet hours, a channel down): (key, until, reason), one statement
    deferred: list[tuple[str, datetime, str]] = field(default_factory=list)
    # (profile, channel) -> admission times within the longest cap window, oldest first
    admitted: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)  # addresses on the suppression list
    lease: ClaimLease | None = None  # the delivered rows' lease, set after the admission
    # the rows `outcomes` settle: key -> the `next_attempt_at` written (None: a final status)
    settled: dict[str, datetime | None] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Outcomes waiting to be written."""
        return bool(self.outcomes or self.decisions or self.admissions or self.sent
                    or self.deferred)

    def outcome(self, key: str, write: Callable[[], object], *,
                at: datetime | None = None) -> None:
        """A row's outcome, written with the chunk: `at` its next attempt (None: done)."""
        self.outcomes.append(write)
        self.settled[key] = at

    def moved(self, ours: datetime) -> list[str]:
        """The rows whose outcomes, once committed, no longer hold the lease `ours`."""
        rows: dict[str, datetime | None] = dict.fromkeys((key for key, _ in self.sent), None)
        rows.update((key, until) for key, until, _ in self.deferred)
        rows.update(self.settled)
        return [key for key, at in rows.items() if at != ours]

    def forget(self) -> None:
        """The outcomes are written: committed, or in a transaction whose failure
        discards the chunk (the admission's)."""
        for written in (self.admissions, self.sent, self.deferred, self.outcomes,
                        self.decisions):
            written.clear()
        self.settled.clear()


def write_outcomes(store: Store, chunk: Chunk, record: Callable[[], None],
                   pause: Callable[[float], None]) -> None:
    """`record()` the chunk's outcomes in one transaction, tried again as the module
    says; raises when it cannot tell they are written. The caller forgets them."""
    pauses = iter(PAUSES)
    while True:
        committing = False
        try:
            with store.transaction(stamped=True):  # no profile's state
                record()
                committing = True  # what fails from here on is the COMMIT
            return
        except Exception as exc:
            count = len(chunk.sent) + len(chunk.outcomes)
            if not committing:
                if not store.is_transient(exc) or not _paused(pauses, pause):
                    raise
                log.warning("writing %d delivered sends' outcomes failed (%s); trying "
                            "again", count, type(exc).__name__)
                continue
            committed = _committed(chunk, pauses, pause)
            if committed is None:
                log.error("writing %d delivered sends' outcomes failed at its COMMIT (%s), "
                          "and the database cannot say whether it went through; they go "
                          "out again when their lease ends", count, type(exc).__name__)
                raise
            if committed:
                log.warning("writing %d delivered sends' outcomes failed at its COMMIT "
                            "(%s), which went through (or another dispatcher claimed the "
                            "rows once the lease had run out)", count, type(exc).__name__)
                return
            log.warning("writing %d delivered sends' outcomes failed at its COMMIT (%s), "
                        "which did not go through; trying again", count, type(exc).__name__)


def _committed(chunk: Chunk, pauses: Iterator[float],
               pause: Callable[[float], None]) -> bool | None:
    """Whether the chunk's write, whose COMMIT failed, committed; None when the database
    cannot say (it does not answer, or some rows are written and some not)."""
    lease = chunk.lease
    if lease is None:
        return None
    keys = chunk.moved(lease.until)
    while keys and _paused(pauses, pause):
        try:
            return lease.look(keys)
        except Exception as exc:  # still away: ask again after the next pause
            log.warning("asking whether %d sends' outcomes were written failed (%s)",
                        len(keys), type(exc).__name__)
    return None


def _paused(pauses: Iterator[float], pause: Callable[[float], None]) -> bool:
    """Wait the next pause; False when there is none left."""
    seconds = next(pauses, None)
    if seconds is None:
        return False
    pause(seconds)
    return True
