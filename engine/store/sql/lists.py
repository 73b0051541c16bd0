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
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Enum, String, any_, bindparam, literal_column
from sqlalchemy.dialects.postgresql import ARRAY


def among(column: Any, name: str, *, pg: bool) -> Any:
    """`column IN :name` (SQLite) or `column = ANY(:name)` (PostgreSQL)."""
    if pg:
        return column == any_(bindparam(name, type_=ARRAY(_element(column.type))))
    return column.in_(bindparam(name, expanding=True))


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
