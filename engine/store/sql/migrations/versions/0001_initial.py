"""Initial schema: every table of the durable store (engine/store/sql/tables.py).

Revision ID: 0001
Revises:
Create Date: 2026-03-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained types: later application code must not change what an old migration
# does. Timestamps are timestamptz on PostgreSQL and fixed-width UTC text on SQLite
# (engine/store/sql/types.py); JSON is JSONB on PostgreSQL.
TS = sa.DateTime(timezone=True)
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", BIGID, primary_key=True, autoincrement=True)


def _s(name: str, length: int = 255, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=nullable)


def _ts(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    return sa.Column(name, TS, nullable=nullable)


def _json(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, JSONDOC, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(255), primary_key=True),
        _json("traits"), _json("computed"), _ts("created_at"), _ts("updated_at"),
    )
    op.create_table(
        "identities",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
        _s("profile_id"), _ts("created_at"),
    )
    op.create_index("ix_identities_profile_id", "identities", ["profile_id"])
    op.create_table(
        "events",
        _id(), _s("source"), _s("message_id"), _s("profile_id"), _json("body"),
        _ts("received_at"),
        sa.UniqueConstraint("source", "message_id", name="uq_events_source_message"),
    )
    op.create_index("ix_events_profile_id", "events", ["profile_id"])
    op.create_table(
        "inbox",
        _id(), _s("profile_id"), _json("event"), _s("status", 16),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _s("lease_owner", nullable=True), _ts("lease_until", nullable=True),
        _ts("created_at"),
    )
    op.create_index("ix_inbox_profile_id", "inbox", ["profile_id"])
    op.create_index("ix_inbox_lease_until", "inbox", ["lease_until"])
    op.create_table(
        "enrollments",
        sa.Column("id", sa.String(255), primary_key=True),
        _s("journey"), sa.Column("version", sa.Integer(), nullable=False), _s("profile_id"),
        _s("state"), _s("status", 16),
        _json("data"), _json("visits"), _json("variants"), _json("entry_event"),
        _json("trigger_event", nullable=True),
        _ts("entered_at"), _ts("updated_at"), _ts("ended_at", nullable=True),
        _s("exit_reason", nullable=True), _ts("goal_reached_at", nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("entry_seq", sa.Integer(), nullable=False),
    )
    op.create_index("ix_enrollments_profile_journey", "enrollments", ["profile_id", "journey"])
    op.create_table(
        "timers",
        _id(), sa.Column("key", sa.String(512), nullable=False, unique=True),
        _s("enrollment_id"), _s("profile_id"), _s("journey"), _s("step"),
        sa.Column("occurrence", sa.Integer(), nullable=False), _ts("due_at"),
    )
    op.create_index("ix_timers_due_at", "timers", ["due_at"])
    op.create_index("ix_timers_profile_id", "timers", ["profile_id"])
    op.create_table(
        "outbox",
        _id(), sa.Column("send_key", sa.String(512), nullable=False, unique=True),
        _s("enrollment_id"), _s("profile_id"), _s("journey"), _s("step"), _s("channel", 64),
        _s("template"), _s("to", 512, nullable=True), _json("context"), _s("status", 16),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _ts("next_attempt_at", nullable=True), sa.Column("last_error", sa.Text()),
        _ts("created_at"), _ts("sent_at", nullable=True),
    )
    op.create_index("ix_outbox_profile_id", "outbox", ["profile_id"])
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "send_keys",
        sa.Column("key", sa.String(512), primary_key=True), _ts("claimed_at"),
    )
    op.create_table(
        "decisions",
        _id(), _ts("at"), _s("profile_id"), _s("journey"), _s("step"), _s("what", 64),
        _s("reason"), _json("details"),
    )
    op.create_index("ix_decisions_profile_id", "decisions", ["profile_id"])
    op.create_table(
        "exits",
        _id(), _s("enrollment_id"), _s("profile_id"), _s("journey"), _s("step"), _s("reason"),
        _ts("at"),
    )
    op.create_index("ix_exits_profile_id", "exits", ["profile_id"])
    op.create_table(
        "goals",
        _id(), _s("enrollment_id"), _s("profile_id"), _s("journey"), _ts("at"),
    )
    op.create_index("ix_goals_profile_id", "goals", ["profile_id"])
    op.create_table(
        "segment_members",
        sa.Column("profile_id", sa.String(255), primary_key=True),
        sa.Column("journey", sa.String(255), primary_key=True),
        _ts("since"),
    )
    op.create_table(
        "api_keys",
        _id(), _s("name"), sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        _s("prefix", 16), sa.Column("admin", sa.Boolean(), nullable=False), _ts("created_at"),
        _ts("revoked_at", nullable=True),
    )
    op.create_index("ix_api_keys_name", "api_keys", ["name"])


def downgrade() -> None:
    for name in ("api_keys", "segment_members", "goals", "exits", "decisions", "send_keys",
                 "outbox", "timers", "enrollments", "inbox", "events", "identities",
                 "profiles"):
        op.drop_table(name)
