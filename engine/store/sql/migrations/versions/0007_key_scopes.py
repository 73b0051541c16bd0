"""API keys get scopes and a rate (issue 13 §3): what a key may do (track, identify,
alias, consent, admin) and how many events per second it may send. Existing keys keep
NULL in both: their scopes follow their admin flag (a server key: every scope but admin),
their rate is the default for their kind. And an index on events.received_at, by which
the event retention deletes old events in small chunks.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("scopes", sa.String(255), nullable=True))
        batch.add_column(sa.Column("rate", sa.Integer(), nullable=True))
    op.create_index("ix_events_received_at", "events", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_events_received_at", table_name="events")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("rate")
        batch.drop_column("scopes")
