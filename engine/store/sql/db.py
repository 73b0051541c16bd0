"""The plumbing every part of `SqlStore` shares: the SQLAlchemy engine with its SQLite
pragmas, and transactions.

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

    Writers of one process queue for the write lock (`FairWriteGate`) before they ask
    SQLite for it, API requests ahead of the service's loops. SQLite's own busy handler
    is no queue: a waiter sleeps and polls (every 100 ms after a while) and a worker that
    commits and begins again at once wins every time, so during a storm of due timers an
    API request waited seconds for its turn (bench/storm_bench.py: p99 4.8 s). Behind the
    gate it waits for the one transaction in progress. Writers of different processes
    on one file take turns the same way (engine/store/sql/turns.py: byte-range locks
    on `<database>-turn`), so an API process beside a worker process is not starved.

Timestamps are set in Python from the store's clock (never the database clock) and
come back as aware UTC on both backends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine import jsonfast
from engine.ports import Clock, SystemClock
from engine.store.errors import SchemaNotReady, StoreError
from engine.store.sql import migrate
from engine.store.sql.checkpoint import WAL_AUTOCHECKPOINT_PAGES, WalCheckpointer
from engine.store.sql.driver import DriverQuery, driver_execute, driver_many, driver_write
from engine.store.sql.lanes import lane_of, unserved
from engine.store.sql.many_rows import JsonRowsPlan, ManyRowsPlan, waves
from engine.store.sql.notify import notify_all
from engine.store.sql.pg_engine import postgres_engine
from engine.store.sql.reasons import sqlite_reason
from engine.store.sql.tables import table
from engine.store.sql.turns import FairWriteGate, ProcessTurns, process_turns
from engine.store.sql.wake_sockets import WakeSockets

DEFAULT_URL = "sqlite:///journeyman.db"  # the embedded default: a file in the working folder
INSERT_CHUNK = 500  # rows per multi-row INSERT (well under SQLite's 32k bound parameters)
READY_STATEMENT_TIMEOUT_MS = 1500  # /readyz on PostgreSQL: within the probe's 2 s (api/ops.py)
SQLITE_CACHE_KIB = 65_536
# engine/store/sql/stamps.py: one more on a slot's stamp; slot 0 (ANY_STATE) for a write
# that does not say what state it changed
STAMP = ("INSERT INTO state_stamps (slot, stamp) VALUES (?, 1) "
         "ON CONFLICT (slot) DO UPDATE SET stamp = stamp + 1")
ANY_STATE = 0
# The advisory lock taken while migrating (PostgreSQL): 0x6A6D is "jm".
MIGRATION_LOCK = (0x6A6D, 1)


class SqlBase:
    """The connection and transaction plumbing; the parts of SqlStore derive from it."""

    def __init__(self, url: str = DEFAULT_URL, *, create: bool = False,
                 clock: Clock | None = None, busy_timeout_ms: int = 30_000,
                 inbox_max_attempts: int = 10, echo: bool = False) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.inbox_max_attempts = inbox_max_attempts
        self._db = _make_engine(url, busy_timeout_ms, echo)
        self.dialect = self._db.dialect.name
        self._pg = self.dialect == "postgresql"
        self._local = threading.local()
        # SQLite: this process's writers take turns (see the module's docstring).
        self.checkpointer: WalCheckpointer | None = None  # checkpoint_in_background's
        self._write_gate = (FairWriteGate(_process_turns(self._db.url, busy_timeout_ms))
                            if not self._pg else None)
        # SQLite: wake-ups to the other processes on the file, sent after each commit
        # (engine/store/sql/wake_sockets.py); PostgreSQL has NOTIFY.
        path = None if self._pg else _plain_file(self._db.url)
        self._wake_sockets = WakeSockets.beside(path) if path else None
        self._many_plans: dict[Any, ManyRowsPlan | JsonRowsPlan] = {}
        # a batch's statements run at the driver (driver.py): `_select_rows`, `_scalar`,
        # `_run_statement`
        self._driver_queries: dict[Any, DriverQuery] = {}
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
        self._journey_entries = table("journey_entries")
        self._failures = table("failures")
        self._journey_versions = table("journey_versions")
        try:
            if create:
                try:
                    self.migrate()
                except SQLAlchemyError as exc:
                    raise StoreError(f"cannot open the store at {self._safe_url()}: "
                                     f"{exc}") from exc
            else:
                self._check_schema()
        except BaseException:
            self.close()
            raise

    def checkpoint_in_background(self) -> Callable[[], None]:
        """SQLite on a file: checkpoint its WAL from a thread of this process
        (engine/store/sql/checkpoint.py), for a long-running process. Returns the
        function that stops it. Elsewhere (PostgreSQL, in memory) nothing to do."""
        # A URL with options (`?uri=true&cache=...`) names its file in ways SQLite
        # reads and a plain path does not: left to the writers' own checkpoints.
        path = _plain_file(self._db.url)
        if not path:
            return lambda: None
        self.checkpointer = WalCheckpointer(path, turn=self._writer_turn)  # tests, metrics
        return self.checkpointer.start()

    @property
    def sql_engine(self) -> Engine:
        return self._db

    def close(self) -> None:
        self._db.dispose()
        if self._write_gate is not None:
            self._write_gate.close()
        if self._wake_sockets is not None:
            self._wake_sockets.close()

    def migrate(self) -> None:
        """`alembic upgrade head` on this database. On PostgreSQL one process at a time:
        processes started together on a new database (an API and its workers) would
        otherwise each create the tables, and all but one fail. A database at a
        revision this version does not know (a newer journeyman migrated it) is a
        StoreError saying so (it was Alembic's traceback)."""
        with self._db.connect() as conn:
            _begin_mode(conn, write=True)
            with conn.begin():
                if self._pg:
                    # Held to the end of this transaction; the second process then
                    # finds the schema current and does nothing.
                    conn.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK[0]}, "
                                      f"{MIGRATION_LOCK[1]})"))
                if (unknown := migrate.known(migrate.current(conn))) is not None:
                    raise StoreError(unknown)  # rolled back: nothing was written
                migrate.upgrade(conn)

    def _check_schema(self) -> None:
        try:
            with self._db.connect() as conn:
                current = migrate.current(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self._safe_url()}: {exc}") from exc
        if (unknown := migrate.known(current)) is not None:
            raise StoreError(unknown)
        if current != migrate.head():
            raise SchemaNotReady(
                f"the database at {self._safe_url()} is at schema revision {current or 'none'}, "
                f"this journeyman needs {migrate.head()}: run `alembic upgrade head` "
                "or open it with SqlStore(url, create=True)", current)

    def ready(self) -> str | None:
        """None when the database answers and its schema is current, else why not
        (`/readyz`). On PostgreSQL the look gives up after READY_STATEMENT_TIMEOUT (a
        lock held on the schema table by a migration); a connection that died while it
        sat in the pool (the database restarted) is not taken for the database being
        away: the look is made once more, on a new connection."""
        try:
            return self.schema_apart()
        except SQLAlchemyError as exc:
            return f"the database does not answer ({type(exc).__name__})"

    def schema_apart(self) -> str | None:
        """Why this code must not work on the database now: its schema is at another
        revision than this code's (downgraded under a running process, or upgraded by a
        newer journeyman), as `/readyz` says it; else None. A database that does not
        answer raises (SQLAlchemyError): that says nothing of its schema, and the schema
        gate keeps what it knew (it was None here, and a closed gate opened)."""
        current = self._revision()
        if current != migrate.head():
            return f"the schema is at revision {current or 'none'}, this needs {migrate.head()}"
        return None

    def _revision(self) -> str | None:
        """The schema's revision (SQLAlchemyError when the database does not answer)."""
        try:
            return self._read_revision()
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._read_revision()  # on a new connection: the pooled one had died

    def _read_revision(self) -> str | None:
        with self._db.connect() as conn:
            if self._pg:
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {READY_STATEMENT_TIMEOUT_MS}")
            return migrate.current(conn)

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def _now(self) -> datetime:
        return self.clock.now()

    def writers_waiting(self) -> bool:
        """SQLite: API requests of this process or another wait for the write turn
        (engine/store/sql/turns.py). PostgreSQL's writers lock rows, not the database."""
        return self._write_gate is not None and self._write_gate.requests_waiting()

    def writers_lately(self) -> bool:
        """SQLite, asked by background work: API requests wait for the write turn now,
        or wrote in this process within the last second (engine/store/sql/turns.py
        `FairWriteGate.requests_lately`)."""
        return self._write_gate is not None and self._write_gate.requests_lately()

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    def claim_was_short(self) -> bool:
        """Set by `claim_inbox` and `claim_outbox`, per thread (the port says why)."""
        return bool(getattr(self._local, "claim_short", False))

    @contextmanager
    def transaction(self, *, stamped: bool = False) -> Iterator[None]:
        """One database transaction for every store call made in the block (this thread).
        `stamped`: see `_write`."""
        if getattr(self._local, "conn", None) is not None:
            yield  # join the outer transaction
            return
        with self._write(stamped=stamped) as conn:  # the block's calls join it (_local.conn)
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if self._write_gate is None:
            yield
        else:
            with self._write_gate.held():
                yield

    @contextmanager
    def _write(self, *, stamped: bool = False) -> Iterator[Connection]:
        """A write transaction (or the thread's current one); its wake-up notes go to
        the other processes after it commits. SQLite: unless `stamped` (its writes stamp
        the state they change themselves, or change no profile's state), it stamps all
        state changed, so the optimistic batches that overlap it check again
        (engine/store/sql/stamps.py)."""
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            if getattr(self._local, "snapshot", None) is not None:
                raise StoreError("a write inside a snapshot (engine/store/sql/stamps.py)")
            yield current
            return
        self._local.notes = []
        with self._writer_turn(), self._db.connect() as conn:
            _begin_mode(conn, write=True)
            with conn.begin():
                changes = None if stamped or self._pg else _driver(conn).total_changes
                yield conn
                if changes is not None and _driver(conn).total_changes != changes:
                    _driver(conn).execute(STAMP, (ANY_STATE,))  # it wrote: say so
        self._send_notes()

    def _notify(self, conn: Connection, notes: list[tuple[str, str]]) -> None:
        """Wake the other processes' loops once this transaction commits: `notes` are
        (topic, payload): `inbox`, `outbox`, `timers` with the earliest due time."""
        if not notes:
            return
        if self._pg:  # delivered at commit (engine/store/sql/notify.py)
            notify_all(conn, notes)
        elif self._wake_sockets is not None:
            self._local.notes.extend(notes)

    def _send_notes(self) -> None:
        """After a commit: the notes of its transaction, to the other processes."""
        notes, self._local.notes = self._local.notes, []
        if notes and self._wake_sockets is not None:
            self._wake_sockets.send(notes)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self._db.connect() as conn:
            _begin_mode(conn, write=False)
            with conn.begin():
                yield conn

    def _select_rows(self, conn: Connection, statement: Any,
                     params: Mapping[str, Any]) -> Sequence[Mapping[Any, Any]]:
        """The rows of a statement built once (a cached property), as column -> value,
        read at the driver (driver.py `DriverQuery`)."""
        return self._driver_query(statement).rows(conn, params)

    def _scalar(self, conn: Connection, statement: Any, params: Mapping[str, Any]) -> Any:
        """The first column of the first row `_select_rows` reads (None: no row)."""
        rows = self._select_rows(conn, statement, params)
        return next(iter(rows[0].values())) if rows else None

    def _run_statement(self, conn: Connection, statement: Any,
                       params: Mapping[str, Any]) -> int:
        """Run a statement built once that returns no rows; how many rows it changed."""
        return self._driver_query(statement).run(conn, params)

    def _driver_query(self, statement: Any) -> DriverQuery:
        query = self._driver_queries.get(statement)
        if query is None:
            query = self._driver_queries[statement] = DriverQuery(statement,
                                                                  self._db.dialect)
        return query

    def _many(self, conn: Connection, statement: Any, rows: Sequence[Mapping[str, Any]],
              *, apart: tuple[str, ...] = ()) -> None:
        """`conn.execute(statement, rows)` for the bulk writes of a batch, without
        SQLAlchemy's work per row: SQLite's executemany (`ManyRowsPlan`), one statement
        for all the rows on PostgreSQL (`JsonRowsPlan`). `statement` is one built once
        (a cached property): its plan is kept for the life of the store.

        `apart`: parameters whose values no two rows of one statement may share, for a
        statement that reads what an earlier row of its batch wrote (a new enrollment's
        `entry_seq` is the max of its profile's and journey's + 1): one statement sees
        only what was there before it ran."""
        self._many_ready(statement, rows, apart=apart)(conn)

    def _many_ready(self, statement: Any, rows: Sequence[Mapping[str, Any]], *,
                    apart: tuple[str, ...] = ()) -> Callable[[Connection], None]:
        """`_many` in two steps: the driver's parameters built now, the statements run
        by the function returned (a unit's writes are made ready before SQLite's write
        turn, which then only runs them: engine/store/sql/units.py `prepare_changes`)."""
        if not rows:
            return _nothing
        plan = self._plan(statement)
        if isinstance(plan, ManyRowsPlan):
            # SQLite: executemany runs the rows in order (no waves), at the driver
            sql, parameters = plan.sql, plan.parameters(rows)
            return lambda conn: driver_many(conn, sql, parameters)
        ready = [(plan.sql, plan.parameters(wave)) for wave in waves(rows, apart)]

        def run(conn: Connection) -> None:
            for sql, parameters in ready:
                driver_write(conn, sql, parameters)

        return run

    def _plan(self, statement: Any) -> ManyRowsPlan | JsonRowsPlan:
        """`statement`'s plan for `_many`, compiled at its first use."""
        plan = self._many_plans.get(statement)
        if plan is None:
            plan = self._many_plans[statement] = (
                JsonRowsPlan.of(statement, self._db.dialect) if self._pg
                else ManyRowsPlan.of(statement, self._db.dialect))
        return plan

    def _insert(self, tbl: Any) -> Any:
        """An INSERT that knows ON CONFLICT on this dialect."""
        return (postgresql.insert(tbl) if self._pg else sqlite.insert(tbl))

    # The two upserts of the hot path, built once with bind parameters: building them per
    # call (`.excluded` sets up a column collection each time) cost more than SQLite.


