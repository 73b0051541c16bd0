"""The store tests' PostgreSQL fixtures, for replay --db on PostgreSQL."""

from tests.store.conftest import pg_new_database, pg_server

__all__ = ["pg_new_database", "pg_server"]
