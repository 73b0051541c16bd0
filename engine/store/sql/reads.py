"""`SqlStore`'s reads for people and reports (the CLI, the admin API, the demo): whole
histories and counts, never on the hot path."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, select

from engine.core.model import Enrollment, Exit, RecordGoal
from engine.ports import Decision, Levels, OutboxRecord
from engine.store.sql.db import SqlBase
from engine.store.sql.rows import enrollment_from_row, outbox_entry


class ReadQueries(SqlBase):
    def profile_enrollments(self, profile_id: str) -> list[Enrollment]:
        """Every enrollment of a profile, in every journey, oldest first."""
        e = self._enrollments
        with self._read() as conn:
            rows = conn.execute(select(e).where(e.c.profile_id == profile_id)
                                .order_by(e.c.entered_at, e.c.entry_seq)).all()
        return [enrollment_from_row(r._mapping) for r in rows]

    def entered_since(self, when: datetime, *, journey: str | None = None) -> list[Enrollment]:
        """Enrollments entered at or after `when` (of one journey: index (journey,
        entered_at)), oldest first."""
        e = self._enrollments
        query = select(e).where(e.c.entered_at >= when)
        if journey is not None:
            query = query.where(e.c.journey == journey)
        with self._read() as conn:
            rows = conn.execute(query.order_by(e.c.entered_at, e.c.entry_seq)).all()
        return [enrollment_from_row(r._mapping) for r in rows]

    def pending_timers(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(self._timers)).scalar_one())

    def recorded_exits(self, profile_id: str | None = None) -> list[Exit]:
        x = self._exits
        query = select(x).order_by(x.c.id)
        if profile_id is not None:
            query = query.where(x.c.profile_id == profile_id)
        with self._read() as conn:
            return [Exit(r.enrollment_id, r.profile_id, r.journey, r.step, r.reason, r.at)
                    for r in conn.execute(query)]

    def recorded_goals(self, profile_id: str | None = None, *,
                       journey: str | None = None) -> list[RecordGoal]:
        g = self._goals
        query = select(g).order_by(g.c.id)
        if profile_id is not None:
            query = query.where(g.c.profile_id == profile_id)
        if journey is not None:
            query = query.where(g.c.journey == journey)
        with self._read() as conn:
            return [RecordGoal(r.enrollment_id, r.profile_id, r.journey, r.at, r.value)
                    for r in conn.execute(query)]

    def recorded_decisions(self, profile_id: str | None = None, *,
                           kinds: tuple[str, ...] | None = None) -> list[Decision]:
        d = self._decisions
        query = select(d).order_by(d.c.id)
        if profile_id is not None:
            query = query.where(d.c.profile_id == profile_id)
        if kinds is not None:
            query = query.where(d.c.what.in_(kinds))
        with self._read() as conn:
            return [Decision(r.at, r.profile_id, r.journey, r.step, r.what, r.reason,
                             r.details) for r in conn.execute(query)]

    def outbox_records(self, profile_id: str | None = None,
                       status: str | None = None, *,
                       journey: str | None = None) -> list[OutboxRecord]:
        """The outbox as an operator sees it (one journey's), oldest first."""
        o = self._outbox
        query = select(o).order_by(o.c.id)
        if journey is not None:
            query = query.where(o.c.journey == journey)
        if profile_id is not None:
            query = query.where(o.c.profile_id == profile_id)
        if status is not None:
            query = query.where(o.c.status == status)
        with self._read() as conn:
            return [OutboxRecord(outbox_entry(r._mapping), r.status, r.attempts, r.next_attempt_at,
                                 r.last_error, r.sent_at) for r in conn.execute(query)]

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by status (`pending`, `sent`, `failed`)."""
        o = self._outbox
        with self._read() as conn:
            return {r.status: int(r.n) for r in conn.execute(
                select(o.c.status, func.count().label("n")).group_by(o.c.status))}

    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (kind, value) identifiers that point at a profile, sorted."""
        i = self._identities
        with self._read() as conn:
            rows = conn.execute(select(i.c.kind, i.c.value).where(i.c.profile_id == profile_id)
                                .order_by(i.c.kind, i.c.value)).all()
        return [(r.kind, r.value) for r in rows]

    def inbox_counts(self) -> dict[str, int]:
        """Inbox rows by status (`pending`, `failed`)."""
        ib = self._inbox
        with self._read() as conn:
            return {r.status: int(r.n) for r in conn.execute(
                select(ib.c.status, func.count().label("n")).group_by(ib.c.status))}

    def waiting_consents(self, profile_ids: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """Their inbox rows whose event names a consent (as text: a superset), by id."""
        ib, found = self._inbox, dict[str, list[dict[str, Any]]]()
        if not profile_ids:
            return found
        with self._read() as conn:
            for row in conn.execute(select(ib.c.profile_id, ib.c.event)
                                    .where(ib.c.profile_id.in_(sorted(profile_ids)))
                                    .where(cast(ib.c.event, Text).contains("consent"))
                                    .order_by(ib.c.id)):
                found.setdefault(row.profile_id, []).append(row.event)
        return found

    def levels(self, now: datetime | None = None) -> Levels:
        """A few grouped queries (the timers' by their clustered primary key)."""
        now = now or self._now()
        t, o, e = self._timers, self._outbox, self._enrollments
        with self._read() as conn:
            pending = int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            overdue = int(conn.execute(select(func.count()).select_from(t).where(
                t.c.due_at < now - timedelta(minutes=1))).scalar_one())
            enrollments = {(r.journey, r.status): int(r.n) for r in conn.execute(
                select(e.c.journey, e.c.status, func.count().label("n"))
                .group_by(e.c.journey, e.c.status))}
            sends = {(r.journey, r.status): int(r.n) for r in conn.execute(
                select(o.c.journey, o.c.status, func.count().label("n"))
                .group_by(o.c.journey, o.c.status))}
        return Levels(self.inbox_counts(), pending, overdue, self.outbox_counts(),
                      enrollments, sends)
