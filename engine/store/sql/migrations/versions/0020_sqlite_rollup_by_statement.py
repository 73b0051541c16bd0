"""SQLite: the dashboard rollup's counts of inserted and updated enrollments are kept by
the store's own statements instead of per-row triggers (issue 11).

Migration 0012's INSERT and UPDATE triggers cost an enrollment upsert two thirds of its
time: 24 us a row in process, 7 us of it the upsert (bench/journey_bench.py's workload,
3,000 events, 5,000 rows). Most of the cost is not the trigger's work: with any AFTER
INSERT trigger on `enrollments`, even one that does nothing (`WHEN` false), an
executemany row cost 11 us more. A statement that may fire a trigger keeps a statement
journal, a copy of every page it changes before changing it, and each row of an
executemany is a statement of its own that touches the table and its six indexes.

Now the writers count instead, per statement (engine/store/sql/rollup.py `recounted`):
before a batch's upsert, the stored rows' counts are taken out of `journey_rollup`; after
it, the written rows' counts are added, each as one `INSERT ... SELECT ... GROUP BY` over
the rows by id. The counts are the same (tests/store/test_rollup.py checks the whole
rollup against a recount of the table, tests/store/test_analytics.py the cohorts).
The DELETE trigger stays: erasure is rare, and deleting keeps no statement journal per
row of an executemany.

PostgreSQL is unchanged: its triggers are per statement already (migrations 0015, 0017).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_0012 = importlib.import_module("engine.store.sql.migrations.versions.0012_journey_rollup")


def _sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        op.execute("DROP TRIGGER IF EXISTS tr_enrollments_rollup_ins")
        op.execute("DROP TRIGGER IF EXISTS tr_enrollments_rollup_upd")


def downgrade() -> None:
    if not _sqlite():
        return
    rows = _0012._sqlite_rows
    op.execute("CREATE TRIGGER tr_enrollments_rollup_ins AFTER INSERT ON enrollments "
               f"BEGIN {_0012._sqlite_apply(rows('NEW', '1'))} END")
    both = f"{rows('NEW', '1')} UNION ALL {rows('OLD', '-1')}"
    op.execute("CREATE TRIGGER tr_enrollments_rollup_upd AFTER UPDATE ON enrollments "
               f"WHEN {_0012.CHANGED} BEGIN {_0012._sqlite_apply(both)} END")
