"""Journey versions (`journeyman plan`/`apply`, issue 14): every deployed version of
every journey, with its file and the digest of its content, and the journey's status
(active, paused, archived). An index of the active enrollments by (journey, version,
state), so `plan` counts the people on each step without reading the history.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journey_versions",
        sa.Column("journey", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("file", sa.String(1024), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_enrollments_in_flight", "enrollments", ["journey", "version", "state"],
                    sqlite_where=sa.text("status = 'active'"),
                    postgresql_where=sa.text("status = 'active'"))


def downgrade() -> None:
    op.drop_index("ix_enrollments_in_flight", table_name="enrollments")
    op.drop_table("journey_versions")
