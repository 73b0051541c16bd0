"""`among`: a column's value in a list given when the statement runs; and `one_of`, a
column's value in a fixed set of words, written into the statement.

SQLite: `column IN (?, ?, ...)`, SQLAlchemy's expanding parameter. PostgreSQL: `column =
ANY(%(name)s::TYPE[])`, the list as one array parameter. Why not IN there too: an
expanding IN is rendered per call (SQLAlchemy's post-compile step, ~6% of a PostgreSQL
worker's CPU on the hot reads of bench/journey_bench.py), and its text differs with each
list's length, so psycopg prepares it only for lengths that recur, each on its own. With
one array parameter the text is the same for any length: psycopg prepares it once, and
SQLAlchemy's compiled cache holds it whole. Any iterable will do as the value
(SQLAlchemy's ARRAY type makes a list of it).

The array's type is the column's without a length: PostgreSQL *truncates* a value cast
to `VARCHAR(255)`, so `ANY(:ids::VARCHAR(255)[])` found the row of the first 255
characters of a longer id (tests/store/test_lists.py).

Lists of strings and integers go as one array literal, written by `array_literal`, in
the same statement text (`ANY(%(name)s::VARCHAR[])`; psycopg sends the text with no
type, so the parameter is still the array): psycopg dumps a Python list element by
element in Python, ~1 us each (200 ids: 198 us; ~5% of a PostgreSQL worker's samples in
the race of bench/journey_bench.py), and `array_literal` writes the same array in ~5 us.
Other element types (an enum) keep psycopg's list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Enum, Integer, String, TypeDecorator, any_, bindparam, literal_column
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect


def among(column: Any, name: str, *, pg: bool) -> Any:
    """`column IN :name` (SQLite) or `column = ANY(:name)` (PostgreSQL)."""
    if pg:
        element = _element(column.type)
        if isinstance(element, String | Integer):
            return column == any_(bindparam(name, type_=_ArrayLiteral(element)))
        return column == any_(bindparam(name, type_=ARRAY(element)))
    return column.in_(bindparam(name, expanding=True))


def array_literal(values: Iterable[Any]) -> str:
    """PostgreSQL's text for an array of these values, each quoted: `{"a","b"}` (a
    quoted element may hold commas, braces, spaces or the word NULL; `"` and `\\` are
    escaped with a backslash); None is NULL, as psycopg wrote it. The server parses it
    into the array's element type."""
    if isinstance(values, str | bytes):
        raise TypeError("array_literal takes a collection of values, not one string")
    items = [v if isinstance(v, str) else None if v is None else str(v) for v in values]
    if not items:
        return "{}"
    if None not in items:  # the usual case: one join, escaping only if it must
        joined = '","'.join(items)  # type: ignore[arg-type]  # no None: checked
        if '"' not in joined and "\\" not in joined:
            return '{"' + joined + '"}'
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace(
        '"', '\\"') + '"' for v in items) + "}"


class _ArrayLiteral(TypeDecorator[Any]):
    """A list bound as its `array_literal` text (`among`'s parameter on PostgreSQL), in
    the statement text the list had (`%(name)s::VARCHAR[]`): psycopg sends a str as of
    unknown type, so the parameter itself is the array, as it was. (A cast written around
    a text parameter, `CAST(%(name)s::VARCHAR AS VARCHAR[])`, tried first, doubled
    PostgreSQL's time in the race of bench/journey_bench.py: the reads of entries,
    active enrollments and timers by key took 10 to 40 times as long.)"""

    impl = ARRAY
    cache_ok = True

    def __init__(self, element: Any) -> None:
        super().__init__(element)
        self.element = element  # in the cache key: VARCHAR[] and BIGINT[] are two types

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        # Not ARRAY's own processor after it: that one iterates what it is given.
        return _bind_literal


def _bind_literal(value: Any) -> str | None:
    return None if value is None else array_literal(value)


def _element(column_type: Any) -> Any:
    """The array's element type: a string column's without its length (a TypeDecorator
    over one too); an enum keeps its own type (`enum = ANY(varchar[])` has no operator)."""
    base = getattr(column_type, "impl", column_type)
    if isinstance(base, String) and not isinstance(base, Enum):
        return String()
    return column_type


def one_of(column: Any, words: Iterable[str]) -> Any:
    """`column IN ('a', 'b')` with the words in the statement's text: no parameter to
    expand on each call, and a plan that sees them (a partial index on `status =
    'active'` is usable only by a plan that knows the value)."""
    if isinstance(words, str):
        raise TypeError("one_of takes a collection of words, not one string")
    quoted: list[Any] = []
    for word in words:
        if not word.isidentifier():  # our own status names, never input
            raise ValueError(f"not a plain word: {word!r}")
        quoted.append(literal_column(f"'{word}'"))
    if not quoted:
        raise ValueError("one_of needs at least one word")
    return column.in_(quoted) if len(quoted) > 1 else column == quoted[0]
