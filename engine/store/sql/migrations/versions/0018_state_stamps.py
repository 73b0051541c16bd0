"""Stamps of the profiles' state, for SQLite's optimistic batches (issue 11).

A SQLite worker used to handle a batch of events inside its write transaction, so
nothing else could write meanwhile (the API's ingest waited for the batch) and a second
worker on the file only took turns with the first. Now it reads and handles a batch
without the write lock and writes it in a short transaction, after checking that no
one wrote the state it read: every write of a profile's state (its profile, enrollments,
entries, segments, timers, sends, identities) adds one to the stamps of the slots its
profiles and identifiers hash to, and any other write adds one to slot 0, which every
check reads (engine/store/sql/stamps.py). A table of at most 2**20 + 1 small rows.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "state_stamps",
        sa.Column("slot", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("stamp", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state_stamps")
