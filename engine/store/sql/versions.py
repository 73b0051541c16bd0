"""`SqlStore`'s journey versions: every deployed version of every journey, the
in-flight counts `journeyman plan` shows, and the moves `journeyman apply` makes when a
new version's `migrate:` map takes over an older version's enrollments (each one moved
recorded in the decision log, in the move's transaction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from engine.core.moves import moved_occurrence, moved_timer
from engine.ports import DeployedVersion, StepMove
from engine.store.sql.db import INSERT_CHUNK, _chunks
from engine.store.sql.rollup import recounted
from engine.store.sql.rows import timer_from_row, timer_values
from engine.store.sql.state import StateQueries, decision_rows


class VersionQueries(StateQueries):
    def deployed_versions(self, journey: str | None = None) -> list[DeployedVersion]:
        jv = self._journey_versions
        query = select(jv).order_by(jv.c.journey, jv.c.version)
        if journey is not None:
            query = query.where(jv.c.journey == journey)
        with self._read() as conn:
            return [DeployedVersion(r.journey, r.version, r.digest, r.source, r.file,
                                    r.deployed_at, r.status) for r in conn.execute(query)]

    def deploy_version(self, version: DeployedVersion) -> bool:
        jv = self._journey_versions
        with self._write() as conn:
            inserted = conn.execute(self._insert(jv).values(
                journey=version.journey, version=version.version, digest=version.digest,
                source=version.source, file=version.file, deployed_at=version.deployed_at,
                status=version.status).on_conflict_do_nothing(
                    index_elements=["journey", "version"]).returning(jv.c.version)).first()
            if inserted:
                conn.execute(update(jv).where(jv.c.journey == version.journey)
                             .values(status=version.status))
        return inserted is not None

    def set_journey_status(self, journey: str, status: str) -> bool:
        jv = self._journey_versions
        with self._write() as conn:
            return bool(conn.execute(update(jv).where(jv.c.journey == journey)
                                     .values(status=status)).rowcount)

    def in_flight(self, journey: str) -> dict[tuple[int, str], int]:
        e = self._enrollments
        query = (select(e.c.version, e.c.state, func.count())
                 .where(e.c.journey == journey, e.c.status == "active")
                 .group_by(e.c.version, e.c.state))
        with self._read() as conn:
            return {(int(v), str(s)): int(n) for v, s, n in conn.execute(query)}

    def move_enrollments(self, move: StepMove, now: datetime) -> int:
        e, t = self._enrollments, self._timers
        where = (e.c.journey == move.journey, e.c.version == move.from_version,
                 e.c.state == move.from_step, e.c.status == "active")
        with self._write() as conn:
            same = move.from_step == move.to_step  # same step id: only the version changes
            read = (e.c.id, e.c.profile_id) if same else (e.c.id, e.c.profile_id, e.c.visits)
            rows = conn.execute(select(*read).where(*where)).all()
            if same:
                conn.execute(update(e).where(*where).values(version=move.to_version,
                                                            updated_at=now))
                for chunk in _chunks(rows, INSERT_CHUNK):
                    dues = dict(conn.execute(select(t.c.enrollment_id, t.c.due_at).where(
                        t.c.enrollment_id.in_([r.id for r in chunk]),
                        t.c.step == move.from_step)).all())
                    self._note_moves(conn, move, now, chunk, dues)
                return len(rows)
            set_row = (update(e).where(e.c.id == bindparam("eid"))
                       .values(version=move.to_version, state=move.to_step,
                               visits=bindparam("new_visits"), updated_at=now))
            for chunk in _chunks(rows, INSERT_CHUNK):
                params: list[dict[str, Any]] = []
                occurrence: dict[str, int] = {}
                for eid, _, stored in chunk:
                    visits = dict(stored or {})
                    occurrence[eid] = moved_occurrence(visits, move.from_step, move.to_step)
                    visits[move.to_step] = occurrence[eid]
                    params.append({"eid": eid, "new_visits": visits})
                with recounted(conn, occurrence.keys()):
                    conn.execute(set_row, params)
                timers = conn.execute(delete(t).where(
                    t.c.enrollment_id.in_(list(occurrence)), t.c.step == move.from_step)
                    .returning(*t.c)).mappings().all()
                moved = [timer_values(moved_timer(timer_from_row(r), move.to_step,
                                                  occurrence[r["enrollment_id"]]))
                         for r in timers]
                if moved:
                    conn.execute(insert(t), moved)
                self._note_moves(conn, move, now, chunk, {
                    r["enrollment_id"]: r["due_at"] for r in timers})
            return len(rows)

    def _note_moves(self, conn: Connection, move: StepMove, now: datetime,
                    rows: Sequence[Row[Any]], dues: Mapping[str, datetime]) -> None:
        """The decision log's row for each enrollment moved (`StepMove.decision`), in
        the move's transaction."""
        self._many(conn, self._q["record_decision"], decision_rows([
            move.decision(now, r.profile_id, r.id, dues.get(r.id)) for r in rows]))
