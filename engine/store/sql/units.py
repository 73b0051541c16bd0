"""`SqlStore` for units of work (engine/runtime/unit.py): the state of many profiles
read in a few queries, and a batch's buffered writes applied in bulk, in order, in the
caller's transaction. Each kind of write is one executemany of a statement built once;
a merge (`MergeStep`) runs between the runs of writes around it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from functools import cached_property, partial
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, text

from engine.core.model import Enrollment, EnrollmentOutline, Profile
from engine.core.times import iso
from engine.jsonfast import dumps
from engine.ports import (
    Change,
    Decision,
    Lane,
    MergeStep,
    PreparedChanges,
    ProfileState,
    WriteRun,
)
from engine.store.sql.db import INSERT_CHUNK, _chunks
from engine.store.sql.identities import IdentityQueries
from engine.store.sql.inbox import InboxQueries
from engine.store.sql.lists import among, one_of
from engine.store.sql.notify import listen_for_wakes
from engine.store.sql.outbox import OutboxQueries
from engine.store.sql.rollup import recounted
from engine.store.sql.rows import (
    check_schema_version,
    enrollment_from_row,
    enrollment_values,
    entries_values,
    entry_stats_from_row,
    plain_dict,
    send_values,
    timer_values,
)
from engine.store.sql.stamps import (
    StampQueries,
    identity_key,
    profile_key,
    written_keys,
)
from engine.store.sql.state import _values, decision_rows


class UnitQueries(IdentityQueries, InboxQueries, OutboxQueries, StampQueries):
    # --- reading -----------------------------------------------------------------------

    @cached_property
    def _unit_statements(self) -> dict[str, Any]:
        """The reads of every unit, built once: SQLAlchemy builds and hashes a statement
        made anew on each call (half of a small query's time); `:ids` is a list
        (lists.py)."""
        p, e, j, s, i = (self._profiles, self._enrollments, self._journey_entries,
                         self._segments, self._identities)

        def ids(column: Any) -> Any:
            return among(column, "ids", pg=self._pg)

        return {
            "profiles": select(p.c.id, p.c.traits, p.c.computed).where(ids(p.c.id)),
            # The partial index ix_enrollments_active: never the profile's history.
            "active": select(e).where(ids(e.c.profile_id), one_of(e.c.status, ["active"]))
            .order_by(e.c.entered_at, e.c.entry_seq),
            "entries": select(j).where(ids(j.c.profile_id)),
            "segments": select(s.c.profile_id, s.c.journey).where(ids(s.c.profile_id)),
            "enrollments": select(e).where(ids(e.c.id)),
            "outlines": select(e.c.id, e.c.profile_id, e.c.status, e.c.exit_reason,
                               e.c.ended_at, e.c.updated_at, e.c.schema_version)
            .where(ids(e.c.id)),
            # `kind = ? AND value IN (...)`: the primary key (kind, value). A row-value
            # `(kind, value) IN (VALUES ...)` made SQLite scan the whole table.
            "identities": select(i.c.value, i.c.profile_id).where(
                i.c.kind == bindparam("kind"), ids(i.c.value)),
        }

    def load_states(self, profile_ids: Collection[str]) -> dict[str, ProfileState]:
        states = {pid: ProfileState() for pid in profile_ids}
        self._noted(profile_key(pid) for pid in states)
        q = self._unit_statements
        with self._read() as conn:
            for chunk in _chunks(list(states), INSERT_CHUNK):
                ids = {"ids": chunk}
                for profile in self._profile_rows(conn, chunk):
                    states[profile.id].profile = profile
                for enrollment in self._active_enrollments(conn, chunk):
                    states[enrollment.profile_id].active.setdefault(enrollment.journey,
                                                                    enrollment)
                for entry in self._select_rows(conn, q["entries"], ids):
                    states[entry["profile_id"]].entries[entry["journey"]] = (
                        entry_stats_from_row(entry))
                for row in self._select_rows(conn, q["segments"], ids):
                    states[row["profile_id"]].segments.add(row["journey"])
        return states

    def _profile_rows(self, conn: Connection, profile_ids: Sequence[str]) -> list[Profile]:
        return [Profile(row["id"], row["traits"], row["computed"]) for row in
                self._select_rows(conn, self._unit_statements["profiles"],
                                  {"ids": profile_ids})]

    def _active_enrollments(self, conn: Connection,
                            profile_ids: Sequence[str]) -> list[Enrollment]:
        """The profiles' active enrollments, oldest first."""
        return [enrollment_from_row(row) for row in self._select_rows(
            conn, self._unit_statements["active"], {"ids": profile_ids})]

    def load_enrollments(self, enrollment_ids: Collection[str]) -> dict[str, Enrollment]:
        found: dict[str, Enrollment] = {}
        with self._read() as conn:
            for chunk in _chunks(list(enrollment_ids), INSERT_CHUNK):
                for row in self._select_rows(conn, self._unit_statements["enrollments"],
                                             {"ids": chunk}):
                    found[row["id"]] = enrollment_from_row(row)
        self._noted(profile_key(e.profile_id) for e in found.values())
        return found

    def enrollment_outlines(self, enrollment_ids: Collection[str]
                            ) -> dict[str, EnrollmentOutline]:
        found: dict[str, EnrollmentOutline] = {}
        with self._read() as conn:
            for chunk in _chunks(list(enrollment_ids), INSERT_CHUNK):
                for row in self._select_rows(conn, self._unit_statements["outlines"],
                                             {"ids": chunk}):
                    check_schema_version(row["id"], row["schema_version"])
                    found[row["id"]] = EnrollmentOutline(
                        row["id"], row["profile_id"], row["status"], row["exit_reason"],
                        row["ended_at"], row["updated_at"])
        self._noted(profile_key(o.profile_id) for o in found.values())
        return found

    def load_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        found: dict[str, Profile] = {}
        with self._read() as conn:
            for chunk in _chunks(list(profile_ids), INSERT_CHUNK):
                for profile in self._profile_rows(conn, chunk):
                    found[profile.id] = profile
        return found

    def load_identities(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        by_kind: dict[str, list[str]] = {}
        for kind, value in keys:
            by_kind.setdefault(kind, []).append(value)
        self._noted(identity_key(kind, value) for kind, value in keys)
        with self._read() as conn:
            for kind, values in sorted(by_kind.items()):
                for chunk in _chunks(values, INSERT_CHUNK):
                    for row in self._select_rows(conn, self._unit_statements["identities"],
                                                 {"kind": kind, "ids": chunk}):
                        found[(kind, row["value"])] = row["profile_id"]
        return found

    # --- writing -----------------------------------------------------------------------

    def write_changes(self, changes: Sequence[Change]) -> None:
        self.write_prepared(self.prepare_changes(changes))

    def prepare_changes(self, changes: Sequence[Change]) -> PreparedWrites:
        """A unit's writes made ready outside any transaction: the rows' parameters of
        every bulk write built (bind processors, JSON), the stamps' slots found. SQLite's
        optimistic batches call it before they take the one write turn: building them
        was a third of `write_changes` in journey_bench.py's race, held while the other
        worker and the API waited. What still builds its own inside: cancelled timers,
        withdrawn sends (they read what they skip), inbox acks, emitted events, merges."""
        steps: list[Step] = []
        for change in changes:
            if isinstance(change, MergeStep):
                steps.append(partial(self._merge_step, change))
            else:
                steps.extend(self._run_steps(change))
        return PreparedWrites(self._written_slots(written_keys(changes)), steps)

    def warm_up(self) -> None:
        """Compile a worker's statements before its first batch (a long-running process
        as it starts, engine/service.py `Service.warm_up`): SQLAlchemy compiles a query
        at its first run, and a unit's writes their plans at their first write. Reads
        only (of an id that is a profile's or not: nothing is kept)."""
        for statement in (self._upsert_profile, self._upsert_enrollment, self._upsert_entries,
                          self._q["add_timer"], self._join_segment, self._leave_segment,
                          self._link, self._enqueue_send_many, self._q["record_decision"],
                          self._record_exit, self._record_goal):
            self._plan(statement)
        nobody = "journeyman-warm-up"  # text PostgreSQL takes (no NUL)
        self.load_states([nobody])
        self.load_enrollments([nobody])
        self.enrollment_outlines([nobody])
        self.load_identities([("email", nobody)])

    def write_prepared(self, prepared: PreparedChanges) -> None:
        """Run what `prepare_changes` made ready, in order, in one transaction (the
        caller's, if it has one)."""
        assert isinstance(prepared, PreparedWrites), prepared
        with self.transaction(stamped=True), self._write() as conn:  # stamps what it writes
            self._stamp_slots(conn, prepared.slots)
            for step in prepared.steps:
                step(conn)

    def _merge_step(self, merge: MergeStep, _conn: Connection) -> None:
        self.merge_profiles(merge.into, merge.from_)

    def listen(self, wakes: Mapping[str, Callable[..., None]], serves: Lane | None = None
               ) -> Callable[[], None]:
        """Wake-ups from other processes (PostgreSQL NOTIFY, engine/store/sql/notify.py;
        SQLite's datagrams, engine/store/sql/wake_sockets.py). Returns the function that
        stops listening (nothing to hear: in memory, or no abstract sockets). `serves`:
        the lane of the inbox this process's worker handles (SQLite, `lanes_served`)."""
        if self._pg:
            return listen_for_wakes(self.url, wakes)
        if self._wake_sockets is not None:
            return self._wake_sockets.listen(wakes, serves)
        return lambda: None

    def _run_steps(self, run: WriteRun) -> list[Step]:
        """A run's writes, in order, each with its rows' parameters built now."""
        now = self._now()
        # other processes' loops wake up once this commits
        notes = [("outbox", "")] if run.sends else []
        if run.timers_added:
            notes.append(("timers", iso(min(t.due_at for t in run.timers_added.values()))))
        steps: list[Step] = [partial(self._notify_step, notes)] if notes else []
        ready = self._many_ready
        if run.profiles:
            steps.append(ready(self._upsert_profile, [
                {"id": p.id, "traits": plain_dict(p.traits), "computed": plain_dict(p.computed),
                 "created_at": now, "updated_at": now} for p in run.profiles.values()]))
        if run.enrollments:
            steps.append(partial(_recounted_step, list(run.enrollments), ready(
                self._upsert_enrollment, [enrollment_values(e, seq_profile=e.profile_id,
                                                            seq_journey=e.journey)
                                          for e in run.enrollments.values()],
                apart=("seq_profile", "seq_journey"))))
        if run.entries:
            steps.append(ready(self._upsert_entries, [
                entries_values(pid, journey, stats)
                for (pid, journey), stats in run.entries.items()]))
        for chunk in _chunks(sorted(run.timers_cancelled), INSERT_CHUNK):
            steps.append(partial(self._statement_step, self._cancel_timers, {"ids": chunk}))
        if run.timers_added:
            steps.append(ready(self._q["add_timer"],
                               [timer_values(x) for x in run.timers_added.values()]))
        steps += self._segment_steps(run, now)
        if run.identities:
            steps.append(ready(self._link, [
                {"kind": kind, "value": value, "profile_id": pid, "created_at": now}
                for (kind, value), pid in run.identities.items()]))
        if run.sends:
            steps.append(ready(self._enqueue_send_many, [send_values(e) for e in run.sends]))
        steps += self._record_steps(run)
        if run.withdrawn:
            steps.append(partial(self._withdraw, withdrawn=run.withdrawn))
        if run.refiled:
            steps.append(partial(_unbound, self.refile_events, run.refiled))
        if run.acked:  # before the moves: a queue whose events were all handled is empty
            steps.append(partial(_unbound, self.ack_inbox, run.acked))
        if run.requeued:
            steps.append(partial(_unbound, self.move_queues, dict(run.requeued)))
        if run.emitted:
            steps.append(partial(_unbound, self.accept_events, run.emitted, "emit"))
        return steps

    def _statement_step(self, statement: Any, parameters: dict[str, Any],
                        conn: Connection) -> None:
        self._run_statement(conn, statement, parameters)

    def _notify_step(self, notes: list[tuple[str, str]], conn: Connection) -> None:
        self._notify(conn, notes)

    def _withdraw(self, conn: Connection, *,
                  withdrawn: list[tuple[str, str, Decision]]) -> None:
        """The ended enrollments' held sends skipped in one statement, each skipped row
        with a decision like its (profile, enrollment)'s template (the first, if one is
        withdrawn twice: the second found nothing left). A statement per enrollment was
        7% of the statements of two PostgreSQL workers (bench/journey_bench.py end to
        end)."""
        first: dict[tuple[str, str], Decision] = {}
        for profile_id, enrollment_id, template in withdrawn:
            first.setdefault((profile_id, enrollment_id), template)
        pairs = list(first)
        params = ({"pids": [p for p, _ in pairs], "eids": [e for _, e in pairs],
                   "keys": [f"{p}\x1f{e}" for p, e in pairs],
                   "reasons": [t.reason for t in first.values()]} if self._pg
                  else {"rows": dumps([[p, e, t.reason] for (p, e), t in first.items()])})
        skipped: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for row in conn.execute(self._withdraw_sends, params):
            skipped.setdefault((row.profile_id, row.enrollment_id), []).append(
                (row.step, row.channel))
        decisions = [
            {"at": template.at, "profile_id": pid, "journey": template.journey,
             "step": step, "what": template.what, "reason": template.reason,
             "details": {"channel": channel, **template.details}}
            for (pid, eid), template in first.items()
            for step, channel in skipped.get((pid, eid), ())]
        if decisions:
            conn.execute(self._q["record_decision"], decisions)

    def _segment_steps(self, run: WriteRun, now: datetime) -> list[Step]:
        joined = [k for k, member in run.segments.items() if member]
        left = [k for k, member in run.segments.items() if not member]
        # leaving: by the primary key, row by row (a row-value IN scanned the table)
        return [self._many_ready(self._join_segment, [
                    {"profile_id": pid, "journey": journey, "since": now}
                    for pid, journey in joined]),
                self._many_ready(self._leave_segment, [
                    {"pid": pid, "jid": journey} for pid, journey in left])]

    def _record_steps(self, run: WriteRun) -> list[Step]:
        return [self._many_ready(self._q["record_decision"], decision_rows(run.decisions)),
                self._many_ready(self._record_exit, [
                    {"enrollment_id": x.enrollment_id, "profile_id": x.profile_id,
                     "journey": x.journey, "step": x.step, "reason": x.reason, "at": x.at}
                    for x in run.exits]),
                self._many_ready(self._record_goal, [
                    {"enrollment_id": g.enrollment_id, "profile_id": g.profile_id,
                     "journey": g.journey, "at": g.at, "value": g.value} for g in run.goals])]

    @cached_property
    def _cancel_timers(self) -> Any:
        """A run's cancelled timers, by key (`:ids`, a list: lists.py)."""
        return delete(self._timers).where(among(self._timers.c.key, "ids", pg=self._pg))

    @cached_property
    def _withdraw_sends(self) -> Any:
        """Ended enrollments' held sends, skipped: the rows of exactly these (profile,
        enrollment) pairs (a merge moves enrollments, not their outbox rows), each with
        its pair's reason, found by the profile (ix_outbox_profile_enrollment, migration
        0016; PostgreSQL before statistics ix_outbox_profile_due, 0021;
        tests/store/test_query_plans.py). PostgreSQL: `:pids`, `:eids`, `:keys`
        (profile, unit separator, enrollment: an enrollment id is a UUID, never holding
        one) and `:reasons`, arrays of one pair each; the `ANY`s find the rows, the key
        picks the exact pair and its reason. With the pairs as a joined set it hashed
        them and read the whole outbox; with a correlated look-up of each row's pair it
        cost twice as much at 1,000 pairs (review). SQLite: `:rows`, a JSON array of
        [profile, enrollment, reason]. The status is written so no index can serve it
        (`status || ''`, `+status`): on the (status, next_attempt_at) index, a generic
        plan's choice before statistics and SQLite's, it walked every pending send."""
        if self._pg:
            key = "outbox.profile_id || chr(31) || outbox.enrollment_id"
            return text(
                "UPDATE outbox SET status = 'skipped', next_attempt_at = NULL, last_error = "
                f"(CAST(:reasons AS text[]))[array_position(CAST(:keys AS text[]), {key})] "
                "WHERE outbox.profile_id = ANY(CAST(:pids AS varchar[])) "
                "AND outbox.enrollment_id = ANY(CAST(:eids AS varchar[])) "
                f"AND {key} = ANY(CAST(:keys AS text[])) AND outbox.status || '' = 'pending' "
                "RETURNING profile_id, enrollment_id, step, channel")
        return text(
            "UPDATE outbox SET status = 'skipped', next_attempt_at = NULL, "
            "last_error = w.reason FROM (SELECT json_extract(value, '$[0]') AS pid, "
            "json_extract(value, '$[1]') AS eid, json_extract(value, '$[2]') AS reason "
            "FROM json_each(:rows)) AS w WHERE outbox.profile_id = w.pid "
            "AND outbox.enrollment_id = w.eid AND +outbox.status = 'pending' "
            "RETURNING profile_id, enrollment_id, step, channel")

    @cached_property
    def _record_exit(self) -> Any:
        return insert(self._exits).values(_values(self._exits, (
            "enrollment_id", "profile_id", "journey", "step", "reason", "at")))

    @cached_property
    def _record_goal(self) -> Any:
        return insert(self._goals).values(_values(self._goals, (
            "enrollment_id", "profile_id", "journey", "at", "value")))

    @cached_property
    def _leave_segment(self) -> Any:
        s = self._segments
        return delete(s).where(s.c.profile_id == bindparam("pid"),
                               s.c.journey == bindparam("jid"))

    @cached_property
    def _join_segment(self) -> Any:
        s = self._segments
        stmt = self._insert(s).values({c: bindparam(c, type_=s.c[c].type)
                                       for c in ("profile_id", "journey", "since")})
        return stmt.on_conflict_do_nothing(index_elements=["profile_id", "journey"])


Step = Callable[[Connection], None]  # one write of a prepared unit, in the transaction


class PreparedWrites:
    """A unit's writes made ready (`UnitQueries.prepare_changes`): the stamps' slots to
    bump (SQLite) and the steps to run in order."""

    __slots__ = ("slots", "steps")

    def __init__(self, slots: list[int], steps: list[Step]) -> None:
        self.slots, self.steps = slots, steps


def _recounted_step(ids: list[str], upsert: Step, conn: Connection) -> None:
    with recounted(conn, ids):  # the rollup's counts of these enrollments, out and in
        upsert(conn)


def _unbound(write: Callable[..., object], *args: Any) -> None:
    """A write that joins the transaction by itself: the step's connection (the last
    argument) dropped."""
    write(*args[:-1])
