"""Batched handling and failure isolation (issues 10 and 11).

- inbox: claims are part of the handling transaction (row locks, or SQLite's write
  lock), so the lease columns go; a failed event is held until `available_at` with its
  `last_error`, and a parked one holds its profile's later events. The profile index
  becomes (profile_id, id): "is this the profile's earliest waiting event?".
- timers: `attempts`, how often a timer failed to fire (it is retried, then parked).
- enrollments: a partial index of the active ones by profile (the rest is history).
- journey_entries: the compact index of a profile's past in each journey (how often it
  entered, when and as which enrollment it last did), so handling an event never loads
  the profile's history. Filled from the enrollments.
- failures: parked events, timers and sends, with their error and stack.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

BACKFILL = """
INSERT INTO journey_entries (profile_id, journey, entries, last_enrollment_id, last_entered_at)
SELECT profile_id, journey, n, id, entered_at FROM (
    SELECT profile_id, journey, id, entered_at,
           count(*) OVER (PARTITION BY profile_id, journey) AS n,
           row_number() OVER (PARTITION BY profile_id, journey
                              ORDER BY entered_at DESC, entry_seq DESC) AS newest
    FROM enrollments) AS ranked
WHERE newest = 1
"""


def upgrade() -> None:
    op.drop_index("ix_inbox_lease_until", table_name="inbox")
    op.drop_index("ix_inbox_profile_id", table_name="inbox")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("lease_owner")
        batch.drop_column("lease_until")
        batch.add_column(sa.Column("available_at", TS, nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    op.create_index("ix_inbox_profile_id", "inbox", ["profile_id", "id"])
    op.add_column("timers", sa.Column("attempts", sa.Integer(), nullable=False,
                                      server_default="0"))
    op.create_index("ix_enrollments_active", "enrollments", ["profile_id"],
                    sqlite_where=sa.text("status = 'active'"),
                    postgresql_where=sa.text("status = 'active'"))
    op.create_table(
        "journey_entries",
        sa.Column("profile_id", sa.String(255), primary_key=True),
        sa.Column("journey", sa.String(255), primary_key=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("last_enrollment_id", sa.String(255), nullable=True),
        sa.Column("last_entered_at", TS, nullable=True),
    )
    op.execute(BACKFILL)
    op.create_table(
        "failures",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(512), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("journey", sa.String(255), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("stack", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parked_at", TS, nullable=False),
        sa.Column("payload", JSONDOC, nullable=False),
    )
    op.create_index("ix_failures_profile_id", "failures", ["profile_id"])


def downgrade() -> None:
    op.drop_index("ix_failures_profile_id", table_name="failures")
    op.drop_table("failures")
    op.drop_table("journey_entries")
    op.drop_index("ix_enrollments_active", table_name="enrollments")
    with op.batch_alter_table("timers") as batch:
        batch.drop_column("attempts")
    op.drop_index("ix_inbox_profile_id", table_name="inbox")
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("last_error")
        batch.drop_column("available_at")
        batch.add_column(sa.Column("lease_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_until", TS, nullable=True))
    op.create_index("ix_inbox_profile_id", "inbox", ["profile_id"])
    op.create_index("ix_inbox_lease_until", "inbox", ["lease_until"])
