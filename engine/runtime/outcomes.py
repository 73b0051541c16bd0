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
  again. A chunk's outcomes commit all or nothing, and each moves its row away from the
  claim's lease: a final status, or a `next_attempt_at` other than the lease's
  (`Chunk.moved`).

So every write again first asks, in its own transaction, whether those rows are all
still pending at the lease (`_still_ours`): if so, nothing of the chunk is written, and
it writes them; if none is, the COMMIT went through, or the lease ran out meanwhile and
another dispatcher claimed them (they are its now: a write over its claim logged `sent`
twice and took its attempt back, a third review found): nothing is written. If some
are, nothing committed (a committed write moves every row) and some were claimed
meanwhile: all are written, as before (refusing sent the others again). The question is the
lease's own UPDATE pushing the lease to where it is (`ClaimLease.look`), not a read: it
waits for the row locks of a COMMIT still under way on the lost connection, sees what
it did, and holds the rows until this transaction commits; on PostgreSQL it waits at
most EXTEND_LOCK_WAIT_MS (engine/store/sql/outbox.py) for rows a transaction lost unseen
still holds. The normal path runs no statement more.

Each write again comes after the next of `PAUSES`; when they run out the error is
raised. 3.2 s of pauses in all, long enough for the pool to connect anew to a server
that has just dropped every connection, plus each try's own time (a connect; on
PostgreSQL up to EXTEND_LOCK_WAIT_MS a lock wait): more than the lease's margin
(lease.py MARGIN) at worst, so a write again may come after the lease ran out, and the
question is what keeps it off another dispatcher's claim.
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

PAUSES = (0.2, 1.0, 2.0)  # seconds before each write again, in turn


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
    again: str | None = None  # why this is a write again: "failed" or "at_commit"
    while True:
        committing = False
        try:
            with store.transaction(stamped=True):  # no profile's state
                if again is not None and not _still_ours(chunk, again):
                    return  # written by the COMMIT that failed, or another's now
                record()
                committing = True  # what fails from here on is the COMMIT
            return
        except _Undecided:
            raise
        except Exception as exc:
            count = len(chunk.sent) + len(chunk.outcomes)
            if not committing and not store.is_transient(exc):
                raise
            if not _paused(pauses, pause):
                log.error("writing %d delivered sends' outcomes failed (%s), the last "
                          "try of %d; unless written, they go out again when their lease "
                          "ends", count, type(exc).__name__, len(PAUSES) + 1)
                raise
            again = "at_commit" if committing or again == "at_commit" else "failed"
            log.warning("writing %d delivered sends' outcomes failed%s (%s); trying again "
                        "if they are not written", count,
                        " at its COMMIT" if committing else "", type(exc).__name__)


class _Undecided(Exception):  # noqa: N818 - raised to the dispatcher as the write's failure
    """A write whose COMMIT failed, with no lease or rows to ask whether it went
    through: nothing is written again, and the rows wait for their lease."""


def _still_ours(chunk: Chunk, again: str) -> bool:
    """In the transaction of a write again, before it writes: whether the chunk's rows
    are all still pending at the claim's lease (True: write them), none is (False: the
    COMMIT that failed went through, or the lease ran out and another dispatcher claimed
    them, whose they are now: write nothing over its claim); some are (written, below).
    Asked by the lease's own
    UPDATE in this transaction, so the answer holds until it commits (`ClaimLease.look`:
    it waits for a lost COMMIT's row locks). Without a lease to ask by, a write that
    failed before its COMMIT is written again (nothing of it committed), one that failed
    at its COMMIT is undecided."""
    lease = chunk.lease
    keys = chunk.moved(lease.until) if lease is not None else []
    if lease is None or not keys:
        if again == "failed":
            return True
        raise _Undecided("the write of delivered sends' outcomes failed at its COMMIT, "
                         "with no rows to ask whether it went through")
    written = lease.look(keys)
    if written is None:
        # Some still ours: a committed write moves every row, so nothing of it committed;
        # the others were claimed (or erased) meanwhile. All are written, as before this
        # question was asked: refusing left the rows still ours to go out again when
        # their lease ended (a customer's second message, a fourth review), where
        # writing over the others' claim costs their decision log a second `sent`.
        log.warning("of %d delivered sends some were claimed by another dispatcher once "
                    "their lease had run out; writing all their outcomes", len(keys))
        return True
    if written:
        log.warning("%d delivered sends' outcomes are written already, or another "
                    "dispatcher claimed them once their lease had run out", len(keys))
    return not written


def _paused(pauses: Iterator[float], pause: Callable[[float], None]) -> bool:
    """Wait the next pause; False when there is none left."""
    seconds = next(pauses, None)
    if seconds is None:
        return False
    pause(seconds)
    return True
