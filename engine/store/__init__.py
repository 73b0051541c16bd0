"""Stores: the whole Store port (engine/ports.py), in memory (`memory.InMemoryStore`,
for tests and `simulate`) and in SQL (`sql.SqlStore`, SQLite or PostgreSQL)."""

from engine.store.errors import (
    DuplicateKeyName,
    DuplicateUserName,
    NaiveDatetimeError,
    SchemaNotReady,
    StoreError,
)
from engine.store.sql import DEFAULT_URL, SqlStore

__all__ = ["DEFAULT_URL", "DuplicateKeyName", "DuplicateUserName", "NaiveDatetimeError",
           "SchemaNotReady", "SqlStore", "StoreError"]
