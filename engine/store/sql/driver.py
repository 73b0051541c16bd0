"""A batch's statements run at the driver, each compiled once (`DriverQuery`): SQLite's
at the sqlite3 connection (its bulk writes too: `driver_many`), PostgreSQL's at psycopg's
(its bulk writes: `driver_write`).

Why: SQLAlchemy's execution costs the same for every statement, whatever the database
then does. Counted with callgrind, a prebuilt `select` with a list parameter took
~250,000 instructions more per call than the same statement run on the sqlite3
connection, and `exec_driver_sql` ~27,000 more than the driver's own `executemany` (an
execution context, a result, the compiled cache's look-up), and a row's result
processing a function per column (an enrollment's five documents and four timestamps: 17
us a row; here one plain function a column that needs one). A worker's batch runs ~20
statements: bench/instructions_bench.py counted 2,156,605 instructions an event before,
2,037,293 with SQLite's statements here (-5.5%); with the race's timers and sends
(`--countdown`), whose batches are smaller, 3,315,589 before and 3,003,952 after (-9.4%);
PostgreSQL's worker 1,877,288 before, 1,746,876 with its reads here too (-6.9%). Here:
the units' loads (profiles, active enrollments, entry counts, segments, identities,
outlines), the inbox's peeks, checks and acks, the rollup's counts, the timers and the
outbox's claims, the transaction's BEGIN, and the bulk writes (`ManyRowsPlan`'s and
`JsonRowsPlan`'s rows).

What stays SQLAlchemy's: its errors (a driver error goes through the connection's own
handling, so a locked database is still an `OperationalError`, retried as transient, a
lost PostgreSQL connection is invalidated, and the parameters stay hidden), the
transaction (statements run on the connection `conn` holds, inside its transaction),
its cursor events (a listener on `before_cursor_execute` or `after_cursor_execute` sees
these statements too, with None for the execution context), and the statements
themselves (built with Core, compiled here once per store). Not SQLAlchemy's statement
log (`echo`, the `sqlalchemy.engine` logger): these statements are not in it. A missing
parameter is a KeyError here (a bug of ours: every caller passes its statement's
parameters). PostgreSQL's columns are read as SQLAlchemy reads them (each type's
result processing; psycopg parses the documents with the deserializer SQLAlchemy gave
it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from sqlalchemy import JSON
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.sqltypes import TupleType

from engine import jsonfast
from engine.store.errors import StoreError
from engine.store.sql.many_rows import bound_values, row_converter, row_reader
from engine.store.sql.rows import sqlite_timestamp
from engine.store.sql.types import UTCDateTime

# SQLAlchemy's mark for an expanding list parameter (`column IN (__[POSTCOMPILE_ids])`)
_EXPANDING = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


def driver_many(conn: Connection, sql: str, parameters: Sequence[Any]) -> None:
    """`executemany` on the sqlite3 connection under `conn`, in its transaction."""
    _run(conn, sql, parameters, many=True)


def driver_execute(conn: Connection, sql: str,
                   parameters: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
    """`execute` on the DBAPI connection under `conn` (a tuple for SQLite's marks, a
    mapping for psycopg's names); returns the driver's cursor."""
    return _run(conn, sql, parameters, many=False)


def driver_write(conn: Connection, sql: str, parameters: Mapping[str, Any]) -> None:
    """PostgreSQL: one statement that returns no rows (a batch's rows as one JSON
    document, many_rows.py `JsonRowsPlan`) on the psycopg connection under `conn`: what
    `exec_driver_sql` did, less its execution context and result."""
    _run(conn, sql, parameters, many=False).close()


def _run(conn: Connection, sql: str, parameters: Any, *, many: bool) -> Any:
    """Run `sql` on the driver's cursor. SQLAlchemy's `before_cursor_execute` and
    `after_cursor_execute` listeners, if any (statement logging, tracing, the tests'
    query plans), see it as they see SQLAlchemy's own statements."""
    driver: Any = conn.connection.driver_connection
    traced = (conn._has_events or conn.engine._has_events) and bool(
        conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute)
    try:
        cursor = driver.cursor()
        if traced:
            for listener in conn.dispatch.before_cursor_execute:
                sql, parameters = listener(conn, cursor, sql, parameters, None, many)
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        if traced:
            conn.dispatch.after_cursor_execute(conn, cursor, sql, parameters, None, many)
    except Exception as exc:
        _raise_as_sqlalchemy(conn, exc, sql, parameters)
    return cursor


def _raise_as_sqlalchemy(conn: Connection, exc: Exception, sql: str,
                         parameters: Any) -> NoReturn:
    """The error SQLAlchemy would raise for `exc` (a DBAPI error wrapped: OperationalError
    and the rest; a lost connection invalidated), as `exec_driver_sql` does."""
    conn._handle_dbapi_exception(exc, sql, parameters, None, None)
    raise AssertionError("unreachable: _handle_dbapi_exception raises")  # pragma: no cover


class DriverQuery:
    """A Core statement compiled once for its dialect, run at the driver.

    Its values go through their bind processors (datetimes to SQLite's text, lists to
    PostgreSQL's array literals), as a tuple in the marks' order (SQLite) or by name
    (psycopg). On SQLite a list parameter (`column.in_(bindparam(name,
    expanding=True))`) becomes one JSON array, `IN (SELECT value FROM json_each(?))`: one
    statement text for any length, each id still looked up in the index
    (tests/store/test_query_plans.py); PostgreSQL's lists are arrays already (lists.py
    `among`). Rows
    come back as dicts of column -> value, each value through its column's reader
    (SQLite's JSON documents parsed and timestamps read as aware UTC by plain functions;
    the rest, and every PostgreSQL column, through the type's own result processing, as
    SQLAlchemy reads them)."""

    __slots__ = ("_convert", "_read", "sql")

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        lists = set(_EXPANDING.findall(compiled.string))
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        for name in lists:  # only a list of plain values becomes a JSON array
            bind = binds.get(name)
            if bind is None or not bind.expanding or isinstance(bind.type, TupleType):
                raise StoreError(f"DriverQuery: {name!r} is not a list of plain values")
        if lists and dialect.name != "sqlite":
            raise StoreError("DriverQuery: a list parameter on PostgreSQL is an array "
                             "(lists.py `among`)")
        self.sql = _EXPANDING.sub("SELECT value FROM json_each(?)", compiled.string)
        pairs, constants = bound_values(compiled)
        # a list's elements through the element type's processor, then one JSON array
        self._convert = row_converter(
            [(name, _json_list(processor) if name in lists else processor)
             for name, processor in pairs], "tuple" if compiled.positional else "dict",
            constants)
        columns = getattr(statement, "selected_columns", None)
        if columns is None and getattr(statement, "_returning", None):
            columns = statement.exported_columns  # DELETE ... RETURNING
        names = [c.name for c in columns] if columns is not None else []
        if len(set(names)) != len(names):  # a row is a dict: one value per name
            raise StoreError(f"DriverQuery: columns named alike in {names}")
        self._read = None if columns is None else row_reader(
            [(c.name, _reader(c.type, dialect)) for c in columns])

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The statement's rows for `params`."""
        assert self._read is not None, "rows() of a statement that selects nothing"
        values = self._convert(params)
        cursor = driver_execute(conn, self.sql, values)
        try:
            found = cursor.fetchall()
        except Exception as exc:
            _raise_as_sqlalchemy(conn, exc, self.sql, values)
        return list(map(self._read, found))

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        rowcount: int = driver_execute(conn, self.sql, self._convert(params)).rowcount
        return rowcount


def _json_list(element: Callable[[Any], Any] | None) -> Callable[[Any], str]:
    """A list parameter as the JSON array `json_each` reads."""
    if element is None:
        return lambda values: jsonfast.dumps(list(values))
    return lambda values: jsonfast.dumps([element(v) for v in values])


def _reader(kind: Any, dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a column's value is read: as SQLAlchemy reads it, with SQLite's documents and
    timestamps by plain functions (the engine's deserializer, rows.py
    `sqlite_timestamp`)."""
    if dialect.name == "sqlite" and isinstance(kind, JSON):  # db.py's deserializer
        return jsonfast.loads_exact
    if dialect.name == "sqlite" and isinstance(kind, UTCDateTime):
        return sqlite_timestamp
    try:  # without the column's type code (a prepared read has none to give)
        processor: Callable[[Any], Any] | None = kind.dialect_impl(
            dialect).result_processor(dialect, None)
    except TypeError as exc:  # psycopg's Float and Numeric need it: read through SQLAlchemy
        raise StoreError(f"DriverQuery cannot read a {kind!r} column on {dialect.name}") \
            from exc
    return processor
