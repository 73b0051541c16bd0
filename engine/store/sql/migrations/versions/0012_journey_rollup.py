"""The dashboard's rollup (issue 16): per journey and hour of entry, the counts of that
hour's cohort, kept up to date by triggers on `enrollments` in the transaction of every
write (the worker's batched upserts, `put_enrollment`, merges, erasure), and the
indexes the journey's KPIs and the live stream read.

`journey_rollup` (journey, bucket, kind, step, variant) -> n, `bucket` the hour the
enrollments entered (`YYYY-MM-DD HH`, UTC), `kind` one of:

- `entered` (step and variant ''): enrollments that entered in the hour;
- `converted`: of them, reached the goal;
- `status` (step = the status): of them, by status now;
- `passed` (step): of them, visited the step;
- `variant` (step = the split step, variant): of them, took the variant;
- `variant_won` (step, variant): of those, reached the goal.

An insert adds the row's contributions, a delete takes them away, an update that
changes the journey, entry time, status, visits, variants or goal does both (only the
net differences are written). Existing enrollments are counted once here.

Also: indexes engagements (journey, at) and goals (journey, at) for the KPIs of a
period, and `login_failures` (name, ip, at) for the login lockout.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "journey, bucket, kind, step, variant"
UPSERT = (f"ON CONFLICT ({KEY}) DO UPDATE SET n = journey_rollup.n + excluded.n")


def _sqlite_rows(r: str, sign: str, source: str = "") -> str:
    """SQLite: the contributions of row `r` (NEW or OLD in a trigger; an alias of
    `source`, e.g. "enrollments e", for the backfill) with `sign`."""
    b = f"substr({r}.entered_at, 1, 13)"
    won = f"{r}.goal_reached_at IS NOT NULL"
    base = f" FROM {source}" if source else ""
    more = f" FROM {source}, " if source else " FROM "

    def where(cond: str) -> str:
        return f" WHERE {cond}"

    return (
        f"SELECT {r}.journey AS j, {b} AS b, 'entered' AS k, '' AS s, '' AS v, {sign} AS d"
        f"{base} "
        f"UNION ALL SELECT {r}.journey, {b}, 'converted', '', '', {sign}{base}{where(won)} "
        f"UNION ALL SELECT {r}.journey, {b}, 'status', {r}.status, '', {sign}{base} "
        f"UNION ALL SELECT {r}.journey, {b}, 'passed', vi.key, '', {sign}"
        f"{more}json_each({r}.visits) vi "
        f"UNION ALL SELECT {r}.journey, {b}, 'variant', va.key, CAST(va.value AS TEXT), {sign}"
        f"{more}json_each({r}.variants) va "
        f"UNION ALL SELECT {r}.journey, {b}, 'variant_won', va.key, CAST(va.value AS TEXT), "
        f"{sign}{more}json_each({r}.variants) va{where(won)}")


CHANGED = ("OLD.journey IS NOT NEW.journey OR OLD.entered_at IS NOT NEW.entered_at "
           "OR OLD.status IS NOT NEW.status OR OLD.visits IS NOT NEW.visits "
           "OR OLD.variants IS NOT NEW.variants "
           "OR (OLD.goal_reached_at IS NULL) <> (NEW.goal_reached_at IS NULL)")


def _sqlite_apply(rows: str) -> str:
    return (f"INSERT INTO journey_rollup ({KEY}, n) SELECT j, b, k, s, v, sum(d) "
            f"FROM ({rows}) WHERE true GROUP BY j, b, k, s, v HAVING sum(d) <> 0 {UPSERT};")


PG_FUNCTIONS = f"""
CREATE FUNCTION jm_rollup_rows(p_journey text, p_entered timestamptz, p_status text,
                               p_won boolean, p_visits jsonb, p_variants jsonb, p_d integer)
