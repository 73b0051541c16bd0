"""`SqlStore`: the whole Store port (engine/ports.py) on SQLite (the embedded default)
or PostgreSQL, its schema owned by the Alembic migrations in `migrations/`.

One module per concern, each a part of the class:

| module | part |
|---|---|
| `db.py` | the SQLAlchemy engine, SQLite pragmas, transactions |
| `state.py` | profiles, enrollments, timers, segments, exits/goals/decisions (the hot path) |
| `identities.py` | identities and profile merges |
| `inbox.py` | ingest with dedupe, the per-profile inbox with leases |
| `outbox.py` | the outbox: enqueue, claim, settle |
| `keys.py` | API keys and settings |
| `reads.py` | histories and counts for people and reports |
| `rows.py` | how values are stored in rows |
| `tables.py`, `types.py`, `migrate.py`, `migrations/` | the schema |

`SqlStore("sqlite:///journeyman.db", create=True)` migrates the database to the latest
revision; without `create` it refuses a database whose schema is not current.
"""

from __future__ import annotations

from engine.ports import Store
from engine.store.sql.db import DEFAULT_URL
from engine.store.sql.identities import IdentityQueries
from engine.store.sql.inbox import InboxQueries
from engine.store.sql.keys import KeyQueries
from engine.store.sql.outbox import OutboxQueries
from engine.store.sql.reads import ReadQueries


class SqlStore(IdentityQueries, InboxQueries, OutboxQueries, KeyQueries, ReadQueries):
    """The durable Store. `SqlStore("sqlite:///journeyman.db", create=True)`."""


def _implements_the_port(store: SqlStore) -> Store:
    return store  # mypy checks that SqlStore is a whole Store


__all__ = ["DEFAULT_URL", "SqlStore"]
