"""The durable store: `SqlStore` on SQLite (default) or PostgreSQL, migrated by Alembic."""

from engine.store.sql import (
    DuplicateKeyName,
    InboxItem,
    KeyInfo,
    SchemaNotReady,
    SqlStore,
    StoreError,
    SystemClock,
)

__all__ = ["DuplicateKeyName", "InboxItem", "KeyInfo", "SchemaNotReady", "SqlStore",
           "StoreError", "SystemClock"]
