"""PostgreSQL: no statistics gathered on the JSON documents (issue 11).

ANALYZE of a hot table (engine/store/sql/statistics.py runs it while the tables grow
fast on a new database; autovacuum does later) spent most of its time on the JSONB
documents: of 93 ms for `decisions` after a 3,000-event run (16,731 rows), 48 ms on
`details`; of 55 ms for `enrollments`, 38 ms on its five documents. No query filters,
joins or sorts on a whole document (the planner's only use of a column's statistics):
they are read and written whole. A statistics target of 0 leaves them out of every
ANALYZE; the columns the queries filter on keep theirs. SQLite gathers nothing here.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENTS = {
    "decisions": ("details",),
    "enrollments": ("data", "visits", "variants", "entry_event", "trigger_event"),
    "events": ("body",),
    "inbox": ("event",),
    "outbox": ("rendered",),
    "profiles": ("traits", "computed"),
}


def _set_statistics(target: int) -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, columns in DOCUMENTS.items():
        changes = ", ".join(f"ALTER COLUMN {c} SET STATISTICS {target}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _set_statistics(0)


def downgrade() -> None:
    _set_statistics(-1)  # the server's default_statistics_target again
