"""Caps that hold: when each send was admitted by the policy (issue 14).

The dispatcher decides a profile's competing sends in one transaction and counts, for
frequency caps, the sends admitted in the window (engine/runtime/dispatch.py); the
index (profile_id, admitted_at) answers "this profile's sends admitted since" without
reading its history. Sends already delivered count as admitted when they were sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("outbox", sa.Column("admitted_at", TS, nullable=True))
    op.execute("UPDATE outbox SET admitted_at = sent_at WHERE status = 'sent'")
    op.create_index("ix_outbox_profile_admitted", "outbox", ["profile_id", "admitted_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_profile_admitted", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("admitted_at")
