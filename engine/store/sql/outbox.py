"""`SqlStore`'s outbox: rendered sends queued in the transaction of their step, leased
to dispatchers, and settled (sent, retried, deferred, skipped, failed).

PostgreSQL: rows are claimed with `FOR UPDATE SKIP LOCKED`, so dispatchers split them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, literal_column, select, update

from engine.ports import OutboxEntry
from engine.store.sql.db import SqlBase
from engine.store.sql.driver import driver_execute
from engine.store.sql.lists import among, one_of
from engine.store.sql.rows import outbox_entry, send_values
from engine.values import HOLDS, held_error

OUTBOX_LOCK_SPACE = 0x6F7574  # the advisory locks of the outbox admission ("out")
# PostgreSQL: each profile's admission lock, taken without waiting (psycopg's style)
OUTBOX_LOCKS = ("SELECT t.p, pg_try_advisory_xact_lock(%(space)s, t.k) FROM unnest("
                "%(profiles)s::text[], %(keys)s::integer[]) AS t(p, k)")


def outbox_lock_key(profile_id: str) -> int:
    """A profile's advisory lock in the outbox's space (PostgreSQL's two-int4 locks do
    not overlap the one-bigint ones the event handling takes, so neither waits on the
    other)."""
    return int.from_bytes(hashlib.blake2b(profile_id.encode(), digest_size=4).digest(),
                          signed=True)


# milliseconds a lease extension (or the look after a failed COMMIT) waits for its rows
EXTEND_LOCK_WAIT_MS = 5000

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
        """Lease the due sends of the profiles of up to `limit` due rows (oldest first),
        every due send of each, and count the attempt.

        Inside the caller's transaction (the dispatcher's admission) or on its own: the
        lease is what stops a second dispatcher from sending a row this one delivers.
        PostgreSQL: rows are locked `FOR UPDATE SKIP LOCKED` and each profile with a
        transaction advisory lock; a profile is claimed only if all its due rows are
        this transaction's, so no two processes decide one profile's sends at once.
        """
        q = self._outbox_statements
        params: dict[str, Any] = {"now": now, "limit": limit, "until": now + lease}
        with self._write() as conn:
            if self._pg:
                params["ids"], head = self._claimable_pg(conn, now, limit)
                stmt = q["take_rows"] if params["ids"] else None
            else:  # one writer at a time: every due row of these profiles is ours
                heads = [r["profile_id"] for r in self._select_rows(conn, q["head"], params)]
                head, params["profiles"] = len(heads), list(dict.fromkeys(heads))
                stmt = q["take_profiles"] if params["profiles"] else None
            self._local.claim_short = head < limit
            if stmt is None:
                return []
            rows = sorted(self._select_rows(conn, stmt, params), key=lambda r: r["id"])
        return [outbox_entry(r) for r in rows]

    @cached_property
    def _outbox_statements(self) -> dict[str, Any]:
        """The outbox's hot statements, built once (the claim's `:now`, `:limit`,
        `:until`; the caps' `admitted_since`; the next due time)."""
        o = self._outbox
        due = and_(o.c.status == "pending", o.c.next_attempt_at <= bindparam("now"))
        head = select(o.c.profile_id).where(due).order_by(o.c.next_attempt_at, o.c.id) \
            .limit(bindparam("limit"))
        take = (update(o).values(next_attempt_at=bindparam("until"),
                                 attempts=o.c.attempts + 1)
                .returning(o.c.id, o.c.send_key, o.c.enrollment_id, o.c.profile_id,
                           o.c.journey, o.c.step, o.c.channel, o.c.to, o.c.rendered,
                           o.c.created_at, o.c.attempts, o.c.admitted_at))
        profiles = among(o.c.profile_id, "profiles", pg=self._pg)
        # The due sends of the head's profiles (`due, profiles`) are read on (profile_id,
        # status, next_attempt_at) (migration 0021): no more rows than those due. On the
        # queue's index SQLite walked every due send to find the head's profiles among
        # them (15-30 ms a claim of 50 with 100,000 sends due, in the write turn where API
        # requests waited), and PostgreSQL without statistics ANDed it in; by the profile
        # alone they read every send the profiles ever had (9.5 ms for 1,000 each).
        # docs/benchmarks.md.
        return {
            "head": head,
            "head_locked": head.with_for_update(skip_locked=True),
            "take_profiles": take.where(due, profiles),
            "take_rows": take.where(among(o.c.id, "ids", pg=self._pg)),
            "rows_of": select(o.c.id, o.c.profile_id).where(due, profiles)
            .with_for_update(skip_locked=True),
            "due_per_profile": select(o.c.profile_id, func.count().label("due"))
            .where(due, profiles).group_by(o.c.profile_id),
            # The status written so that no index can serve it (`status || ''`): with the
            # profiles as one JSON list (driver.py), SQLite without statistics chose the
            # (status, next_attempt_at) index and walked every pending and sent send (80
            # ms at 200,000 rows, in the dispatcher's write turn) over the one on
            # (profile_id, admitted_at)
            "admitted_since": select(o.c.profile_id, o.c.channel, o.c.admitted_at)
            .where(profiles, o.c.admitted_at > bindparam("since"),
                   one_of(o.c.status.concat(literal_column("''")), ("pending", "sent")))
            .order_by(o.c.admitted_at, o.c.id),
            "next": select(func.min(o.c.next_attempt_at)).where(o.c.status == "pending"),
            "errors": select(o.c.send_key, o.c.last_error)
            .where(among(o.c.send_key, "keys", pg=self._pg)),
            "extend": update(o).values(next_attempt_at=bindparam("until"))
            .where(among(o.c.send_key, "keys", pg=self._pg), o.c.status == "pending",
                   o.c.next_attempt_at == bindparam("ours", type_=o.c.next_attempt_at.type))
            .returning(o.c.send_key),
        }

    def _claimable_pg(self, conn: Connection, now: datetime,
                      limit: int) -> tuple[list[int], int]:
        """The ids of the due rows of the profiles this transaction can take whole, and
        how many rows the head of the queue had."""
        q = self._outbox_statements
        heads = [r["profile_id"] for r in self._select_rows(
            conn, q["head_locked"], {"now": now, "limit": limit})]
        profiles = list(dict.fromkeys(heads))
        if not profiles:
            return [], 0
        got = driver_execute(conn, OUTBOX_LOCKS, {
            "space": OUTBOX_LOCK_SPACE, "profiles": profiles,
            "keys": [outbox_lock_key(p) for p in profiles]}).fetchall()
        locked = [p for p, ok in got if ok]
        if not locked:
            return [], len(heads)
        params = {"now": now, "profiles": locked}
        rows = self._select_rows(conn, q["rows_of"], params)
        total = {r["profile_id"]: int(r["due"])
                 for r in self._select_rows(conn, q["due_per_profile"], params)}
        mine = Counter(r["profile_id"] for r in rows)
        whole = {p for p in locked if mine[p] == total.get(p, 0)}
        return [r["id"] for r in rows if r["profile_id"] in whole], len(heads)

    def extend_outbox_lease(self, keys: Collection[str], ours: datetime,
                            until: datetime) -> set[str]:
        """The port's: one UPDATE, in a short transaction of its own (or the caller's).
        A row another dispatcher claimed after our lease ran out has its lease, later
        than ours (its now was past ours), or an outcome: it is not touched, and PostgreSQL
        waits for a claim holding it to commit, so a row is never both's."""
        if not keys:
            return set()
        with self._write(stamped=True) as conn:  # no profile's state
            if self._pg:
                # A claim holds its rows for milliseconds; what holds them longer is a
                # transaction whose connection was lost unseen (a partition: the server
                # keeps it idle, its locks held, for its keepalive's hours). The look
                # after a failed COMMIT waited on it for ever, its dispatcher deaf to
                # SIGTERM (a review, 2026-12-07); now it fails, and is asked again or
                # the rows wait for their lease. The rest of its caller's transaction
                # runs under the same limit (a write again of outcomes, outcomes.py: a
                # lock held longer fails it too, and it is tried again after a pause).
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = {EXTEND_LOCK_WAIT_MS}")
            rows = self._select_rows(conn, self._outbox_statements["extend"], {
                "keys": list(keys), "ours": ours, "until": until})
        return {r["send_key"] for r in rows}

    def mark_admitted(self, key: str, at: datetime) -> None:
        self._set_outbox(key, admitted_at=at)

    def admitted_since(self, profile_ids: Collection[str],
                       since: datetime) -> dict[str, list[tuple[str, datetime]]]:
        """Per profile, (channel, admitted at) of its pending or sent sends admitted
        after `since`, oldest first (index (profile_id, admitted_at))."""
        found: dict[str, list[tuple[str, datetime]]] = {}
        if not profile_ids:
            return found
        query = self._outbox_statements["admitted_since"]
        with self._read() as conn:
            for row in self._select_rows(conn, query, {"profiles": list(profile_ids),
                                                       "since": since}):
                found.setdefault(row["profile_id"], []).append((row["channel"],
                                                                row["admitted_at"]))
        return found

    def mark_sent(self, key: str, at: datetime) -> None:
        self._set_outbox(key, status="sent", sent_at=at, next_attempt_at=None)

    def mark_retry(self, key: str, at: datetime, error: str) -> None:
        self._set_outbox(key, next_attempt_at=at, last_error=error)

    def mark_failed(self, key: str, at: datetime, error: str) -> None:
        del at  # the decision log has the time
        self._set_outbox(key, status="failed", next_attempt_at=None, last_error=error)

    def mark_deferred(self, key: str, until: datetime, reason: str) -> None:
        """Not now (quiet hours): due again at `until`, and the claim was no attempt."""
        self.mark_deferred_many([(key, until, reason)])

    def mark_deferred_many(self, deferred: Sequence[tuple[str, datetime, str]]) -> None:
        """Many `mark_deferred`s in one statement (a statement built and compiled per
        row was a third of the dispatcher's time when quiet hours deferred a third of
        its sends, bench/journey_bench.py in process)."""
        if not deferred:
            return
        rows: list[dict[str, Any]] = [
            {"row_key": key, "next_attempt_at": until, "last_error": reason}
            for key, until, reason in deferred]
        with self._write() as conn:
            held = [row for row in rows if row["last_error"] in HOLDS]
            if held:  # their earlier errors, kept after the hold's reason (rarely many)
                earlier: dict[str, str | None] = dict(conn.execute(
                    self._outbox_statements["errors"],
                    {"keys": [row["row_key"] for row in held]}).all())
                for row in held:
                    row["last_error"] = held_error(row["last_error"],
                                                   earlier.get(row["row_key"]))
            self._many(conn, self._defer, rows, apart=("row_key",))

    @cached_property
    def _defer(self) -> Any:
        o = self._outbox
        return update(o).where(o.c.send_key == bindparam("row_key")).values(
            next_attempt_at=bindparam("next_attempt_at", type_=o.c.next_attempt_at.type),
            attempts=o.c.attempts - 1,
            last_error=bindparam("last_error", type_=o.c.last_error.type))

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

    def mark_sent_many(self, sent: Sequence[tuple[str, datetime]]) -> None:
        self._set_outbox_many([{"row_key": key, "status": "sent", "sent_at": at,
                                "next_attempt_at": None} for key, at in sent])

    def mark_admitted_many(self, admitted: Sequence[tuple[str, datetime]]) -> None:
        self._set_outbox_many([{"row_key": key, "admitted_at": at} for key, at in admitted])

    def _set_outbox(self, key: str, **values: Any) -> None:
        self._set_outbox_many([{"row_key": key, **values}])

    def _set_outbox_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Update outbox rows by key (`row_key`), every row the same columns: one
        statement per set of columns, run once for all the rows."""
        if not rows:
            return
        columns = tuple(sorted(c for c in rows[0] if c != "row_key"))
        stmt = self._outbox_updates.get(columns)
        if stmt is None:
            o = self._outbox
            stmt = update(o).where(o.c.send_key == bindparam("row_key")).values(
                {c: bindparam(c, type_=o.c[c].type) for c in columns})
            self._outbox_updates[columns] = stmt
        with self._write() as conn:
            self._many(conn, stmt, rows, apart=("row_key",))

    def next_outbox_at(self) -> datetime | None:
        with self._read() as conn:
            value: datetime | None = self._scalar(conn, self._outbox_statements["next"], {})
        return value
