"""The service tests run on SQLite and, where JOURNEYMAN_TEST_PG is set, PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.store.conftest import make_pg_store, pg_database, pg_server

__all__ = ["pg_database", "pg_server"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty store: a SQLite file of this test's own, or this run's PG database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url = str(request.getfixturevalue("pg_database"))
    make_pg_store(url).close()  # emptied
    return url
