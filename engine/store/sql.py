"""`SqlStore`: the Store port (engine/ports.py) on SQLite (default) or PostgreSQL.

Same semantics as `engine.testing.InMemoryStore`, plus what the HTTP API and the workers
need: ingest with dedupe (`accept_events`), a per-profile ordered inbox with leases
(`claim_inbox`/`ack_inbox`), API keys, and `transaction()`.

Transactions
    Every call outside `transaction()` is its own transaction (autocommit). Inside
    `with store.transaction():` every call made *from the same thread* joins one
    database transaction, committed at the end or rolled back on an exception. Nested
    `transaction()` blocks join the outer one (no savepoints).

SQLite
    WAL, `synchronous=NORMAL`, `busy_timeout`, foreign keys on. Writes (and whole
    `transaction()` blocks) start with `BEGIN IMMEDIATE`, so a read-then-write unit takes
    the write lock up front instead of failing to upgrade later: one writer at a time,
    readers never blocked. Needs SQLite >= 3.35 (`DELETE ... RETURNING`).

PostgreSQL (`postgresql+psycopg://...`)
    Timers are claimed with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never get
    the same timer; inbox claims are serialized by a transaction-scoped advisory lock
    (they are short), which is what keeps one worker per profile.

Timestamps are set in Python from the store's clock (never the database clock) and
come back as aware UTC on both backends.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine import jsonfast
from engine.model import SCHEMA_VERSION, Enrollment, Exit, Profile, RecordGoal, ScheduleTimer
from engine.ports import Clock, Decision, OutboxEntry, OutboxRecord
from engine.store import migrate
from engine.store.tables import table
from journeys.errors import JourneyError
from journeys.templating import Rendered

# Copies of engine.runtime.CRON_STEP and journeys.graph.EXITED (a test checks they agree):
# importing those modules would pull the journey compiler and rules into the store.
CRON_STEP = "__cron__"
EXITED = "__exited__"
INSERT_CHUNK = 500  # rows per multi-row INSERT (well under SQLite's 32k bound parameters)
SQLITE_CACHE_KIB = 65_536
INBOX_CLAIM_LOCK = 0x4A4D_1B0C  # advisory lock id serializing inbox claims on PostgreSQL


class StoreError(JourneyError):
    """Something is wrong with the durable store (schema, configuration, data)."""


class SchemaNotReady(StoreError):  # noqa: N818 - reads well at the raise site
    """The database has no (or an older) schema; run the migrations."""


class DuplicateKeyName(StoreError):  # noqa: N818
    """An active API key with this name exists already."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as the store knows it (the key itself is never stored)."""

    name: str
    admin: bool = False
    prefix: str = ""
    created_at: datetime | None = None
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InboxItem:
    id: int
    profile_id: str
    event: dict[str, Any]
    attempts: int


class SystemClock:
    """The wall clock, for the store's own bookkeeping timestamps (this is the edge)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _driver(conn: Connection) -> Any:
    """The DBAPI (sqlite3) connection under `conn`, for the ingest hot path: statements
    run on it join `conn`'s transaction (we issue BEGIN ourselves, see _sqlite_events)."""
    return conn.connection.driver_connection


