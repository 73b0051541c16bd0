"""The outbox looked up by profile and enrollment (issue 11).

A send withdrawn because its enrollment ended (`exit_when` after the last step, the
send still held by quiet hours or a retry) is marked skipped with `WHERE profile_id =
? AND enrollment_id = ? AND status = 'pending'`. SQLite has no statistics unless
ANALYZE is run, and with one equality on each of `ix_outbox_profile_id` (profile_id)
and `ix_outbox_status_next` (status, next_attempt_at) it chose the status index:
every withdrawal walked every pending send (4% of the worker's time at 10,000 events
of bench/journey_bench.py, and growing with the outbox). An index on (profile_id,
enrollment_id) matches two equalities, so it is the one chosen; it replaces the index
on profile_id alone, whose lookups it serves as well.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_profile_enrollment", "outbox", ["profile_id", "enrollment_id"])
    op.drop_index("ix_outbox_profile_id", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_profile_id", "outbox", ["profile_id"])
    op.drop_index("ix_outbox_profile_enrollment", table_name="outbox")