def _process_turns(url: URL, busy_timeout_ms: int) -> ProcessTurns | None:
    """This process's write turns on the database file (engine/store/sql/turns.py)."""
    path = _plain_file(url)
    return process_turns(path, busy_timeout_ms / 1000) if path else None


def _plain_file(url: URL) -> str | None:
    """The absolute path of a SQLite database named by a plain file URL, else None (in
    memory; `file:` URIs and URLs with options name their file in ways SQLite reads
    and a plain path does not)."""
    database = url.database
    if (url.get_backend_name() != "sqlite" or database in (None, "", ":memory:")
            or database.startswith("file:") or url.query):
        return None
    return os.path.abspath(database)


def _make_engine(url: str, busy_timeout_ms: int, echo: bool) -> Engine:
    # hide_parameters: a database error's text (logged, kept in `failures`) names the
    # statement but never the values bound to it -- traits, e-mail addresses, events.
    try:
        parsed = make_url(url)
    except ArgumentError:  # a typo in JOURNEYMAN_DB was a traceback of SQLAlchemy's
        # Not echoed: a malformed URL may still hold a password
        raise StoreError("the store URL (--db, or JOURNEYMAN_DB) is not a database URL: "
                         "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
                         ) from None
    if parsed.get_backend_name() == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False,
                                                   "timeout": busy_timeout_ms / 1000}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, echo=echo, json_serializer=jsonfast.dumps,
                               json_deserializer=jsonfast.loads_exact, hide_parameters=True,
                               **kwargs)
        _sqlite_events(engine, busy_timeout_ms, wal=not memory)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if parsed.get_driver_name() != "psycopg":  # psycopg2, asyncpg, pg8000: not installed
            raise StoreError(f"the PostgreSQL driver {parsed.get_driver_name()!r} is not "
                             "journeyman's: write the URL as postgresql+psycopg://...")
        return postgres_engine(url, echo=echo)
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
        # The safety net: long-running processes checkpoint from a thread (checkpoint.py)
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.create_function("jm_lane", 2, lane_of, deterministic=True)
        dbapi_conn.create_function("jm_unserved", 2, unserved, deterministic=True)
        dbapi_conn.create_function("jm_reason", 2, sqlite_reason, deterministic=True)
        # SQLite's default page cache is 2 MB: a store with a million timers (~270 MB)
        # then re-reads index pages from the OS on every claim. 64 MB per connection.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        driver_execute(conn, conn.info.get("jm_begin", "BEGIN IMMEDIATE"))


def _begin_mode(conn: Connection, *, write: bool) -> None:
    """SQLite: how the next transaction on `conn` starts (ignored elsewhere)."""
    conn.info["jm_begin"] = "BEGIN IMMEDIATE" if write else "BEGIN"


def _driver(conn: Connection) -> Any:
    """The DBAPI (sqlite3) connection under `conn`, for the ingest hot path: statements
    run on it join `conn`'s transaction (we issue BEGIN ourselves, see _sqlite_events)."""
    return conn.connection.driver_connection


def _nothing(_conn: Connection) -> None:
    """A write with no rows."""


def _marks(count: int) -> str:
    """`?, ?, ...`: placeholders for a driver-level IN list on SQLite."""
    return ", ".join("?" * count)


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
