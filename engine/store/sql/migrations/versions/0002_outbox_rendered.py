"""The outbox holds the rendered message; sends go through it, so `send_keys` goes.

Sends are rendered when their step runs and queued in the same transaction
(engine/runtime/runner.py); the dispatcher (engine/runtime/dispatch.py) delivers them. The old
`context` column (a template context to render later) becomes `rendered`, and the
`send_keys` table, the exactly-once guard of direct sends, is replaced by the
outbox's unique `send_key`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("context", new_column_name="rendered", existing_type=JSONDOC,
                           existing_nullable=False)
    op.drop_table("send_keys")


def downgrade() -> None:
    op.create_table(
        "send_keys",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("claimed_at", TS, nullable=False),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("rendered", new_column_name="context", existing_type=JSONDOC,
                           existing_nullable=False)
