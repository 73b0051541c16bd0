"""The dashboard (issue 16): its users, and the indexes its counts read.

- users: a name, scrypt's salted hash of the password, a role (viewer or editor);
- enrollments (journey, status, state): how many people are on each step now, read
  from the index alone; enrollments (journey, entered_at): the cohort that entered a
  journey in a period;
- outbox (journey, created_at) and decisions (journey, at): sends and skips per journey
  and step in a period.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_enrollments_journey_status_state", "enrollments",
                    ["journey", "status", "state"])
    op.create_index("ix_enrollments_journey_entered", "enrollments", ["journey", "entered_at"])
    op.create_index("ix_outbox_journey_created", "outbox", ["journey", "created_at"])
    op.create_index("ix_decisions_journey_at", "decisions", ["journey", "at"])


def downgrade() -> None:
    op.drop_index("ix_decisions_journey_at", table_name="decisions")
    op.drop_index("ix_outbox_journey_created", table_name="outbox")
    op.drop_index("ix_enrollments_journey_entered", table_name="enrollments")
    op.drop_index("ix_enrollments_journey_status_state", table_name="enrollments")
    op.drop_table("users")
