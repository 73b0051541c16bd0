"""Column types that behave the same on SQLite and PostgreSQL.

- `UTCDateTime`: aware UTC in, aware UTC out. PostgreSQL stores `timestamptz`; SQLite
  stores SQLAlchemy's fixed-width text (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), which sorts
  chronologically, so `due_at <= :now` and `ORDER BY due_at` work on the text.
  Naive datetimes are refused on the way in: the core only deals in aware UTC.
- `JSONDoc`: JSON on SQLite, JSONB on PostgreSQL. Never mutate a loaded value in place;
  build a new dict and write it back (design.md: in-place changes are not saved).
"""

from __future__ import annotations

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
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError(f"naive datetime {value.isoformat()} given to the store")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")
