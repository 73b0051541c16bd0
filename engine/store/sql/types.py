"""Column types that behave the same on SQLite and PostgreSQL.

- `UTCDateTime`: aware UTC in, aware UTC out. PostgreSQL stores `timestamptz`; SQLite
  stores SQLAlchemy's fixed-width text (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), which sorts
  chronologically, so `due_at <= :now` and `ORDER BY due_at` work on the text.
  Naive datetimes are refused on the way in: the core only deals in aware UTC.
- `JSONDoc`: JSON on SQLite, JSONB on PostgreSQL. Never mutate a loaded value in place;
  build a new dict and write it back (design.md: in-place changes are not saved).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine.store.errors import NaiveDatetimeError


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _aware_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, process_bind_param and SQLAlchemy's DATETIME text in one step: a
        batch's rows bind tens of thousands of timestamps (ManyRowsPlan), and the two
        functions per value were 3% of the worker's time. `isoformat(" ",
        "microseconds")` of a naive datetime is the text SQLAlchemy writes
        (`YYYY-MM-DD HH:MM:SS.ffffff`; tests/store/test_sql.py compares them)."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # The last value and its text, as one tuple (one assignment, so a thread never
        # sees one's value with another's text): a batch binds the same `now` to most
        # of its rows' created_at/updated_at/at.
        last: tuple[datetime | None, str | None] = (None, None)

        def process(value: datetime | None) -> str | None:
            nonlocal last
            if value is None:
                return None
            seen, text = last
            if value is seen:
                return text
            utc = value if value.tzinfo is UTC else _aware_utc(value)
            # the aware text less its "+00:00": `replace(tzinfo=None)` alone took 1.2 us
            text = utc.isoformat(" ", "microseconds")[:-6]
            last = (value, text)
            return text

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _aware_utc(value: datetime) -> datetime:
    """`value` in UTC; a naive datetime is refused (the core deals in aware UTC only)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(f"naive datetime {value.isoformat()} given to the store")
    return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")