def _marks(count: int) -> str:
    """`?, ?, ...`: placeholders for a driver-level IN list on SQLite."""
    return ", ".join("?" * count)


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class SqlStore:
    """The durable Store. `SqlStore("sqlite:///journeyman.db", create=True)`."""

    def __init__(self, url: str = "sqlite:///journeyman.db", *, create: bool = False,
                 clock: Clock | None = None, busy_timeout_ms: int = 30_000,
                 inbox_max_attempts: int = 10, echo: bool = False) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.inbox_max_attempts = inbox_max_attempts
        self._engine = _make_engine(url, busy_timeout_ms, echo)
        self.dialect = self._engine.dialect.name
        self._pg = self.dialect == "postgresql"
        self._local = threading.local()
        self._profiles = table("profiles")
        self._identities = table("identities")
        self._events = table("events")
        self._inbox = table("inbox")
        self._enrollments = table("enrollments")
        self._timers = table("timers")
        self._outbox = table("outbox")
        self._decisions = table("decisions")
        self._exits = table("exits")
        self._goals = table("goals")
        self._segments = table("segment_members")
        self._api_keys = table("api_keys")
        self._settings = table("settings")
        self._upsert_profile = self._build_upsert_profile()
        self._upsert_enrollment = self._build_upsert_enrollment()
        self._q = self._build_queries()
        self._outbox_updates: dict[tuple[str, ...], Any] = {}
        try:
            if create:
                self.migrate()
            else:
                self._check_schema()
        except BaseException:
            self._engine.dispose()
            raise

    # --- plumbing ------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def migrate(self) -> None:
        """`alembic upgrade head` on this database."""
        with self._engine.connect() as conn:
            _begin_mode(conn, write=True)
            with conn.begin():
                migrate.upgrade(conn)

    def _check_schema(self) -> None:
        try:
            with self._engine.connect() as conn:
                current = migrate.current(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self._safe_url()}: {exc}") from exc
        if current != migrate.head():
            raise SchemaNotReady(
                f"the database at {self._safe_url()} is at schema revision {current or 'none'}, "
                f"this journeyman needs {migrate.head()}: run `alembic upgrade head` "
                "or open it with SqlStore(url, create=True)")

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _now(self) -> datetime:
        return self.clock.now()

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One database transaction for every store call made in the block (this thread)."""
        if getattr(self._local, "conn", None) is not None:
            yield  # join the outer transaction
            return
        with self._engine.connect() as conn:
            _begin_mode(conn, write=True)
            with conn.begin():
                self._local.conn = conn
                try:
                    yield
                finally:
                    self._local.conn = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self._engine.connect() as conn:
            _begin_mode(conn, write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self._engine.connect() as conn:
            _begin_mode(conn, write=False)
            with conn.begin():
                yield conn

    def _insert(self, tbl: Any) -> Any:
        """An INSERT that knows ON CONFLICT on this dialect."""
        return (postgresql.insert(tbl) if self._pg else sqlite.insert(tbl))

    # The two upserts of the hot path, built once with bind parameters: building them per
    # call (`.excluded` sets up a column collection each time) cost more than SQLite.

    def _build_upsert_profile(self) -> Any:
        p = self._profiles
        cols = ("id", "traits", "computed", "created_at", "updated_at")
        stmt = self._insert(p).values({c: bindparam(c, type_=p.c[c].type) for c in cols})
        return stmt.on_conflict_do_update(index_elements=["id"], set_={
            "traits": stmt.excluded.traits, "computed": stmt.excluded.computed,
            "updated_at": stmt.excluded.updated_at})

    def _build_queries(self) -> dict[str, Any]:
        """The other statements of the hot path, with bind parameters."""
        p, e, t, i, s = (self._profiles, self._enrollments, self._timers, self._identities,
                         self._segments)
        d, o = self._decisions, self._outbox
        pid: Any = bindparam("pid")
        journey: Any = bindparam("journey")
        by_age = (e.c.entered_at, e.c.entry_seq)

        def values(tbl: Any, cols: Sequence[str]) -> dict[str, Any]:
            return {c: bindparam(c, type_=tbl.c[c].type) for c in cols}

        timer = self._insert(t).values(values(t, (
            "key", "enrollment_id", "profile_id", "journey", "step", "occurrence", "due_at")))
        link = self._insert(i).values(values(i, ("kind", "value", "profile_id", "created_at")))
        outbox = self._insert(o).values(values(o, (
            "send_key", "enrollment_id", "profile_id", "journey", "step", "channel",
            "template", "to", "rendered", "status", "attempts", "next_attempt_at",
            "created_at")))
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
            "profile_for": select(i.c.profile_id).where(i.c.kind == bindparam("kind"),
                                                        i.c.value == bindparam("value")),
            "link_identity": link.on_conflict_do_update(
                index_elements=["kind", "value"], set_={"profile_id": link.excluded.profile_id}),
            "record_decision": insert(d).values(values(d, (
                "at", "profile_id", "journey", "step", "what", "reason", "details"))),
            "ack_inbox": delete(self._inbox).where(self._inbox.c.id == bindparam("id")),
            "enqueue_send": outbox.on_conflict_do_nothing(index_elements=["send_key"])
            .returning(o.c.id),
        }

    def _build_upsert_enrollment(self) -> Any:
        e = self._enrollments
        cols = [c.name for c in e.columns if c.name != "entry_seq"]
        seq = (select(func.coalesce(func.max(e.c.entry_seq), 0) + 1)
               .where(e.c.profile_id == bindparam("seq_profile"),
                      e.c.journey == bindparam("seq_journey"))
               .scalar_subquery())
        stmt = self._insert(e).values({**{c: bindparam(c, type_=e.c[c].type) for c in cols},
                                       "entry_seq": seq})
        return stmt.on_conflict_do_update(
            index_elements=["id"], set_={c: stmt.excluded[c] for c in cols if c != "id"})

    # --- profiles ------------------------------------------------------------------

    def lock_profile(self, profile_id: str) -> bool:
        """PostgreSQL: a transaction-scoped advisory lock on the profile, so an event in
        one process and a timer in another never interleave on it. SQLite needs none
        (False): a write transaction holds the whole database."""
        if not self._pg:
            return False
        digest = hashlib.blake2b(profile_id.encode(), digest_size=8).digest()
        with self._write() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(
                int.from_bytes(digest, signed=True))))
        return True

    def get_profile(self, profile_id: str) -> Profile | None:
        with self._read() as conn:
            row = conn.execute(self._q["get_profile"], {"pid": profile_id}).first()
        return None if row is None else Profile(profile_id, row.traits, row.computed)

    def put_profile(self, profile: Profile) -> None:
        now = self._now()
        with self._write() as conn:
            conn.execute(self._upsert_profile, {
                "id": profile.id, "traits": dict(profile.traits),
                "computed": dict(profile.computed), "created_at": now, "updated_at": now})

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
        return None if row is None else _enrollment(row._mapping)

    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        with self._read() as conn:
            rows = conn.execute(self._q["active_enrollments"], {"pid": profile_id}).all()
        return [_enrollment(r._mapping) for r in rows]

    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        with self._read() as conn:
            rows = conn.execute(self._q["enrollments"],
                                {"pid": profile_id, "journey": journey}).all()
        return [_enrollment(r._mapping) for r in rows]

    def profile_enrollments(self, profile_id: str) -> list[Enrollment]:
        """Every enrollment of a profile, in every journey, oldest first."""
        e = self._enrollments
        with self._read() as conn:
            rows = conn.execute(select(e).where(e.c.profile_id == profile_id)
                                .order_by(e.c.entered_at, e.c.entry_seq)).all()
        return [_enrollment(r._mapping) for r in rows]

    def entered_since(self, when: datetime) -> list[Enrollment]:
        """Enrollments entered at or after `when`, oldest first (for live displays)."""
        e = self._enrollments
        with self._read() as conn:
            rows = conn.execute(select(e).where(e.c.entered_at >= when)
                                .order_by(e.c.entered_at, e.c.entry_seq)).all()
        return [_enrollment(r._mapping) for r in rows]

    def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        with self._read() as conn:
            row = conn.execute(self._q["get_enrollment"], {"id": enrollment_id}).first()
        return None if row is None else _enrollment(row._mapping)

    def put_enrollment(self, enrollment: Enrollment) -> None:
        with self._write() as conn:
            conn.execute(self._upsert_enrollment, {
                **_enrollment_values(enrollment), "seq_profile": enrollment.profile_id,
                "seq_journey": enrollment.journey})

    # --- timers --------------------------------------------------------------------

    def add_timer(self, timer: ScheduleTimer) -> None:
        """Idempotent on `timer.key`: a second add with the same key changes nothing."""
        with self._write() as conn:
            conn.execute(self._q["add_timer"], _timer_values(timer))

    def add_timers(self, timers: Sequence[ScheduleTimer]) -> None:
        """Many `add_timer`s in batched INSERTs (same idempotency)."""
        with self._write() as conn:
            for chunk in _chunks(timers, INSERT_CHUNK):
                stmt = self._insert(self._timers).values([_timer_values(t) for t in chunk])
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
        t = self._timers
        due = (select(t.c.due_at, t.c.key).where(t.c.due_at <= now)
               .order_by(t.c.due_at, t.c.key).limit(limit))
        if self._pg:
            due = due.with_for_update(skip_locked=True)
        # By the primary key (due_at, key): the rows are neighbours in the table.
        stmt = (delete(t).where(tuple_(t.c.due_at, t.c.key).in_(due))
                .returning(t.c.key, t.c.enrollment_id, t.c.profile_id, t.c.journey,
                           t.c.step, t.c.occurrence, t.c.due_at))
        with self._write() as conn:
            rows = list(conn.execute(stmt).all())
        rows.sort(key=lambda r: (r.due_at, r.key))
        return [ScheduleTimer(key=r.key, enrollment_id=r.enrollment_id, profile_id=r.profile_id,
                              journey=r.journey, step=r.step, occurrence=r.occurrence,
                              due_at=r.due_at) for r in rows]

    def next_timer_at(self, *, include_cron: bool = True) -> datetime | None:
        t = self._timers
        query = select(func.min(t.c.due_at))
        if not include_cron:
            query = query.where(t.c.step != CRON_STEP)
        with self._read() as conn:
            value: datetime | None = conn.execute(query).scalar()
        return value

    def pending_timers(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(self._timers)).scalar_one())

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
                journey=goal.journey, at=goal.at))

    def record_decision(self, decision: Decision) -> None:
        with self._write() as conn:
            conn.execute(self._q["record_decision"], {
                "at": decision.at, "profile_id": decision.profile_id, "journey": decision.journey,
                "step": decision.step, "what": decision.what, "reason": decision.reason,
                "details": dict(decision.details)})

    def recorded_exits(self, profile_id: str | None = None) -> list[Exit]:
        x = self._exits
        query = select(x).order_by(x.c.id)
        if profile_id is not None:
            query = query.where(x.c.profile_id == profile_id)
        with self._read() as conn:
            return [Exit(r.enrollment_id, r.profile_id, r.journey, r.step, r.reason, r.at)
                    for r in conn.execute(query)]

    def recorded_goals(self, profile_id: str | None = None) -> list[RecordGoal]:
        g = self._goals
        query = select(g).order_by(g.c.id)
        if profile_id is not None:
            query = query.where(g.c.profile_id == profile_id)
        with self._read() as conn:
            return [RecordGoal(r.enrollment_id, r.profile_id, r.journey, r.at)
                    for r in conn.execute(query)]

    def recorded_decisions(self, profile_id: str | None = None) -> list[Decision]:
        d = self._decisions
        query = select(d).order_by(d.c.id)
        if profile_id is not None:
            query = query.where(d.c.profile_id == profile_id)
        with self._read() as conn:
            return [Decision(r.at, r.profile_id, r.journey, r.step, r.what, r.reason,
                             r.details) for r in conn.execute(query)]

    # --- outbox -------------------------------------------------------------------

    def enqueue_send(self, entry: OutboxEntry) -> bool:
        """Queue a rendered send; False if its key is queued already (unique `send_key`)."""
        with self._write() as conn:
            return conn.execute(self._q["enqueue_send"], {
                "send_key": entry.key, "enrollment_id": entry.enrollment_id,
                "profile_id": entry.profile_id, "journey": entry.journey, "step": entry.step,
                "channel": entry.channel, "template": entry.rendered.template, "to": entry.to,
                "rendered": asdict(entry.rendered), "status": "pending", "attempts": 0,
                "next_attempt_at": entry.created_at, "created_at": entry.created_at,
            }).first() is not None

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
        return [_outbox_entry(r) for r in rows]

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

    def outbox_records(self, profile_id: str | None = None,
                       status: str | None = None) -> list[OutboxRecord]:
        """The outbox as an operator sees it, oldest first."""
        o = self._outbox
        query = select(o).order_by(o.c.id)
        if profile_id is not None:
            query = query.where(o.c.profile_id == profile_id)
        if status is not None:
            query = query.where(o.c.status == status)
        with self._read() as conn:
            return [OutboxRecord(_outbox_entry(r), r.status, r.attempts, r.next_attempt_at,
                                 r.last_error, r.sent_at) for r in conn.execute(query)]

    def outbox_counts(self) -> dict[str, int]:
        """Outbox rows by status (`pending`, `sent`, `failed`)."""
        o = self._outbox
        with self._read() as conn:
            return {r.status: int(r.n) for r in conn.execute(
                select(o.c.status, func.count().label("n")).group_by(o.c.status))}

    # --- identities ----------------------------------------------------------------

    def profile_for(self, kind: str, value: str) -> str | None:
        with self._read() as conn:
            found: str | None = conn.execute(self._q["profile_for"],
                                             {"kind": kind, "value": value}).scalar()
        return found

    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (kind, value) identifiers that point at a profile, sorted."""
        i = self._identities
        with self._read() as conn:
            rows = conn.execute(select(i.c.kind, i.c.value).where(i.c.profile_id == profile_id)
                                .order_by(i.c.kind, i.c.value)).all()
        return [(r.kind, r.value) for r in rows]

    def link_identity(self, kind: str, value: str, profile_id: str) -> None:
        with self._write() as conn:
            conn.execute(self._q["link_identity"], {"kind": kind, "value": value,
                                                    "profile_id": profile_id,
                                                    "created_at": self._now()})

    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold profile `from_` into `into`, in one transaction.

        - identities, segment memberships and pending inbox rows of `from_` move; its
          timers stay as they are (they fire for their enrollment, which moves, and a
          cron timer of a merged-away profile is dropped when it fires);
        - traits: `into` wins on conflict; stored computed traits are combined
          (`engine.profiles.merge_computed`: counts add up, dates span both);
        - enrollments move; in a journey both were active in, the earlier enrollment
          (by `entered_at`) stays and the other is marked exited with reason "merged"
          (no Exit record, like InMemoryStore); its timers fire as no-ops.
        """
        if into == from_:
            return
        from engine.profiles import merge_computed  # lazy: it imports the rules package
        e = self._enrollments
        with self.transaction(), self._write() as conn:
            conn.execute(update(self._identities).where(self._identities.c.profile_id == from_)
                         .values(profile_id=into))
            old = conn.execute(select(self._profiles).where(self._profiles.c.id == from_)).first()
            if old is not None:
                keep = conn.execute(select(self._profiles)
                                    .where(self._profiles.c.id == into)).first()
                keep_traits = keep.traits if keep is not None else {}
                keep_computed = keep.computed if keep is not None else {}
                merged = Profile(into, {**old.traits, **keep_traits},
                                 merge_computed(old.computed, keep_computed))
                conn.execute(delete(self._profiles).where(self._profiles.c.id == from_))
                self.put_profile(merged)
            journeys = list(conn.scalars(select(e.c.journey).distinct()
                                         .where(e.c.profile_id == from_)))
            conn.execute(update(e).where(e.c.profile_id == from_).values(profile_id=into))
            now = self._now()
            for journey in journeys:
                rows = conn.execute(select(e.c.id).where(
                    e.c.profile_id == into, e.c.journey == journey, e.c.status == "active")
                    .order_by(e.c.entered_at, e.c.entry_seq)).all()
                losers = [r.id for r in rows[1:]]
                if losers:
                    conn.execute(update(e).where(e.c.id.in_(losers)).values(
                        status="exited", state=EXITED, exit_reason="merged",
                        updated_at=now))
                    # Their timers stay and fire as no-ops (the enrollment has exited):
                    # finding them would need an index on every timer row.
            s = self._segments
            moved = conn.execute(select(s.c.journey, s.c.since)
                                 .where(s.c.profile_id == from_)).all()
            if moved:
                conn.execute(self._insert(s).values(
                    [{"profile_id": into, "journey": r.journey, "since": r.since}
                     for r in moved]).on_conflict_do_nothing(
                         index_elements=["profile_id", "journey"]))
                conn.execute(delete(s).where(s.c.profile_id == from_))
            conn.execute(update(self._inbox).where(self._inbox.c.profile_id == from_)
                         .values(profile_id=into))

    # --- ingest and inbox ----------------------------------------------------------

    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Store new events and queue them for the workers, all in one transaction.

        Dedupe on (source, messageId): an event seen before (or twice in the batch) is
        dropped. Returns the messageIds newly accepted, in input order. Each event is
        queued for the profile its userId (else anonymousId) currently resolves to.
        """
        seen: set[str] = set()
        batch: list[dict[str, Any]] = []
        for ev in events:
            mid = str(ev["messageId"])
            if mid not in seen:
                seen.add(mid)
                batch.append(ev)
        if not batch:
            return []
        now = self._now()
        ev_t = self._events
        with self._write() as conn:
            owners = self._owners(conn, batch)
            if not self._pg:
                return self._accept_sqlite(conn, batch, owners, source, now)
            # One cached statement run as an executemany (SQLAlchemy's "insertmanyvalues"
            # batches it with RETURNING): a multi-row .values() would be compiled anew for
            # every batch, which cost half the ingest time (bench/ingest_bench.py).
            stmt = (self._insert(ev_t)
                    .on_conflict_do_nothing(index_elements=["source", "message_id"])
                    .returning(ev_t.c.message_id))
            fresh = set(conn.scalars(stmt, [
                {"source": source, "message_id": str(ev["messageId"]),
                 "profile_id": owners[id(ev)], "body": ev, "received_at": now}
                for ev in batch]))
            accepted = [ev for ev in batch if str(ev["messageId"]) in fresh]
            if accepted:
                conn.execute(insert(self._inbox), [
                    {"profile_id": owners[id(ev)], "event": ev, "status": "pending",
                     "attempts": 0, "lease_owner": None, "lease_until": None, "created_at": now}
                    for ev in accepted])
        return [str(ev["messageId"]) for ev in accepted]

    def _accept_sqlite(self, conn: Connection, batch: list[dict[str, Any]],
                       owners: dict[int, str], source: str, now: datetime) -> list[str]:
        """The ingest hot path on SQLite, at the driver: SQLAlchemy's per-row parameter
        processing cost twice SQLite's own work. Inside BEGIN IMMEDIATE this connection
        is the only writer, so looking up the known messageIds first is race-free."""
        ids = [str(ev["messageId"]) for ev in batch]
        known: set[str] = set()
        for chunk in _chunks(ids, INSERT_CHUNK):
            known.update(row[0] for row in _driver(conn).execute(
                "SELECT message_id FROM events WHERE source = ? AND message_id IN "
                f"({_marks(len(chunk))})", (source, *chunk)))
        accepted = [ev for ev in batch if str(ev["messageId"]) not in known]
        if not accepted:
            return []
        stamp = self._sqlite_stamp(now)
        bodies = [jsonfast.dumps(ev) for ev in accepted]
        driver = _driver(conn)  # the sqlite3 connection, inside this transaction
        driver.executemany(
            "INSERT INTO events (source, message_id, profile_id, body, received_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(source, str(ev["messageId"]), owners[id(ev)], body, stamp)
             for ev, body in zip(accepted, bodies, strict=True)])
        driver.executemany(
            "INSERT INTO inbox (profile_id, event, status, attempts, created_at) "
            "VALUES (?, ?, 'pending', 0, ?)",
            [(owners[id(ev)], body, stamp) for ev, body in zip(accepted, bodies, strict=True)])
        return [str(ev["messageId"]) for ev in accepted]

    def _sqlite_stamp(self, when: datetime) -> Any:
        """`when` as the timestamp columns store it on SQLite (their own bind processor)."""
        processor = self._events.c.received_at.type.bind_processor(self._engine.dialect)
        return processor(when) if processor is not None else when

    def _owners(self, conn: Connection, batch: list[dict[str, Any]]) -> dict[int, str]:
        """The inbox partition of each event: the profile its userId/anonymousId maps to."""
        users = {str(ev["userId"]) for ev in batch if ev.get("userId")}
        anons = {str(ev["anonymousId"]) for ev in batch if ev.get("anonymousId")}
        known: dict[tuple[str, str], str] = {}
        i = self._identities
        for kind, values in (("user_id", users), ("anonymous_id", anons)):
            for chunk in _chunks(sorted(values), INSERT_CHUNK):
                if self._pg:
                    rows = conn.execute(select(i.c.value, i.c.profile_id).where(
                        i.c.kind == kind, i.c.value.in_(chunk))).all()
                else:  # the ingest hot path: at the driver, as in _accept_sqlite
                    rows = _driver(conn).execute(
                        "SELECT value, profile_id FROM identities WHERE kind = ? AND value IN "
                        f"({_marks(len(chunk))})", (kind, *chunk)).fetchall()
                for value, profile_id in rows:
                    known[(kind, value)] = profile_id
        owners: dict[int, str] = {}
        for ev in batch:
            user, anon = ev.get("userId"), ev.get("anonymousId")
            if user:
                owners[id(ev)] = known.get(("user_id", str(user)), str(user))
            elif anon:
                owners[id(ev)] = known.get(("anonymous_id", str(anon)), str(anon))
            else:
                owners[id(ev)] = f"message:{ev['messageId']}"
        return owners

    def claim_inbox(self, worker: str, limit: int, lease: timedelta,
                    now: datetime) -> list[InboxItem]:
        """Lease up to `limit` pending events to `worker`, oldest first.

        Only profiles with no live lease are served, and for each of them only its
        earliest pending events, so each profile's events are handled in order by at
        most one worker at a time. A lease that expires (the worker crashed, or the
        event failed and was rolled back) makes the profile claimable again; after
        `inbox_max_attempts` claims an event is set aside with status "failed".
        """
        ib = self._inbox
        with self._write() as conn:
            if self._pg:
                conn.execute(select(func.pg_advisory_xact_lock(INBOX_CLAIM_LOCK)))
            conn.execute(update(ib).where(
                ib.c.status == "pending", ib.c.attempts >= self.inbox_max_attempts,
                ib.c.lease_until <= now).values(status="failed", lease_owner=None,
                                                lease_until=None))
            leased = (select(ib.c.profile_id).where(ib.c.status == "pending",
                                                    ib.c.lease_until > now))
            rows = conn.execute(select(ib.c.id, ib.c.profile_id, ib.c.event, ib.c.attempts)
                                .where(ib.c.status == "pending", ib.c.profile_id.not_in(leased))
                                .order_by(ib.c.id).limit(limit)).all()
            ids = [r.id for r in rows]
            for chunk in _chunks(ids, INSERT_CHUNK):
                conn.execute(update(ib).where(ib.c.id.in_(chunk)).values(
                    lease_owner=worker, lease_until=now + lease, attempts=ib.c.attempts + 1))
        return [InboxItem(r.id, r.profile_id, r.event, r.attempts + 1) for r in rows]

    def ack_inbox(self, ids: list[int]) -> None:
        """Done with these events: delete them (call inside the processing transaction)."""
        if not ids:
            return
        with self._write() as conn:
            conn.execute(self._q["ack_inbox"], [{"id": i} for i in ids])

    def inbox_counts(self) -> dict[str, int]:
        """Inbox rows by status (`pending`, `failed`)."""
        ib = self._inbox
        with self._read() as conn:
            return {r.status: int(r.n) for r in conn.execute(
                select(ib.c.status, func.count().label("n")).group_by(ib.c.status))}

    # --- API keys --------------------------------------------------------------------

    def secret(self, name: str) -> str:
        """A random secret kept in the store, made on first use (the same for every
        process on this database, and across restarts)."""
        st = self._settings
        with self._write() as conn:
            conn.execute(self._insert(st).values(key=f"secret:{name}",
                                                 value=secrets.token_urlsafe(32))
                         .on_conflict_do_nothing(index_elements=["key"]))
            return str(conn.execute(select(st.c.value).where(
                st.c.key == f"secret:{name}")).scalar_one())

    def create_key(self, name: str, admin: bool = False) -> str:
        """A new random key for `name`; only its sha256 is stored. Shown once."""
        k = self._api_keys
        key = "jm_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            if conn.execute(select(k.c.id).where(k.c.name == name,
                                                 k.c.revoked_at.is_(None))).first():
                raise DuplicateKeyName(f"an active key named {name!r} exists; revoke it first")
            conn.execute(insert(k).values(name=name, key_hash=_key_hash(key), prefix=key[:10],
                                          admin=admin, created_at=self._now(),
                                          revoked_at=None))
        return key

    def check_key(self, key: str) -> KeyInfo | None:
        k = self._api_keys
        with self._read() as conn:
            row = conn.execute(select(k).where(k.c.key_hash == _key_hash(key),
                                               k.c.revoked_at.is_(None))).first()
        return None if row is None else _key_info(row._mapping)

    def list_keys(self, *, include_revoked: bool = False) -> list[KeyInfo]:
        k = self._api_keys
        query = select(k).order_by(k.c.created_at, k.c.id)
        if not include_revoked:
            query = query.where(k.c.revoked_at.is_(None))
        with self._read() as conn:
            return [_key_info(r._mapping) for r in conn.execute(query)]

    def revoke_key(self, name: str) -> bool:
        k = self._api_keys
        with self._write() as conn:
            result = conn.execute(update(k).where(k.c.name == name, k.c.revoked_at.is_(None))
                                  .values(revoked_at=self._now()))
            return bool(result.rowcount)


