"""PostgreSQL: the hot tables analyzed while they grow fast (engine/store/sql/statistics.py).
On a new database the planner has no statistics and a prepared statement keeps what it
guessed; the service analyzes a table once its changes since the last analysis reach
its size."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text

from engine.store import SqlStore
from engine.store.sql.statistics import MIN_CHANGES


def _changed_since_analyze(store: SqlStore, table: str, *, at_least: int = 0) -> int:
    """The table's changes since its last analysis, as the statistics show them: a
    backend reports its counts when idle, at most once a second, so wait for
    `at_least` (up to 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        with store.sql_engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            n = int(conn.execute(text(
                "SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = :t"),
                {"t": table}).scalar_one())
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def _fill_inbox(store: SqlStore, n: int, start: int = 0) -> None:
    store.accept_events([{"messageId": f"m{i}", "type": "track", "event": "Tick",
                          "userId": f"u{i}"} for i in range(start, start + n)])


@pytest.mark.postgres
def test_a_table_that_doubled_is_analyzed_and_a_quiet_one_is_not(pg_new_database: Any) -> None:
    store = SqlStore(pg_new_database(), create=True)  # a database of its own: its counts
    try:
        _fill_inbox(store, MIN_CHANGES // 2)
        assert _changed_since_analyze(store, "inbox",
                                      at_least=MIN_CHANGES // 2) >= MIN_CHANGES // 2
        assert "inbox" not in store.refresh_statistics()  # fewer than MIN_CHANGES
        _fill_inbox(store, MIN_CHANGES, start=MIN_CHANGES)
        assert _changed_since_analyze(store, "inbox", at_least=MIN_CHANGES) >= MIN_CHANGES
        assert "inbox" in store.refresh_statistics()
        deadline = time.monotonic() + 5  # the analysis's own report, as the view shows it
        while _changed_since_analyze(store, "inbox") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _changed_since_analyze(store, "inbox") == 0
        assert "inbox" not in store.refresh_statistics()  # nothing changed since
    finally:
        store.close()


@pytest.mark.postgres
def test_an_analysis_leaves_the_json_documents_out(pg_new_database: Any) -> None:
    """Migration 0019: ANALYZE spent most of its time on the documents, which no query
    filters on; the columns the queries filter on keep their statistics."""
    store = SqlStore(pg_new_database(), create=True)
    try:
        _fill_inbox(store, MIN_CHANGES)
        with store.sql_engine.begin() as conn:
            conn.execute(text("ANALYZE inbox"))
            analyzed = {row[0] for row in conn.execute(text(
                "SELECT attname FROM pg_stats WHERE tablename = 'inbox'"))}
        assert {"profile_id", "status"} <= analyzed
        assert "event" not in analyzed
    finally:
        store.close()


def test_sqlite_has_nothing_to_analyze(tmp_path: Any) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 's.db'}", create=True)
    try:
        assert store.refresh_statistics() == []
    finally:
        store.close()
