"""The dashboard rollup's statement trigger at about half its cost (issue 11), PostgreSQL.

Migration 0015's trigger function made the enrollments' batched upsert cost twice what
the upsert alone did: in process on PostgreSQL (bench/journey_bench.py, 3,000 events)
that statement was 45% of the database's execution time, and for 50 rows the
triggers took 2.4 ms of 3.9 ms. Two causes:

- An `INSERT ... ON CONFLICT DO UPDATE` fires the UPDATE trigger even when it updated
  no row (a batch of new enrollments), and the INSERT trigger when it inserted none;
  each still ran its whole query. Now each returns at once on an empty transition
  table.
- The rows came from `jm_rollup_rows()`, a SQL function called per enrollment
  (`LATERAL`), and an update joined the old and new rows twice. Now one query reads the
  transition table once, as a CTE, and unions the six kinds of count over it.

The counts are the same (tests/store/test_analytics.py checks the rollup against the
table after inserts, batched upserts that change some counted columns and not others,
goal, ends and deletes). With it, for 50 rows: new 3.9 -> 2.8 ms, updated 3.4 -> 2.5 ms.
SQLite keeps its per-row triggers (migration 0012): there they cost nothing measurable.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_0012 = importlib.import_module("engine.store.sql.migrations.versions.0012_journey_rollup")
_0015 = importlib.import_module("engine.store.sql.migrations.versions.0015_rollup_per_statement")
KEY: str = _0012.KEY
COLUMNS = "journey, entered_at, status, goal_reached_at, visits, variants"
# 0012's WHEN clause on the pair of an old (o) and a new (n) row
CHANGED: str = _0012.PG_CHANGED.replace("OLD.", "o.").replace("NEW.", "n.")


def _append(source: str) -> str:
    """Append the deltas of `source` (rows of COLUMNS and a sign `d`) to the deltas
    table: the same six kinds of count as 0012's `jm_rollup_rows`, summed per key."""
    return (
        "WITH e AS (SELECT s.journey AS j, to_char(s.entered_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24') AS b, s.status, s.goal_reached_at IS NOT NULL AS won, "
        f"s.visits, s.variants, s.d FROM ({source}) s) "
        f"INSERT INTO journey_rollup_delta ({KEY}, n) "
        "SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM ("
        "SELECT j, b, 'entered' AS k, '' AS s, '' AS v, d FROM e "
        "UNION ALL SELECT j, b, 'converted', '', '', d FROM e WHERE won "
        "UNION ALL SELECT j, b, 'status', status, '', d FROM e "
        "UNION ALL SELECT j, b, 'passed', x.key, '', d FROM e, jsonb_each(e.visits) x "
        "UNION ALL SELECT j, b, 'variant', x.key, x.value, d "
        "FROM e, jsonb_each_text(e.variants) x "
        "UNION ALL SELECT j, b, 'variant_won', x.key, x.value, d "
        "FROM e, jsonb_each_text(e.variants) x WHERE won"
        ") r GROUP BY 1, 2, 3, 4, 5 HAVING sum(r.d) <> 0 ORDER BY 1, 2, 3, 4, 5;")


_NEW_COLUMNS = ", ".join(f"n.{c}" for c in COLUMNS.split(", "))
_OLD_COLUMNS = ", ".join(f"o.{c}" for c in COLUMNS.split(", "))
_PAIRS = f"FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE {CHANGED}"

FUNCTION = f"""
CREATE OR REPLACE FUNCTION jm_enrollments_rollup_batch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NOT EXISTS (SELECT FROM new_rows) THEN RETURN NULL; END IF;
    {_append(f"SELECT {COLUMNS}, 1 AS d FROM new_rows")}
  ELSIF TG_OP = 'DELETE' THEN
    IF NOT EXISTS (SELECT FROM old_rows) THEN RETURN NULL; END IF;
    {_append(f"SELECT {COLUMNS}, -1 AS d FROM old_rows")}
  ELSE
    IF NOT EXISTS (SELECT FROM new_rows) THEN RETURN NULL; END IF;
    {_append(f"SELECT {_NEW_COLUMNS}, 1 AS d {_PAIRS} "
             f"UNION ALL SELECT {_OLD_COLUMNS}, -1 {_PAIRS}")}
  END IF;
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_0015.STATEMENT_FUNCTION.replace("CREATE FUNCTION",
                                                    "CREATE OR REPLACE FUNCTION"))