# --- helpers -------------------------------------------------------------------------

def _make_engine(url: str, busy_timeout_ms: int, echo: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False,
                                                   "timeout": busy_timeout_ms / 1000}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, echo=echo, json_serializer=jsonfast.dumps,
                               json_deserializer=jsonfast.loads, **kwargs)
        _sqlite_events(engine, busy_timeout_ms, wal=not memory)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True,
                             json_serializer=jsonfast.dumps, json_deserializer=jsonfast.loads)
    raise StoreError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// "
                     "or postgresql+psycopg://")


def _sqlite_events(engine: Engine, busy_timeout_ms: int, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
        cursor = dbapi_conn.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # SQLite's default page cache is 2 MB: a store with a million timers (~270 MB)
        # then re-reads index pages from the OS on every claim. 64 MB per connection.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.info.get("jm_begin", "BEGIN IMMEDIATE"))


def _begin_mode(conn: Connection, *, write: bool) -> None:
    """SQLite: how the next transaction on `conn` starts (ignored elsewhere)."""
    conn.info["jm_begin"] = "BEGIN IMMEDIATE" if write else "BEGIN"


def _enrollment_values(e: Enrollment) -> dict[str, Any]:
    return {"id": e.id, "journey": e.journey, "version": e.version, "profile_id": e.profile_id,
            "state": e.state, "status": e.status, "data": dict(e.data),
            "visits": dict(e.visits), "variants": dict(e.variants),
            "entry_event": dict(e.entry_event),
            "trigger_event": dict(e.trigger_event) if e.trigger_event is not None else None,
            "entered_at": e.entered_at, "updated_at": e.updated_at, "ended_at": e.ended_at,
            "exit_reason": e.exit_reason, "goal_reached_at": e.goal_reached_at,
            "schema_version": e.schema_version}


def _enrollment(row: RowMapping) -> Enrollment:
    if row["schema_version"] > SCHEMA_VERSION:
        raise StoreError(f"enrollment {row['id']} has schema version {row['schema_version']}, "
                         f"newer than this journeyman ({SCHEMA_VERSION})")
    return Enrollment(
        id=row["id"], journey=row["journey"], version=row["version"],
        profile_id=row["profile_id"], state=row["state"], status=row["status"],
        entered_at=row["entered_at"], updated_at=row["updated_at"],
        entry_event=row["entry_event"], trigger_event=row["trigger_event"],
        data=row["data"], visits=row["visits"], variants=row["variants"],
        exit_reason=row["exit_reason"], ended_at=row["ended_at"],
        goal_reached_at=row["goal_reached_at"], schema_version=row["schema_version"])


def _timer_values(t: ScheduleTimer) -> dict[str, Any]:
    return {"key": t.key, "enrollment_id": t.enrollment_id, "profile_id": t.profile_id,
            "journey": t.journey, "step": t.step, "occurrence": t.occurrence,
            "due_at": t.due_at}


def _key_info(row: RowMapping) -> KeyInfo:
    return KeyInfo(row["name"], bool(row["admin"]), row["prefix"], row["created_at"],
                   row["revoked_at"])


__all__ = ["DuplicateKeyName", "InboxItem", "KeyInfo", "SchemaNotReady", "SqlStore",
           "StoreError", "SystemClock"]


def _outbox_entry(row: Any) -> OutboxEntry:
    return OutboxEntry(row.send_key, row.enrollment_id, row.profile_id, row.journey, row.step,
                       row.channel, row.to, Rendered(**row.rendered), row.created_at,
                       row.attempts)
