"""Engagement (issue 15): tracked clicks and opens, bounces and complaints, the
suppression list, and the worth of a reached goal (for attribution).

- engagements: one row per click, open, unsubscribe, bounce or complaint of a message,
  by its send key; `human` is false for a click the scanner rule filtered.
- suppressions: addresses no journey sends to any more (hard bounces, complaints, an
  operator's `journeyman suppressions add`).
- goals.value: the goal's `value:` read from its event.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "engagements",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("message_key", sa.String(512), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("journey", sa.String(255), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("human", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
    )
    op.create_index("ix_engagements_message_key", "engagements", ["message_key"])
    op.create_index("ix_engagements_journey", "engagements", ["journey"])
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("details", JSONDOC, nullable=False),
    )
    with op.batch_alter_table("goals") as batch:
        batch.add_column(sa.Column("value", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("goals") as batch:
        batch.drop_column("value")
    op.drop_table("suppressions")
    op.drop_index("ix_engagements_journey", table_name="engagements")
    op.drop_index("ix_engagements_message_key", table_name="engagements")
    op.drop_table("engagements")
