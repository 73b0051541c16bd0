"""Engagements are found by message, kind, link and time: the bound on replayed links
counts them at every click (engine/runtime/tracking.py RECORD_LIMIT).

A tracked click or open counts the like engagements of its message recorded in the last
hour (`WHERE message_key = :key AND kind = :kind AND human = :human AND position = :pos
AND at >= :since`), under a lock of the message's outbox row. On the index on
`message_key` alone it read every engagement the message ever had: a loop replaying
one link (~240 rows a day) took a click from 1.5 ms at 300 rows to 4.2 ms at 5,600 on
SQLite (a reviewer, 2026-12-07), so the abuse the bound stops made every click of that
message slower. On (message_key, kind, position, human, at) the count reads at most the
bound's rows; it serves every lookup by message_key alone too, so it replaces that
index.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_engagements_message_kind", "engagements",
                    ["message_key", "kind", "position", "human", "at"])
    op.drop_index("ix_engagements_message_key", table_name="engagements")


def downgrade() -> None:
    op.create_index("ix_engagements_message_key", "engagements", ["message_key"])
    op.drop_index("ix_engagements_message_kind", table_name="engagements")
