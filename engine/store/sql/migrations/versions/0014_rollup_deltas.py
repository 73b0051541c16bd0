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

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "journey, bucket, kind, step, variant"


def _function(into: str, upsert: str) -> str:
    """The trigger function of migration 0012, writing `into` (`upsert`: its conflict
    clause, or '')."""
    return f"""
CREATE OR REPLACE FUNCTION jm_enrollments_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {into} ({KEY}, n)
    SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM jm_rollup_rows(NEW.journey,
      NEW.entered_at, NEW.status, NEW.goal_reached_at IS NOT NULL, NEW.visits, NEW.variants,
      1) r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 {upsert};
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO {into} ({KEY}, n)
    SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM jm_rollup_rows(OLD.journey,
      OLD.entered_at, OLD.status, OLD.goal_reached_at IS NOT NULL, OLD.visits, OLD.variants,
      -1) r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 {upsert};
  ELSE
    INSERT INTO {into} ({KEY}, n)
    SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM (
      SELECT * FROM jm_rollup_rows(NEW.journey, NEW.entered_at, NEW.status,
        NEW.goal_reached_at IS NOT NULL, NEW.visits, NEW.variants, 1)
      UNION ALL SELECT * FROM jm_rollup_rows(OLD.journey, OLD.entered_at, OLD.status,
        OLD.goal_reached_at IS NOT NULL, OLD.visits, OLD.variants, -1)) r
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(r.d) <> 0 ORDER BY 1, 2, 3, 4, 5 {upsert};
  END IF;
  RETURN NULL;
END $$;
"""


UPSERT = f"ON CONFLICT ({KEY}) DO UPDATE SET n = journey_rollup.n + excluded.n"
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
        op.execute(_function("journey_rollup_delta", ""))


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_function("journey_rollup", UPSERT))
        op.execute(FOLD)
    op.drop_index("ix_journey_rollup_delta_journey_bucket", table_name="journey_rollup_delta")
    op.drop_table("journey_rollup_delta")
