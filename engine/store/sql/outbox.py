"""`SqlStore`'s outbox: rendered sends queued in the transaction of their step, leased
to dispatchers, and settled (sent, retried, deferred, skipped, failed).

PostgreSQL: rows are claimed with `FOR UPDATE SKIP LOCKED`, so dispatchers split them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, func, select, update

from engine.ports import OutboxEntry
from engine.store.sql.db import SqlBase
from engine.store.sql.rows import outbox_entry, send_values


class OutboxQueries(SqlBase):
    @cached_property
    def _enqueue_send_many(self) -> Any:
        """INSERT of new outbox rows; a send key queued already is left as it is."""
        o = self._outbox
        cols = ("send_key", "enrollment_id", "profile_id", "journey", "step", "channel",
                "template", "to", "rendered", "status", "attempts", "next_attempt_at",
                "created_at")
        stmt = self._insert(o).values({c: bindparam(c, type_=o.c[c].type) for c in cols})
        return stmt.on_conflict_do_nothing(index_elements=["send_key"])

    @cached_property
    def _enqueue(self) -> Any:
        return self._enqueue_send_many.returning(self._outbox.c.id)

    @cached_property
    def _outbox_updates(self) -> dict[tuple[str, ...], Any]:
        return {}

    def enqueue_send(self, entry: OutboxEntry) -> bool:
        """Queue a rendered send; False if its key is queued already (unique `send_key`)."""
        with self._write() as conn:
            return conn.execute(self._enqueue, send_values(entry)).first() is not None

    def claim_outbox(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxEntry]:
        """Lease up to `limit` due sends (oldest first) and count the attempt.

        Commits on its own (call it outside a transaction): the lease is what stops a
        second dispatcher from sending the same row while this one is delivering it.
        PostgreSQL: `FOR UPDATE SKIP LOCKED`, so dispatchers split the rows.
        """
        o = self._outbox
        due = (select(o.c.id).where(o.c.status == "pending", o.c.next_attempt_at <= now)
               .order_by(o.c.next_attempt_at, o.c.id).limit(limit))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        stmt = (update(o).where(o.c.id.in_(due))
                .values(next_attempt_at=now + lease, attempts=o.c.attempts + 1)
                .returning(o.c.id, o.c.send_key, o.c.enrollment_id, o.c.profile_id,
                           o.c.journey, o.c.step, o.c.channel, o.c.to, o.c.rendered,
                           o.c.created_at, o.c.attempts))
        with self._write() as conn:
            rows = sorted(conn.execute(stmt).all(), key=lambda r: r.id)
        return [outbox_entry(r) for r in rows]

    def mark_sent(self, key: str, at: datetime) -> None:
        self._set_outbox(key, status="sent", sent_at=at, next_attempt_at=None)

    def mark_retry(self, key: str, at: datetime, error: str) -> None:
        self._set_outbox(key, next_attempt_at=at, last_error=error)

    def mark_failed(self, key: str, at: datetime, error: str) -> None:
        del at  # the decision log has the time
        self._set_outbox(key, status="failed", next_attempt_at=None, last_error=error)

    def mark_deferred(self, key: str, until: datetime, reason: str) -> None:
        """Not now (quiet hours): due again at `until`, and the claim was no attempt."""
        o = self._outbox
        with self._write() as conn:
            conn.execute(update(o).where(o.c.send_key == key).values(
                next_attempt_at=until, attempts=o.c.attempts - 1, last_error=reason))

    def mark_skipped(self, key: str, reason: str) -> None:
        """Not at all (no consent, over a frequency cap): kept, with the reason."""
        self._set_outbox(key, status="skipped", next_attempt_at=None, last_error=reason)

    def count_sent(self, profile_id: str, channel: str, since: datetime) -> int:
        """Sends delivered to a profile on a channel after `since` (frequency caps)."""
        o = self._outbox
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(o).where(
                o.c.profile_id == profile_id, o.c.channel == channel, o.c.status == "sent",
                o.c.sent_at > since)).scalar_one())

    def _set_outbox(self, key: str, **values: Any) -> None:
        """Update one outbox row; one prepared statement per set of columns."""
        columns = tuple(sorted(values))
        stmt = self._outbox_updates.get(columns)
        if stmt is None:
            o = self._outbox
            stmt = update(o).where(o.c.send_key == bindparam("row_key")).values(
                {c: bindparam(c, type_=o.c[c].type) for c in columns})
            self._outbox_updates[columns] = stmt
        with self._write() as conn:
            conn.execute(stmt, {"row_key": key, **values})

    def next_outbox_at(self) -> datetime | None:
        o = self._outbox
        with self._read() as conn:
            value: datetime | None = conn.execute(
                select(func.min(o.c.next_attempt_at)).where(o.c.status == "pending")).scalar()
        return value
