"""`SqlStore`: the whole Store port (engine/ports.py) on SQLite (the embedded default)
or PostgreSQL, its schema owned by the Alembic migrations in `migrations/`.

One module per concern, each a part of the class:

| module | part |
|---|---|
| `db.py` | the SQLAlchemy engine, SQLite pragmas, transactions |
| `state.py` | profiles, enrollments, timers, segments, exits/goals/decisions (the hot path) |
| `identities.py` | identities and profile merges |
| `inbox.py` | ingest with dedupe, the per-profile inbox and its claims |
| `units.py` | units of work: many profiles' state read in bulk, a batch's writes in bulk |
| `failures.py` | parked events, timers and sends |
| `outbox.py` | the outbox: enqueue, claim, settle |
| `keys.py` | API keys and settings |
| `users.py` | the dashboard's users |
| `analytics.py` | the dashboard's counts per journey and step |
| `reads.py` | histories and counts for people and reports |
| `privacy.py` | a person's rows: export, forget (no trace left in SQLite), retention |
| `versions.py` | deployed journey versions, in-flight counts, migration moves |
| `engagement.py` | clicks, opens, bounces and complaints; the suppression list |
| `rows.py` | how values are stored in rows |
| `tables.py`, `types.py`, `migrate.py`, `migrations/` | the schema |

`SqlStore("sqlite:///journeyman.db", create=True)` migrates the database to the latest
revision; without `create` it refuses a database whose schema is not current.
"""

from __future__ import annotations

from engine.ports import Store
from engine.store.sql.analytics import AnalyticsQueries
from engine.store.sql.db import DEFAULT_URL
from engine.store.sql.engagement import EngagementQueries
from engine.store.sql.failures import FailureQueries
from engine.store.sql.keys import KeyQueries
from engine.store.sql.privacy import PrivacyQueries
from engine.store.sql.reads import ReadQueries
from engine.store.sql.statistics import StatisticsQueries
from engine.store.sql.units import UnitQueries
from engine.store.sql.users import UserQueries
from engine.store.sql.versions import VersionQueries


class SqlStore(UnitQueries, FailureQueries, KeyQueries, ReadQueries, PrivacyQueries,
               VersionQueries, EngagementQueries, UserQueries, AnalyticsQueries,
               StatisticsQueries):
    """The durable Store. `SqlStore("sqlite:///journeyman.db", create=True)`."""


def _implements_the_port(store: SqlStore) -> Store:
    return store  # mypy checks that SqlStore is a whole Store


__all__ = ["DEFAULT_URL", "SqlStore"]
