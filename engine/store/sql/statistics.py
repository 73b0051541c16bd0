"""PostgreSQL: the hot tables analyzed while they grow fast.

A new database has no statistics, and autovacuum analyzes a table only a minute or
more after it has grown (`autovacuum_naptime`, its thresholds). Until then the planner
guesses from a table it believes nearly empty, and a prepared statement keeps the guess.
On new databases (every bench run; a new install; the first minutes after a bulk
import) `auto_explain` caught, per batch and growing with the tables: the worker's load
of its profiles' active enrollments reading every active enrollment (8,009 rows filtered
out for 149, through the index on (journey, version, state) instead of the one on
profile_id), and the dispatcher's look at recent admissions reading every pending or
sent send. (The enrollment upsert's own subquery is steered in its SQL: state.py.)

`refresh_statistics` (the service calls it every few seconds) runs ANALYZE on a hot
table once the rows changed since its last analysis reach its size (and at least
`MIN_CHANGES`): each doubling while a table is small, rarely once it is large, and a
queue table (inbox, timers) each time its rows have turned over. One process at a time
(an advisory lock), and never waiting behind autovacuum's own ANALYZE (`lock_timeout`).
SQLite plans without statistics (its heuristics hold, tests/store/test_query_plans.py).
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from engine.store.sql.db import SqlBase

log = logging.getLogger("journeyman.store")

HOT_TABLES = ("enrollments", "outbox", "inbox", "timers", "profiles", "identities",
              "journey_entries", "segment_members", "decisions", "events")
MIN_CHANGES = 500
_LOCK = (0x6A6D, 3)  # "jm", 3: one process at a time (1: migrations, 2: the rollup fold)


class StatisticsQueries(SqlBase):
    def refresh_statistics(self) -> list[str]:
        """ANALYZE the hot tables that changed as much as their size since they were
        last analyzed; returns their names (none on SQLite, or while another process
        does it)."""
        if not self._pg:
            return []
        done: list[str] = []
        with self._db.connect() as conn, conn.begin():
            if not conn.execute(text("SELECT pg_try_advisory_xact_lock(:a, :b)"),
                                {"a": _LOCK[0], "b": _LOCK[1]}).scalar():
                return []
            rows = conn.execute(text(
                "SELECT relname, n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = ANY(:names)"),
                {"names": list(HOT_TABLES)}).all()
            stale = sorted(name for name, live, changed in rows
                           if changed >= max(MIN_CHANGES, live))
            conn.execute(text("SET LOCAL lock_timeout = '100ms'"))
            for name in stale:
                try:
                    with conn.begin_nested():
                        conn.execute(text(f"ANALYZE {name}"))  # a name from HOT_TABLES
                    done.append(name)
                except OperationalError as exc:  # autovacuum is analyzing it: fine
                    log.debug("ANALYZE %s skipped: %s", name, exc)
        return done
