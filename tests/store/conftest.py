"""Fixtures for the store tests: one contract, three stores.

- `memory`: engine.store.memory.InMemoryStore (the reference behaviour);
- `sqlite`: SqlStore on a fresh SQLite file in tmp_path (a copy of a file migrated once
  per session by Alembic, so each test starts from exactly what the migrations build);
- `postgres`: SqlStore on a database of its own created for this run
  (`jm_test_<pid>_<random>`, dropped at the end), emptied before each test.
  Needs `JOURNEYMAN_TEST_PG`, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.store import SqlStore
from engine.store.memory import InMemoryStore
from engine.store.sql.tables import TABLE_NAMES

PG_ENV = "JOURNEYMAN_TEST_PG"


def _admin_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(
        hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return _admin_url(url)


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[str]:
    """A database of this run's own, migrated once; dropped at the end."""
    name = f"jm_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        SqlStore(url, create=True).close()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_new_database(pg_server: str) -> Iterator[Any]:
    """Make more empty databases (for migration tests); all dropped at the end."""
    made: list[str] = []
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")

    def new() -> str:
        name = f"jm_test_{os.getpid()}_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(pg_server).set(database=name).render_as_string(hide_password=False)

    yield new
    with admin.connect() as conn:
        for name in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    SqlStore(f"sqlite:///{path}", create=True).close()
    return path


def make_pg_store(pg_database: str) -> SqlStore:
    store = SqlStore(pg_database)
    with store.sql_engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(TABLE_NAMES) + " RESTART IDENTITY"))
    return store


def make_sqlite_store(template: Path, tmp_path: Path) -> SqlStore:
    path = tmp_path / "journeyman.db"
    shutil.copyfile(template, path)
    return SqlStore(f"sqlite:///{path}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        store = make_sqlite_store(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        store = make_pg_store(request.getfixturevalue("pg_database"))
    yield store
    store.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    if request.param == "sqlite":
        sql = make_sqlite_store(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        sql = make_pg_store(request.getfixturevalue("pg_database"))
    yield sql
    sql.close()
