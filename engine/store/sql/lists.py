"""`among`: a column's value in a list given when the statement runs.

SQLite: `column IN (?, ?, ...)`, SQLAlchemy's expanding parameter. PostgreSQL: `column =
ANY(%(name)s::TYPE[])`, the list as one array parameter. Why not IN there too: an
expanding IN is rendered per call (SQLAlchemy's post-compile step, ~6% of a worker's
CPU on the hot reads of bench/journey_bench.py), and its text differs with each list's
length, so psycopg parses every new text and never prepares it, and PostgreSQL plans
it anew each time. With one array parameter the text is the same for any length:
psycopg prepares it after a few runs, and SQLAlchemy's compiled cache holds it whole.
The value must be a list (psycopg sends a tuple as a record, not an array).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY


def among(column: Any, name: str, *, pg: bool) -> Any:
    """`column IN :name` (SQLite) or `column = ANY(:name)` (PostgreSQL)."""
    if pg:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))
