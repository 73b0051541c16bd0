"""Alembic environment for the journeyman store.

Two ways in:
- programmatic (`engine.store.sql.migrate.upgrade`): the caller passes an open SQLAlchemy
  connection in `config.attributes["connection"]`; logging is left alone;
- command line (`alembic upgrade head` next to alembic.ini): the URL comes from
  `$JOURNEYMAN_DB`, else `sqlalchemy.url` in alembic.ini.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url

from engine.store.sql.pg_engine import postgres_engine
from engine.store.sql.tables import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = os.environ.get("JOURNEYMAN_DB") or config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    url = os.environ.get("JOURNEYMAN_DB") or config.get_main_option("sqlalchemy.url")
    assert url, "set JOURNEYMAN_DB or sqlalchemy.url"
    # PostgreSQL: the store's own engine, which reads journeyman's settings out of the URL
    engine = (postgres_engine(url) if make_url(url).get_backend_name() == "postgresql"
              else create_engine(url))
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
