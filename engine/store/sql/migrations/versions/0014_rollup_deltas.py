"""The dashboard's rollup without lock waits between workers (issue 11), PostgreSQL.

Migration 0012's trigger upserted `journey_rollup` in the transaction of every
enrollment write. Every worker's batch touches the same few rows (a journey's hour:
`entered`, `status/active`, `passed/<step>`), so on PostgreSQL a second worker's batch
waited for the first one's commit, and when two batches reached two such rows in
opposite orders PostgreSQL broke the deadlock after `deadlock_timeout` (1 s) by failing
one of them: 22 deadlocks in one 6,000-event run of bench/scaleout_bench.py with two
workers, the CPU idle meanwhile, two workers slower than one.

Now the trigger appends its differences to `journey_rollup_delta` (an insert takes no
lock another insert waits for), readers add the deltas to the rollup, and
`fold_rollup_deltas` (the service's retention loop, once a minute) moves them into
`journey_rollup` in one statement, one folder at a time (an advisory lock). SQLite has
one writer at a time: its triggers keep writing `journey_rollup` directly.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Migration 0012's trigger function, as it was created there (its module name starts
# with a digit: imported by name).
_0012 = importlib.import_module("engine.store.sql.migrations.versions.0012_journey_rollup")
_TRIGGER = _0012.PG_FUNCTIONS[_0012.PG_FUNCTIONS.index(
    "CREATE FUNCTION jm_enrollments_rollup()"):].replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
KEY: str = _0012.KEY
UPSERT: str = _0012.UPSERT
# The same function appending its rows to the deltas: no conflict clause, no lock.
DELTAS = _TRIGGER.replace("INSERT INTO journey_rollup (", "INSERT INTO journey_rollup_delta (") \
    .replace(f" {UPSERT};", ";")
FOLD = (f"WITH moved AS (DELETE FROM journey_rollup_delta RETURNING {KEY}, n) "
        f"INSERT INTO journey_rollup ({KEY}, n) SELECT {KEY}, sum(n) FROM moved "
        f"GROUP BY {KEY} ORDER BY {KEY} {UPSERT}")


def upgrade() -> None:
    op.create_table(
        "journey_rollup_delta",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("journey", sa.String(255), nullable=False),
        sa.Column("bucket", sa.String(13), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("variant", sa.String(255), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_journey_rollup_delta_journey_bucket", "journey_rollup_delta",
                    ["journey", "bucket"])
    if op.get_context().dialect.name == "postgresql":
        assert DELTAS.count("journey_rollup_delta") == 3  # insert, delete, update
        assert UPSERT not in DELTAS
        op.execute(DELTAS)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_TRIGGER)
        op.execute(FOLD)
    op.drop_index("ix_journey_rollup_delta_journey_bucket", table_name="journey_rollup_delta")
    op.drop_table("journey_rollup_delta")
