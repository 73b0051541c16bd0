"""`SqlStore`'s parked failures: an event, a timer or a send that failed too often,
kept with its error and stack until an operator retries or discards it
(`journeyman failures`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from engine.core.model import ScheduleTimer
from engine.ports import Failure
from engine.store.sql.state import StateQueries


class FailureQueries(StateQueries):
    def park(self, kind: str, ref: str, *, profile_id: str, journey: str, step: str,
             error: str, stack: str, attempts: int, at: datetime,
             payload: Mapping[str, Any] | None = None) -> int:
        f, ib, o = self._failures, self._inbox, self._outbox
        with self._write() as conn:
            failure_id = conn.execute(insert(f).values(
                kind=kind, ref=ref, profile_id=profile_id, journey=journey, step=step,
                error=error, stack=stack, attempts=attempts, parked_at=at,
                payload=dict(payload or {})).returning(f.c.id)).scalar_one()
            if kind == "event":
                conn.execute(update(ib).where(ib.c.id == int(ref)).values(
                    status="parked", attempts=attempts, last_error=error))
            elif kind == "send":
                conn.execute(update(o).where(o.c.send_key == ref).values(
                    status="parked", next_attempt_at=None, last_error=error))
        return int(failure_id)

    def failures(self, kind: str | None = None) -> list[Failure]:
        f = self._failures
        query = select(f).order_by(f.c.id)
        if kind is not None:
            query = query.where(f.c.kind == kind)
        with self._read() as conn:
            return [Failure(r.id, r.kind, r.ref, r.profile_id, r.journey, r.step, r.error,
                            r.stack, r.attempts, r.parked_at, r.payload)
                    for r in conn.execute(query)]

    def retry_failure(self, failure_id: int, now: datetime) -> bool:
        f, ib, o = self._failures, self._inbox, self._outbox
        with self.transaction(), self._write() as conn:
            row = conn.execute(select(f).where(f.c.id == failure_id)).first()
            if row is None:
                return False
            if row.kind == "event":
                conn.execute(update(ib).where(ib.c.id == int(row.ref)).values(
                    status="pending", attempts=0, available_at=None))
            elif row.kind == "timer":
                p = row.payload
                self.add_timer(ScheduleTimer(p["key"], p["enrollment_id"], p["profile_id"],
                                             p["journey"], p["step"], int(p["occurrence"]),
                                             now))
            elif row.kind == "send":
                conn.execute(update(o).where(o.c.send_key == row.ref).values(
                    status="pending", attempts=0, next_attempt_at=now))
            conn.execute(delete(f).where(f.c.id == failure_id))
            # the loops of running processes pick it up at once
            self._notify(conn, [({"event": "inbox", "timer": "timers"}.get(row.kind, "outbox"),
                                 "")])
        return True

    def discard_failure(self, failure_id: int) -> bool:
        f, ib, o = self._failures, self._inbox, self._outbox
        with self.transaction(), self._write() as conn:
            row = conn.execute(select(f).where(f.c.id == failure_id)).first()
            if row is None:
                return False
            if row.kind == "event":
                conn.execute(delete(ib).where(ib.c.id == int(row.ref)))
            elif row.kind == "send":
                conn.execute(update(o).where(o.c.send_key == row.ref).values(
                    status="failed", last_error=f"discarded: {row.error}"))
            conn.execute(delete(f).where(f.c.id == failure_id))
        return True
