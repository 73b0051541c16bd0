"""The outbox's queue index carries the id, its order's tie-break; the claim finds its
profiles' due sends by (profile_id, status, next_attempt_at) (issue 11).

A dispatcher's claim reads the head of the queue: `WHERE status = 'pending' AND
next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT :limit` (FOR UPDATE SKIP
LOCKED on PostgreSQL). On `ix_outbox_status_next` (status, next_attempt_at) PostgreSQL
had every due row in due order but not in id order among those due at the same
instant, so it fetched and sorted all of them to return 50: a timer storm queues its
sends due at one instant, and with 100,000 due each claim took 40-75 ms (an external
merge sort on disk), with statistics or without. On (status, next_attempt_at, id) the
order is the index's, and a claim reads its 50 rows (0.1 ms). SQLite's index entries
end with the rowid (`id`) already, so its claims read the same rows in the same order
either way; it gets the same index so that both schemas are one.

The claim then takes every due send of the head's profiles (`WHERE profile_id IN (...)
AND status = 'pending' AND next_attempt_at <= :now`). On the queue's index SQLite walked
every due send to find those profiles (15-30 ms a claim of 50 with 100,000 due), and
PostgreSQL without statistics ANDed that index in; by an index on profile_id alone both
read every send the profiles ever had, sent ones included (never deleted: 9.5 ms a claim
for 1,000 each). On (profile_id, status, next_attempt_at) a claim reads the due rows
alone, whatever the queue or the history holds.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_status_next_id", "outbox", ["status", "next_attempt_at", "id"])
    op.drop_index("ix_outbox_status_next", table_name="outbox")
    op.create_index("ix_outbox_profile_due", "outbox",
                    ["profile_id", "status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_profile_due", table_name="outbox")
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])
    op.drop_index("ix_outbox_status_next_id", table_name="outbox")
