"""Many rows in one call: how the batch writes of a unit of work reach the driver
without SQLAlchemy's work per row (`SqlBase._many`, engine/store/sql/db.py). SQLite runs
them through executemany (`ManyRowsPlan`); PostgreSQL as one statement over a JSON
document of the rows (`JsonRowsPlan`). Rows become parameters, and SQLite's rows read
at the driver become values, through functions written for their statement or table
(`row_converter`, `row_reader`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import Null

from engine import jsonfast
from engine.store.errors import StoreError


class ManyRowsPlan:
    """A statement compiled once for this dialect, and how a row's values become the
    driver's parameters (each column type's own bind processor: datetimes to SQLite's
    text, documents to JSON).

    Why: `conn.execute(statement, rows)` builds a parameter dictionary per row through
    the compiled statement's general machinery; for the batch writes of a unit of work
    that cost more than SQLite took to run the statements (bench/journey_bench.py
    --profile: `_init_compiled` 0.46 ms per executemany of ~30 rows). The rows go to
    the driver's executemany instead (driver.py `driver_many`), whose errors are still
    SQLAlchemy's (a busy database stays an `OperationalError`: retried, not refused).

    Only for statements whose every value is a bind parameter the rows give: a column
    default computed in Python (which SQLAlchemy fills in per row) is refused here.
    """

    __slots__ = ("constants", "convert", "pairs", "positional", "sql")

    def __init__(self, sql: str, positional: bool,
                 pairs: tuple[tuple[str, Callable[[Any], Any] | None], ...],
                 constants: Mapping[str, Any]) -> None:
        # pairs: each parameter's name and bind processor, in the driver's order
        self.sql, self.positional, self.pairs, self.constants = (
            sql, positional, pairs, constants)
        self.convert = row_converter(pairs, "tuple" if positional else "dict", constants)

    @classmethod
    def of(cls, statement: Any, dialect: Dialect) -> ManyRowsPlan:
        compiled = compile_for_many(statement, dialect)
        return cls(compiled.string, bool(compiled.positional), *bound_values(compiled))

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The driver's parameters for `rows` (tuples, or dicts for a named style). Every
        value goes through its processor, None too: a JSON column stores `null` for it,
        as `conn.execute` does."""
        return list(map(self.convert, rows))