RETURNS TABLE (j text, b text, k text, s text, v text, d integer)
LANGUAGE sql STABLE AS $$
  WITH h AS (SELECT to_char(p_entered AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') AS hb)
  SELECT p_journey, h.hb, 'entered', '', '', p_d FROM h
  UNION ALL SELECT p_journey, h.hb, 'converted', '', '', p_d FROM h WHERE p_won
  UNION ALL SELECT p_journey, h.hb, 'status', p_status, '', p_d FROM h
  UNION ALL SELECT p_journey, h.hb, 'passed', x.key, '', p_d FROM h, jsonb_each(p_visits) x
  UNION ALL SELECT p_journey, h.hb, 'variant', x.key, x.value, p_d
    FROM h, jsonb_each_text(p_variants) x
  UNION ALL SELECT p_journey, h.hb, 'variant_won', x.key, x.value, p_d
    FROM h, jsonb_each_text(p_variants) x WHERE p_won
$$;

CREATE FUNCTION jm_enrollments_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO journey_rollup ({KEY}, n)
    SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM jm_rollup_rows(NEW.journey,
      NEW.entered_at, NEW.status, NEW.goal_reached_at IS NOT NULL, NEW.visits, NEW.variants,
      1) r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 {UPSERT};
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO journey_rollup ({KEY}, n)
    SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM jm_rollup_rows(OLD.journey,
      OLD.entered_at, OLD.status, OLD.goal_reached_at IS NOT NULL, OLD.visits, OLD.variants,
      -1) r GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5 {UPSERT};
  ELSE
    INSERT INTO journey_rollup ({KEY}, n)
    SELECT r.j, r.b, r.k, r.s, r.v, sum(r.d) FROM (
      SELECT * FROM jm_rollup_rows(NEW.journey, NEW.entered_at, NEW.status,
        NEW.goal_reached_at IS NOT NULL, NEW.visits, NEW.variants, 1)
      UNION ALL SELECT * FROM jm_rollup_rows(OLD.journey, OLD.entered_at, OLD.status,
        OLD.goal_reached_at IS NOT NULL, OLD.visits, OLD.variants, -1)) r
    GROUP BY 1, 2, 3, 4, 5 HAVING sum(r.d) <> 0 ORDER BY 1, 2, 3, 4, 5 {UPSERT};
  END IF;
  RETURN NULL;
END $$;
"""

PG_CHANGED = CHANGED.replace(" IS NOT ", " IS DISTINCT FROM ")


def upgrade() -> None:
    op.create_table(
        "journey_rollup",
        sa.Column("journey", sa.String(255), nullable=False),
        sa.Column("bucket", sa.String(13), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("variant", sa.String(255), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("journey", "bucket", "kind", "step", "variant",
                                name="pk_journey_rollup"),
    )
    # The KPIs of a period (clicks, opt-outs, goals).
    op.create_index("ix_engagements_journey_at", "engagements", ["journey", "at"])
    op.create_index("ix_goals_journey_at", "goals", ["journey", "at"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_login_failures_name_at", "login_failures", ["name", "at"])
    op.create_index("ix_login_failures_ip_at", "login_failures", ["ip", "at"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(PG_FUNCTIONS)
        op.execute("CREATE TRIGGER tr_enrollments_rollup_ins AFTER INSERT ON enrollments "
                   "FOR EACH ROW EXECUTE FUNCTION jm_enrollments_rollup()")
        op.execute("CREATE TRIGGER tr_enrollments_rollup_del AFTER DELETE ON enrollments "
                   "FOR EACH ROW EXECUTE FUNCTION jm_enrollments_rollup()")
        op.execute("CREATE TRIGGER tr_enrollments_rollup_upd AFTER UPDATE ON enrollments "
                   f"FOR EACH ROW WHEN ({PG_CHANGED}) EXECUTE FUNCTION jm_enrollments_rollup()")
        op.execute(f"INSERT INTO journey_rollup ({KEY}, n) SELECT r.j, r.b, r.k, r.s, r.v, "
                   "sum(r.d) FROM enrollments e, LATERAL jm_rollup_rows(e.journey, "
                   "e.entered_at, e.status, e.goal_reached_at IS NOT NULL, e.visits, "
                   "e.variants, 1) r GROUP BY 1, 2, 3, 4, 5")
    else:
        op.execute("CREATE TRIGGER tr_enrollments_rollup_ins AFTER INSERT ON enrollments "
                   f"BEGIN {_sqlite_apply(_sqlite_rows('NEW', '1'))} END")
        op.execute("CREATE TRIGGER tr_enrollments_rollup_del AFTER DELETE ON enrollments "
                   f"BEGIN {_sqlite_apply(_sqlite_rows('OLD', '-1'))} END")
        both = f"{_sqlite_rows('NEW', '1')} UNION ALL {_sqlite_rows('OLD', '-1')}"
        op.execute("CREATE TRIGGER tr_enrollments_rollup_upd AFTER UPDATE ON enrollments "
                   f"WHEN {CHANGED} BEGIN {_sqlite_apply(both)} END")
        op.execute(f"INSERT INTO journey_rollup ({KEY}, n) SELECT j, b, k, s, v, sum(d) FROM "
                   f"({_sqlite_rows('e', '1', 'enrollments e')}) "
                   "WHERE true GROUP BY j, b, k, s, v")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS tr_enrollments_rollup_ins"
               + (" ON enrollments" if _pg() else ""))
    op.execute("DROP TRIGGER IF EXISTS tr_enrollments_rollup_del"
               + (" ON enrollments" if _pg() else ""))
    op.execute("DROP TRIGGER IF EXISTS tr_enrollments_rollup_upd"
               + (" ON enrollments" if _pg() else ""))
    if _pg():
        op.execute("DROP FUNCTION IF EXISTS jm_enrollments_rollup()")
        op.execute("DROP FUNCTION IF EXISTS jm_rollup_rows(text, timestamptz, text, boolean, "
                   "jsonb, jsonb, integer)")
    op.drop_index("ix_login_failures_ip_at", table_name="login_failures")
    op.drop_index("ix_login_failures_name_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index("ix_goals_journey_at", table_name="goals")
    op.drop_index("ix_engagements_journey_at", table_name="engagements")
    op.drop_table("journey_rollup")


def _pg() -> bool:
    return op.get_context().dialect.name == "postgresql"
