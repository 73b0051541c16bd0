"""Timers clustered by due time, with the unique key as their only other index.

Claiming due timers deletes rows; with a row id and three secondary indexes (due_at,
key, profile_id) each deletion dirtied random pages of four B-trees, and at a million
pending timers that was the whole cost. The table is now keyed (due_at, key), WITHOUT
ROWID on SQLite, so due rows are neighbours; the `profile_id` index goes (merges no
longer move timers: the runtime finds the profile through the enrollment). See
bench/timer_bench.py and docs/adr/0004.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
COLUMNS = "key, enrollment_id, profile_id, journey, step, occurrence, due_at"


def upgrade() -> None:
    op.create_table(
        "timers_v4",
        sa.Column("due_at", TS, primary_key=True),
        sa.Column("key", sa.String(512), primary_key=True, unique=True),
        sa.Column("enrollment_id", sa.String(255), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("journey", sa.String(255), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sqlite_with_rowid=False,
    )
    op.execute(f"INSERT INTO timers_v4 ({COLUMNS}) SELECT {COLUMNS} FROM timers")
    op.drop_table("timers")
    op.rename_table("timers_v4", "timers")


def downgrade() -> None:
    op.create_table(
        "timers_v3",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("enrollment_id", sa.String(255), nullable=False),
        sa.Column("profile_id", sa.String(255), nullable=False),
        sa.Column("journey", sa.String(255), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
    )
    op.execute(f"INSERT INTO timers_v3 ({COLUMNS}) SELECT {COLUMNS} FROM timers "
               "ORDER BY due_at")
    op.drop_table("timers")
    op.rename_table("timers_v3", "timers")
    op.create_index("ix_timers_due_at", "timers", ["due_at"])
    op.create_index("ix_timers_profile_id", "timers", ["profile_id"])
