"""`SqlStore`'s working state: profiles, enrollments, timers, segment memberships and
the records of exits, goals and decisions; what the runtime reads and writes while it
handles an event or a timer. The hot-path statements are built once, with bind
parameters: building them per call cost more than SQLite's own work.

PostgreSQL: timers are claimed with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
never get the same timer; `lock_profile` is a transaction-scoped advisory lock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.core.model import CRON_STEP, Enrollment, Exit, Profile, RecordGoal, ScheduleTimer
from engine.ports import Decision, EntryStats, Lane
from engine.store.sql.db import INSERT_CHUNK, SqlBase, _chunks
from engine.store.sql.driver import driver_execute
from engine.store.sql.lanes import takeover_statements, unserved_parameters
from engine.store.sql.lists import among
from engine.store.sql.rollup import recounted
from engine.store.sql.rows import (
    enrollment_from_row,
    enrollment_values,
    entries_values,
    entry_stats_from_row,
    plain_dict,
    profile_lock_key,
    timer_columns,
    timer_from_row,
    timer_values,
)


def _values(tbl: Any, cols: Sequence[str]) -> dict[str, Any]:
    """`{column: bindparam}` for an INSERT built once and run many times."""
    return {c: bindparam(c, type_=tbl.c[c].type) for c in cols}


# SQLite's primary result codes that say the database, not the statement, is in the way:
# busy, locked, out of memory, read-only, I/O error, full, cannot open, WAL protocol.
SQLITE_WAIT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
# PostgreSQL: a lock per profile, taken without waiting, in the keys' order (psycopg's style)
PROFILE_LOCKS = ("SELECT t.k, pg_try_advisory_xact_lock(t.k) FROM unnest(%(keys)s::bigint[])"
                 " WITH ORDINALITY AS t(k, n) ORDER BY t.n")
# `last_timer_due_by` of a lane looks at this many timers only (None beyond): the last
# due by the window's end, or (given `most`) the first from the window's start
LAST_IN_LANE_ROWS = 1000


class StateQueries(SqlBase):
    @cached_property
    def _q(self) -> dict[str, Any]:
        """The statements of the hot path, with bind parameters."""
        p, e, t, s, d = (self._profiles, self._enrollments, self._timers, self._segments,
                         self._decisions)
        pid: Any = bindparam("pid")
        journey: Any = bindparam("journey")
        by_age = (e.c.entered_at, e.c.entry_seq)
        timer = self._insert(t).values(_values(t, (
            "key", "enrollment_id", "profile_id", "journey", "step", "occurrence", "due_at",
            "attempts")))
        return {
            "get_profile": select(p.c.traits, p.c.computed).where(p.c.id == pid),
            "enrollments": select(e).where(e.c.profile_id == pid, e.c.journey == journey)
            .order_by(*by_age),
            "active_enrollments": select(e).where(e.c.profile_id == pid,
                                                  e.c.status == "active").order_by(*by_age),
            "active_enrollment": select(e).where(
                e.c.profile_id == pid, e.c.journey == journey, e.c.status == "active")
            .order_by(e.c.entered_at.desc(), e.c.entry_seq.desc()).limit(1),
            "get_enrollment": select(e).where(e.c.id == bindparam("id")),
            "add_timer": timer.on_conflict_do_nothing(index_elements=["key"]),
            "cancel_timer": delete(t).where(t.c.key == bindparam("key")),
            "segment_member": select(s.c.since).where(s.c.profile_id == pid,
                                                      s.c.journey == journey),
            "record_decision": insert(d).values(_values(d, (
                "at", "profile_id", "journey", "step", "what", "reason", "details"))),
        }

    @cached_property
    def _upsert_profile(self) -> Any:
        p = self._profiles
        cols = ("id", "traits", "computed", "created_at", "updated_at")
        stmt = self._insert(p).values(_values(p, cols))
        return stmt.on_conflict_do_update(index_elements=["id"], set_={
            "traits": stmt.excluded.traits, "computed": stmt.excluded.computed,
            "updated_at": stmt.excluded.updated_at})

    @cached_property
    def _upsert_entries(self) -> Any:
        j = self._journey_entries
        cols = ("profile_id", "journey", "entries", "last_enrollment_id", "last_entered_at")
        stmt = self._insert(j).values(_values(j, cols))
        return stmt.on_conflict_do_update(index_elements=["profile_id", "journey"], set_={
            c: stmt.excluded[c] for c in cols[2:]})

    def _next_entry_seq(self) -> Any:
        """The entry_seq of a profile's next enrollment in a journey (`:seq_profile`,
        `:seq_journey`), a scalar subquery.

        `journey || ''`: the profile's own rows only, through the index on (profile_id,
        journey, entry_seq). On `journey = ?` PostgreSQL planned a new database's
        statement (no statistics yet) on (journey, entered_at) instead, filtering every
        enrollment of the journey by profile, once per row, for as long as the prepared
        plan lived: 130 buffer reads a row and half the upsert's time in a 3,000-event
        run (auto_explain), growing with the table. A profile has few rows."""
        e = self._enrollments
        return (select(func.coalesce(func.max(e.c.entry_seq), 0) + 1)
                .where(e.c.profile_id == bindparam("seq_profile"),
                       e.c.journey.concat("") == bindparam("seq_journey"))
                .scalar_subquery())

    @cached_property
    def _upsert_enrollment(self) -> Any:
        e = self._enrollments
        cols = [c.name for c in e.columns if c.name != "entry_seq"]
        seq = self._next_entry_seq()
        stmt = self._insert(e).values({**_values(e, cols), "entry_seq": seq})
        return stmt.on_conflict_do_update(
            index_elements=["id"], set_={c: stmt.excluded[c] for c in cols if c != "id"})

    # --- profiles ------------------------------------------------------------------

    def is_transient(self, error: BaseException) -> bool:
        """Locked or busy (SQLite), a deadlock or serialization failure broken by
        PostgreSQL, a lost connection, a prepared statement whose table another process
        altered (psycopg drops its prepared statements with the rollback, so the retry
        plans it again: a migration changing a column's type under running workers):
        worth retrying as is; a statement timeout too (57014: a lock waited for, a
        loaded server). Not the operational errors that come with the statement or its
        data: PostgreSQL's limits (class 54: an index row too big), SQLite's
        SQLITE_ERROR (a function raising, no such column):
        done again as is, they fail again, so the batch is done in parts instead and
        the profile they come with fails alone. What a driver files wrongly is caught by
        the worker's streak (engine/runtime/transients.py)."""
        orig = getattr(error, "orig", None)
        state = getattr(orig, "sqlstate", None)
        if isinstance(error, OperationalError):
            code = getattr(orig, "sqlite_errorcode", None)
            if isinstance(code, int):  # the primary code is the low byte
                return code & 0xFF in SQLITE_WAIT
            return not (isinstance(state, str) and state.startswith("54"))
        return isinstance(error, DBAPIError) and (error.connection_invalidated or (
            state == "0A000" and "cached plan must not change result type" in str(error.orig)))

    def try_lock_profiles(self, profile_ids: Collection[str]) -> set[str]:
        """PostgreSQL: a transaction-scoped advisory lock per profile, taken without
        waiting (so two transactions can never deadlock on them). SQLite: a write
        transaction holds the whole database, so every profile is ours."""
        wanted = list(dict.fromkeys(profile_ids))
        if not self._pg or not wanted:
            return set(wanted)
        keys = [profile_lock_key(p) for p in wanted]
        with self._write() as conn:  # at the driver (driver.py): psycopg's array
            got = driver_execute(conn, PROFILE_LOCKS, {"keys": keys}).fetchall()
        return {pid for pid, (_, ok) in zip(wanted, got, strict=True) if ok}

    def get_profile(self, profile_id: str) -> Profile | None:
        with self._read() as conn:
            row = conn.execute(self._q["get_profile"], {"pid": profile_id}).first()
        return None if row is None else Profile(profile_id, row.traits, row.computed)

    def put_profile(self, profile: Profile) -> None:
        now = self._now()
        with self._write() as conn:
            conn.execute(self._upsert_profile, {
                "id": profile.id, "traits": plain_dict(profile.traits),
                "computed": plain_dict(profile.computed), "created_at": now, "updated_at": now})

    def profile_ids(self) -> Iterable[str]:
        p = self._profiles
        with self._read() as conn:
            return list(conn.scalars(select(p.c.id).order_by(p.c.created_at, p.c.id)))

    # --- enrollments ---------------------------------------------------------------

    def active_enrollment(self, profile_id: str, journey: str) -> Enrollment | None:
        """The latest active enrollment. (There is at most one, except for an instant
        inside `merge_profiles`; InMemoryStore checks only the last one, which after a
        merge that kept the earlier enrollment is the exited one.)"""
        with self._read() as conn:
            row = conn.execute(self._q["active_enrollment"],
                               {"pid": profile_id, "journey": journey}).first()
        return None if row is None else enrollment_from_row(row._mapping)

    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        with self._read() as conn:
            rows = conn.execute(self._q["active_enrollments"], {"pid": profile_id}).all()
        return [enrollment_from_row(r._mapping) for r in rows]

    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        with self._read() as conn:
            rows = conn.execute(self._q["enrollments"],
                                {"pid": profile_id, "journey": journey}).all()
        return [enrollment_from_row(r._mapping) for r in rows]

    def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        with self._read() as conn:
            row = conn.execute(self._q["get_enrollment"], {"id": enrollment_id}).first()
        return None if row is None else enrollment_from_row(row._mapping)

    def put_enrollment(self, enrollment: Enrollment) -> None:
        """Write an enrollment; a new one counts as an entry of its journey."""
        e = self._enrollments
        with self._write() as conn:
            known = conn.execute(select(e.c.id).where(e.c.id == enrollment.id)).first()
            if known is None:
                stats = self._entry_stats(conn, enrollment.profile_id, enrollment.journey)
                conn.execute(self._upsert_entries, entries_values(
                    enrollment.profile_id, enrollment.journey,
                    EntryStats(stats.entries + 1, enrollment.id, enrollment.entered_at)))
            with recounted(conn, [enrollment.id]):
                conn.execute(self._upsert_enrollment, enrollment_values(
                    enrollment, seq_profile=enrollment.profile_id,
                    seq_journey=enrollment.journey))

    def _entry_stats(self, conn: Connection, profile_id: str, journey: str) -> EntryStats:
        j = self._journey_entries
        row = conn.execute(select(j).where(j.c.profile_id == profile_id,
                                           j.c.journey == journey)).first()
        return EntryStats() if row is None else entry_stats_from_row(row._mapping)

    # --- timers --------------------------------------------------------------------

    def add_timer(self, timer: ScheduleTimer) -> None:
        """Idempotent on `timer.key`: a second add with the same key changes nothing."""
        with self._write() as conn:
            conn.execute(self._q["add_timer"], timer_values(timer))

    def add_timers(self, timers: Sequence[ScheduleTimer]) -> None:
        """Many `add_timer`s in batched INSERTs (same idempotency)."""
        with self._write() as conn:
            for chunk in _chunks(timers, INSERT_CHUNK):
                stmt = self._insert(self._timers).values([timer_values(t) for t in chunk])
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))

    def cancel_timer(self, key: str) -> None:
        with self._write() as conn:
            conn.execute(self._q["cancel_timer"], {"key": key})

    def has_timer(self, key: str) -> bool:
        t = self._timers
        with self._read() as conn:
            return conn.execute(select(t.c.key).where(t.c.key == key)).first() is not None

    def claim_due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        """Delete and return up to `limit` timers due at or before `now`, oldest first.

        A claimed timer is gone: claim inside the `transaction()` that fires it, so a crash
        before the commit puts it back. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
        concurrent claimers split the due timers between them and never share one.
        """
        return self._delete_timers(self._timer_statements["due"], {"now": now, "limit": limit})

    @cached_property
    def _timer_statements(self) -> dict[str, Any]:
        """The timer claims and the next due times, built once."""
        t = self._timers
        due = (select(t.c.key).where(t.c.due_at <= bindparam("now"))
               .order_by(t.c.due_at, t.c.key).limit(bindparam("limit")))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        returning = timer_columns(t)
        # Found in the primary key's order (due_at, key), deleted by the unique key. Not
        # `(due_at, key) IN (...)`: SQLite looks each row up by due_at alone, and a cron
        # storm's 100,000 timers share one due_at: every claim walked all of them.
        # SQLite's optimistic timer batches (engine/runtime/worker.py): one lane's due
        # timers, or any lane's long overdue ones, read in a snapshot; what each was
        # (`still`); one lane's next due time (the first in (due_at, key) order)
        in_lane = func.jm_lane(t.c.profile_id, bindparam("lanes")) == bindparam("lane")
        peek = (select(*returning).where(t.c.due_at <= bindparam("now"))
                .order_by(t.c.due_at, t.c.key).limit(bindparam("limit")))
        last = (select(t.c.due_at, t.c.key, t.c.profile_id).where(t.c.due_at <= bindparam("by"))
                .order_by(t.c.due_at.desc(), t.c.key.desc()).limit(LAST_IN_LANE_ROWS)
                .subquery())
        # A window of a bounded count: the first `most` timers due from its start to its
        # end, in due order; of a lane, among the first LAST_IN_LANE_ROWS of any lane's
        # (another lane's crowd is not walked row by row). From the window's start, not
        # from the oldest timer: another lane's overdue backlog is not in the way.
        in_window = (t.c.due_at >= bindparam("window_from"), t.c.due_at <= bindparam("by"))
        first = (select(t.c.due_at, t.c.key, t.c.profile_id).where(*in_window)
                 .order_by(t.c.due_at, t.c.key).limit(LAST_IN_LANE_ROWS).subquery())
        first_most = {
            "first_most": select(t.c.due_at).where(*in_window).order_by(t.c.due_at, t.c.key)
            .limit(bindparam("most")).subquery(),
            "first_most_lane": select(first.c.due_at)
            .where(func.jm_lane(first.c.profile_id, bindparam("lanes")) == bindparam("lane"))
            .order_by(first.c.due_at, first.c.key).limit(bindparam("most")).subquery()}
        # a lane worker's takeover (engine/runtime/takeover.py): the timers overdue since
        # long, and those of the profiles no live worker's lane holds
        overdue = takeover_statements(peek, t.c.due_at <= bindparam("since"), t.c.profile_id)
        return {
            "peek": peek, "peek_lane": peek.where(in_lane),
            **{f"peek_overdue{name}": statement for name, statement in overdue.items()},
            "still": select(t.c.key, t.c.due_at, t.c.attempts).where(
                among(t.c.key, "keys", pg=self._pg)),
            "next_lane": select(t.c.due_at).where(in_lane).order_by(t.c.due_at, t.c.key)
            .limit(1),
            # the last of a window's timers (engine/runtime/worker.py, `next_timer_round`,
            # without `most`); of a lane: among the last LAST_IN_LANE_ROWS timers by then
            # only, so that a cluster of another lane's timers (a cron storm's) is not
            # walked row by row
            "last_by": select(func.max(t.c.due_at)).where(t.c.due_at <= bindparam("by")),
            "last_by_lane": select(last.c.due_at)
            .where(func.jm_lane(last.c.profile_id, bindparam("lanes")) == bindparam("lane"))
            .order_by(last.c.due_at.desc(), last.c.key.desc()).limit(1),
            **{name: select(func.max(window.c.due_at)) for name, window in first_most.items()},
            "due": delete(t).where(t.c.key.in_(due)).returning(*returning),
            "keys": delete(t).where(among(t.c.key, "keys", pg=self._pg))
            .returning(*returning),
            "keys_due": delete(t).where(among(t.c.key, "keys", pg=self._pg),
                                        t.c.due_at <= bindparam("now"))
            .returning(*returning),
            "next": select(func.min(t.c.due_at)),
            "next_journey": select(func.min(t.c.due_at)).where(t.c.step != CRON_STEP),
        }

    def claim_timers(self, keys: Collection[str], *,
                     due_by: datetime | None = None) -> list[ScheduleTimer]:
        found: list[ScheduleTimer] = []
        stmt = self._timer_statements["keys" if due_by is None else "keys_due"]
        for chunk in _chunks(list(keys), INSERT_CHUNK):
            params: dict[str, Any] = {"keys": chunk}
            if due_by is not None:
                params["now"] = due_by
            found += self._delete_timers(stmt, params)
        return sorted(found, key=lambda x: (x.due_at, x.key))

    def _delete_timers(self, stmt: Any, params: dict[str, Any]) -> list[ScheduleTimer]:
        with self._write() as conn:
            rows = list(self._select_rows(conn, stmt, params))
        rows.sort(key=lambda r: (r["due_at"], r["key"]))
        return [timer_from_row(r) for r in rows]

    def due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        t = self._timers
        with self._read() as conn:
            rows = conn.execute(select(*timer_columns(t)).where(t.c.due_at <= now)
                                .order_by(t.c.due_at, t.c.key).limit(limit)).mappings().all()
        return [timer_from_row(r) for r in rows]

    def next_timer_at(self, *, include_cron: bool = True,
                      lane: Lane | None = None) -> datetime | None:
        if not include_cron:
            return self._timer_time("next_journey", {})
        return self._timer_time("next", {}, lane=lane)

    def last_timer_due_by(self, by: datetime, *, lane: Lane | None = None, most: int | None
                          = None, since: datetime | None = None) -> datetime | None:
        """Of a lane: None also when none of the last LAST_IN_LANE_ROWS timers due by
        then is the lane's; with `most`, none of the first LAST_IN_LANE_ROWS due from
        `since` on (the lane's first `most` among them)."""
        if most is not None:
            window_from = since if since is not None else datetime(1, 1, 1, tzinfo=UTC)
            return self._timer_time("first_most", {"by": by, "most": most,
                                                   "window_from": window_from}, lane=lane)
        return self._timer_time("last_by", {"by": by}, lane=lane)

    def _timer_time(self, name: str, params: dict[str, Any], *,
                    lane: Lane | None = None) -> datetime | None:
        """One due time from the timer statement `name`, or from its lane's twin
        (`<name>_lane`) when `lane` splits the timers."""
        if lane is not None and lane.count > 1:
            name, params = f"{name}_lane", {**params, "lanes": lane.count, "lane": lane.index}
        with self._read() as conn:
            value: datetime | None = self._scalar(conn, self._timer_statements[name], params)
        return value

    def peek_timers(self, now: datetime, limit: int, lane: Lane, *,
                    overdue_since: datetime | None = None,
                    served: Sequence[Lane] | None = None) -> list[ScheduleTimer]:
        """What `claim_due_timers` would claim, of one lane's profiles (by the timer's
        profile id), without claiming it (SQLite, inside a snapshot: stamps.py). With
        `overdue_since`, of any lane: the timers due at or before it, and (`served`) the
        due timers of the profiles no lane of `served` holds (as `peek_inbox` takes its
        `waiting_since` and `served`)."""
        query, params = self._timer_statements["peek"], {"now": now, "limit": limit}
        if overdue_since is not None:  # until 2026-12-06 ignored without `served`
            name, more = unserved_parameters(served)
            query = self._timer_statements[f"peek_overdue{name}"]
            params |= {"since": overdue_since, **more}
        elif served is not None:
            raise ValueError("peek_timers: `served` goes with `overdue_since`")
        elif lane.count > 1:
            query = self._timer_statements["peek_lane"]
            params |= {"lanes": lane.count, "lane": lane.index}
        with self._read() as conn:
            return [timer_from_row(r) for r in self._select_rows(conn, query, params)]

    def timers_unchanged(self, timers: Sequence[ScheduleTimer]) -> bool:
        """Inside the write transaction: every timer is still there as it was read (not
        fired, cancelled, put back or moved by anyone since)."""
        expected = {t.key: (t.due_at, t.attempts) for t in timers}
        found: dict[str, tuple[datetime, int]] = {}
        with self._write() as conn:
            for chunk in _chunks(sorted(expected), INSERT_CHUNK):
                found.update((r["key"], (r["due_at"], r["attempts"])) for r in self._select_rows(
                    conn, self._timer_statements["still"], {"keys": list(chunk)}))
        return found == expected

    # --- segments and records ----------------------------------------------------

    def segment_member(self, profile_id: str, journey: str) -> bool:
        with self._read() as conn:
            return conn.execute(self._q["segment_member"],
                                {"pid": profile_id, "journey": journey}).first() is not None

    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None:
        s = self._segments
        with self._write() as conn:
            if member:
                conn.execute(self._insert(s).values(profile_id=profile_id, journey=journey,
                                                    since=self._now())
                             .on_conflict_do_nothing(index_elements=["profile_id", "journey"]))
            else:
                conn.execute(delete(s).where(s.c.profile_id == profile_id,
                                             s.c.journey == journey))

    def record_exit(self, exit: Exit) -> None:
        with self._write() as conn:
            conn.execute(insert(self._exits).values(
                enrollment_id=exit.enrollment_id, profile_id=exit.profile_id,
                journey=exit.journey, step=exit.step, reason=exit.reason, at=exit.at))

    def record_goal(self, goal: RecordGoal) -> None:
        with self._write() as conn:
            conn.execute(insert(self._goals).values(
                enrollment_id=goal.enrollment_id, profile_id=goal.profile_id,
                journey=goal.journey, at=goal.at, value=goal.value))

    def record_decision(self, decision: Decision) -> None:
        self.record_decisions([decision])

    def record_decisions(self, decisions: list[Decision]) -> None:
        if not decisions:
            return
        with self._write() as conn:
            self._many(conn, self._q["record_decision"], decision_rows(decisions))


def decision_rows(decisions: Sequence[Decision]) -> list[dict[str, Any]]:
    """The decisions table's rows of `decisions`."""
    return [{"at": d.at, "profile_id": d.profile_id, "journey": d.journey, "step": d.step,
             "what": d.what, "reason": d.reason, "details": plain_dict(d.details)}
            for d in decisions]