class JsonRowsPlan:
    """PostgreSQL: a batch's rows as one statement. The rows travel as one JSON
    document (each row an array of its values) and the statement reads them back with
    `jsonb_array_elements(...) WITH ORDINALITY`, in order:

        INSERT INTO t (a, b) VALUES (%(a)s::VARCHAR, %(b)s::JSONB) ON CONFLICT ...
    becomes
        INSERT INTO t (a, b) SELECT (jm_row.v->>0)::VARCHAR, (jm_row.v->1)::JSONB
        FROM jsonb_array_elements(%(jm_rows)s::jsonb) WITH ORDINALITY AS jm_row(v, n)
        ORDER BY jm_row.n ON CONFLICT ...

    and an UPDATE or DELETE gets `FROM`/`USING jsonb_array_elements(...)` before its
    WHERE. Why: psycopg's executemany is one statement per row, each planned, run and
    answered on its own (with the row's triggers), and its Python cost per row is the
    same as `conn.execute`'s. bench/journey_bench.py on PostgreSQL sent ~26 statements
    per event; the decision log alone was 5.6 rows per event.

    Each value is the one SQLAlchemy would bind (the column type's own processing,
    datetimes as ISO text) and the statement's own casts turn the text back into its
    type; a JSON column's document is embedded as JSON (`->`), so None is JSON `null`,
    as `conn.execute` stores it. Constants written into the statement stay parameters.
    """

    __slots__ = ("constants", "convert", "converters", "sql")

    _PLACEHOLDER = re.compile(r"%\((\w+)\)s")
    ROWS = "jm_rows"
    SOURCE = ("jsonb_array_elements(%(jm_rows)s::jsonb) WITH ORDINALITY AS jm_row(v, n)")

    def __init__(self, sql: str, converters: tuple[tuple[str, Callable[[Any], Any] | None], ...],
                 constants: Mapping[str, Any]) -> None:
        self.sql, self.converters, self.constants = sql, converters, constants
        self.convert = row_converter(converters, "list")

    @classmethod
    def of(cls, statement: Any, dialect: Dialect) -> JsonRowsPlan:
        compiled = compile_for_many(statement, dialect)
        pairs, constants = bound_values(compiled)  # ManyRowsPlan's refusals too
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        processors = dict(pairs)
        per_row = [name for name in processors if name not in constants]
        index = {name: i for i, name in enumerate(per_row)}
        converters: list[tuple[str, Callable[[Any], Any] | None]] = []
        json_params: set[str] = set()
        for name in per_row:
            kind = binds[name].type
            if _is(kind, JSON):
                json_params.add(name)  # the document itself, read with ->
                converters.append((name, None))
            elif processors[name] is None and not _is(kind, DateTime):
                converters.append((name, None))  # text, numbers: as they are
            else:
                converters.append((name, _plain(processors[name])))

        def column(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in index:  # a constant: stays a parameter
                return match.group(0)
            arrow = "->" if name in json_params else "->>"
            value = f"(jm_row.v{arrow}{index[name]})"
            if match.string.startswith("::", match.end()):
                return value
            # SQLAlchemy casts most binds (VARCHAR, JSONB, ...) but not all (FLOAT):
            # text from JSON needs its type
            return f"CAST({value} AS {binds[name].type.compile(dialect=dialect)})"

        sql = compiled.string
        verb = sql.split(None, 1)[0].upper()
        if verb == "INSERT":
            head, values, tail = _split_values(sql)
            select_list = cls._PLACEHOLDER.sub(column, values)
            sql = (f"{head} SELECT {select_list} FROM {cls.SOURCE} ORDER BY jm_row.n"
                   f"{tail}")
        elif verb in ("UPDATE", "DELETE"):
            if sql.count(" WHERE ") != 1:
                raise StoreError("JsonRowsPlan: an UPDATE or DELETE needs one WHERE")
            sql = cls._PLACEHOLDER.sub(column, sql)
            where = sql.find(" WHERE ")
            join = " FROM " if verb == "UPDATE" else " USING "
            sql = sql[:where] + join + cls.SOURCE + sql[where:]
        else:
            raise StoreError(f"JsonRowsPlan cannot run a {verb} statement")
        return cls(sql, tuple(converters), constants)

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        document = list(map(self.convert, rows))
        return {**self.constants, self.ROWS: jsonfast.dumps_rows(document)}


def bound_values(compiled: Any) -> tuple[tuple[tuple[str, Callable[[Any], Any] | None], ...],
                                          dict[str, Any]]:
    """A compiled statement's parameters in the driver's order, each with its bind
    processor, and the constants among them; refused for a statement whose values the
    rows cannot all give."""
    if getattr(compiled, "insert_prefetch", None) or getattr(
            compiled, "update_prefetch", None):
        raise StoreError("a statement with column defaults computed in Python cannot "
                         "run through ManyRowsPlan: give every value")
    if compiled.escaped_bind_names:
        raise StoreError(f"bind names that need escaping: "
                         f"{sorted(compiled.escaped_bind_names)}")
    # positional (SQLite's `?`): in the order of the marks; named (psycopg's
    # `%(name)s`): each once
    names = (tuple(compiled.positiontup or ()) if compiled.positional
             else tuple(dict.fromkeys(compiled.bind_names.values())))
    processors: Mapping[str, Any] = compiled._bind_processors
    # Values written into the statement (the `0` of a coalesce) are the same in every
    # row; the rest come from the rows.
    constants = {name: bind.effective_value for bind, name in compiled.bind_names.items()
                 if not bind.required}
    # SQLite's JSON values through `_json_text`, SQLAlchemy's processor less its layers
    # (~10 documents an event, a call each saved). Not for a JSON type decorated (its own
    # processing) or storing None as SQL NULL, nor on PostgreSQL (JsonRowsPlan embeds them).
    direct = {name for bind, name in compiled.bind_names.items()
              if type(bind.type) is JSON and not bind.type.none_as_null
              and compiled.dialect.name == "sqlite"
              and compiled.dialect._json_serializer is jsonfast.dumps}
    return tuple((n, _json_text if n in direct else processors.get(n))
                 for n in names), constants


def _json_text(value: Any) -> str | None:
    """A JSON column's value as SQLAlchemy's processor binds it with the engine's
    serializer: JSON.NULL is JSON `null`, `null()` is SQL NULL, None is `null`."""
    if type(value) is dict or value is None:  # the usual: a document, or no document
        return jsonfast.dumps(value)
    if value is JSON.NULL:
        return "null"
    if isinstance(value, Null):
        return None
    return jsonfast.dumps(value)


def row_converter(pairs: Sequence[tuple[str, Callable[[Any], Any] | None]], shape: str,
                  constants: Mapping[str, Any] | None = None) -> Callable[[Any], Any]:
    """A function of one row (a mapping) to its parameters: a tuple, a list or a dict
    (`shape`) of each pair's value, through its processor when it has one (None too).
    A constant (a value written into the statement) is used when the row lacks it.

    Written out as the code of its own function, one expression per value (as
    dataclasses and attrs write `__init__`): the loop over the pairs it replaces, with
    its test for a processor per value, was 9% of a SQLite worker's time (py-spy,
    bench/journey_bench.py end to end). Names are repr()-quoted into the code; the
    processors and constants are the function's globals, never text."""
    namespace: dict[str, Any] = {}
    values = []
    for i, (name, processor) in enumerate(pairs):
        value = _through(namespace, f"p{i}", processor, f"row[{name!r}]")
        if constants and name in constants:
            namespace[f"c{i}"] = (constants[name] if processor is None
                                  else processor(constants[name]))
            value = f"({value} if {name!r} in row else c{i})"
        values.append(f"{name!r}: {value}" if shape == "dict" else value)
    joined = ", ".join(values)
    body = {"tuple": f"({joined},)" if values else "()", "list": f"[{joined}]",
            "dict": f"{{{joined}}}"}[shape]
    return _written("row", "", body, namespace)


def row_reader(columns: Sequence[tuple[str, Callable[[Any], Any] | None]]
               ) -> Callable[[Any], dict[str, Any]]:
    """The way back, for the reads at the driver (driver.py `DriverQuery`): a function
    of a driver row (a tuple, in `columns`' order) to column -> value, each non-NULL
    value through its column's reader. Written out as `row_converter` is: the loop with
    a test per value was 6% of a SQLite worker's GIL time, reading a batch's states."""
    namespace: dict[str, Any] = {}
    unpack = ", ".join(f"v{i}" for i in range(len(columns))) + ("," if len(columns) == 1
                                                              else "")
    items = [f"{name!r}: {_through(namespace, f'c{i}', read, f'v{i}', none_passes=True)}"
             for i, (name, read) in enumerate(columns)]
    return _written("row", f"    {unpack} = row\n", f"{{{', '.join(items)}}}", namespace)


def _through(namespace: dict[str, Any], slot: str, function: Callable[[Any], Any] | None,
             value: str, *, none_passes: bool = False) -> str:
    """The expression of `value` through `function` (bound in `namespace` as `slot`), or
    `value` itself without one; `none_passes`: None is not given to the function."""
    if function is None:
        return value
    namespace[slot] = function
    return f"(None if {value} is None else {slot}({value}))" if none_passes else (
        f"{slot}({value})")


def _written(parameter: str, prelude: str, body: str, namespace: dict[str, Any]
             ) -> Callable[[Any], Any]:
    """`def written(<parameter>): <prelude> return <body>`, compiled with `namespace` as
    its globals. The code is our own: column and bind names, repr()-quoted."""
    exec(f"def written({parameter}):\n{prelude}    return {body}\n", namespace)
    written: Callable[[Any], Any] = namespace["written"]
    return written


def compile_for_many(statement: Any, dialect: Dialect) -> Any:
    # for_executemany: no implicit `RETURNING id` (PostgreSQL) that nobody reads
    return statement.compile(dialect=dialect, for_executemany=True)


def _is(kind: Any, cls: type) -> bool:
    """A column type that is `cls`, or decorates it (UTCDateTime, JSONDoc)."""
    return isinstance(kind, cls) or isinstance(getattr(kind, "impl", None), cls)


def _plain(processor: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """A bound value as JSON can carry it: the type's processing, then a datetime as ISO
    text (with its offset) for the statement's cast to read back."""
    # The last datetime given and its text, as one tuple (one assignment: a thread
    # never sees one's value with another's text). A batch binds the same `now` to most
    # rows' created_at/updated_at/at; the processing and isoformat were 5% of a
    # PostgreSQL worker (py-spy).
    last: tuple[Any, Any] = (None, None)

    def convert(value: Any) -> Any:
        nonlocal last
        seen, text = last
        if value is seen and value is not None:
            return text
        plain = value if processor is None else processor(value)
        if isinstance(plain, datetime):
            plain = plain.isoformat()
            last = (value, plain)
        return plain

    return convert


def _split_values(sql: str) -> tuple[str, str, str]:
    """`INSERT INTO t (cols) VALUES (<values>) <tail>` -> (`INSERT INTO t (cols)`,
    `<values>`, ` <tail>`): the VALUES tuple by its balanced parentheses."""
    start = sql.find(" VALUES (")
    if start < 0:
        raise StoreError("JsonRowsPlan: an INSERT needs one VALUES row")
    depth, i = 0, start + len(" VALUES ")
    for i in range(start + len(" VALUES "), len(sql)):
        if sql[i] == "'":
            raise StoreError("JsonRowsPlan: a quoted literal in VALUES")
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            break
    return sql[:start], sql[start + len(" VALUES ("):i], sql[i + 1:]


def waves(rows: Sequence[Mapping[str, Any]],
          apart: tuple[str, ...]) -> Iterator[Sequence[Mapping[str, Any]]]:
    """The rows in as few groups as can be, in order, with no two rows of a group
    sharing their `apart` values (the n-th row of each key goes to group n)."""
    if not apart:
        yield rows
        return
    seen: dict[tuple[Any, ...], int] = {}
    groups: list[list[Mapping[str, Any]]] = []
    for row in rows:
        key = tuple(row[k] for k in apart)
        n = seen[key] = seen.get(key, -1) + 1
        if n == len(groups):
            groups.append([])
        groups[n].append(row)
    yield from groups
