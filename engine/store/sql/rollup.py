"""The dashboard rollup's counts of the enrollments a statement inserts or updates, kept
by the writer on SQLite (migration 0020); PostgreSQL's statement triggers keep them there
(migrations 0015, 0017), and deletes are counted by a trigger on both.

`journey_rollup` holds, per journey and hour of entry, the counts of that hour's cohort
(migration 0012 lists the kinds: entered, converted, status, passed, variant,
variant_won). A writer that inserts or updates enrollments on SQLite does it inside
`recounted(conn, ids)`: the stored rows' counts are taken out before, the written rows'
counts added after, each as one `INSERT ... SELECT ... GROUP BY` over the rows by id.
Why not triggers: a per-row trigger cost an executemany row 11 us more even when it
did nothing (a statement journal per row, see migration 0020), two thirds of a batch's
enrollment upsert.

Every writer of enrollments goes through it: the unit of work's batch
(engine/store/sql/units.py), `put_enrollment`, a merge's losers, `move_enrollments`.
A new writer must too, or the dashboard's counts drift from the table
(tests/store/test_rollup.py recounts the whole rollup after the engine's writes, a
version's move and a merge).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from engine.jsonfast import dumps
from engine.store.sql.driver import driver_execute

_KEY = "journey, bucket, kind, step, variant"


def count_sql(where: str = "", sign: str = ":sign") -> str:
    """SQLite: add the counts of the enrollments `where` selects, each times `sign` (a
    parameter's placeholder), to the rollup: migration 0012's six kinds of count over the
    rows, summed per key. Without `where`, the whole table (bench/dashboard_bench.py fills
    it with sqlite3)."""
    return (
        "WITH e AS (SELECT journey AS j, substr(entered_at, 1, 13) AS b, status, "
        f"goal_reached_at IS NOT NULL AS won, visits, variants FROM enrollments {where}) "
        f"INSERT INTO journey_rollup ({_KEY}, n) "
        f"SELECT j, b, k, s, v, count(*) * {sign} FROM ("
        "SELECT j, b, 'entered' AS k, '' AS s, '' AS v FROM e "
        "UNION ALL SELECT j, b, 'converted', '', '' FROM e WHERE won "
        "UNION ALL SELECT j, b, 'status', status, '' FROM e "
        "UNION ALL SELECT j, b, 'passed', x.key, '' FROM e, json_each(e.visits) x "
        "UNION ALL SELECT j, b, 'variant', x.key, CAST(x.value AS TEXT) "
        "FROM e, json_each(e.variants) x "
        "UNION ALL SELECT j, b, 'variant_won', x.key, CAST(x.value AS TEXT) "
        "FROM e, json_each(e.variants) x WHERE won"
        f") WHERE true GROUP BY j, b, k, s, v ON CONFLICT ({_KEY}) "
        "DO UPDATE SET n = journey_rollup.n + excluded.n")


# The enrollments named by the first parameter, a JSON array (one parameter however
# many), times the second: run at the driver (driver.py says why)
COUNT = count_sql("WHERE id IN (SELECT value FROM json_each(?))", sign="?")


@contextmanager
def recounted(conn: Connection, ids: Collection[str]) -> Iterator[None]:
    """Around a statement that inserts or updates the enrollments `ids` (in `conn`'s
    transaction): their counts out of the rollup before, back in after. Nothing on
    PostgreSQL, whose triggers count."""
    if conn.dialect.name != "sqlite" or not ids:
        yield
        return
    named = dumps(list(ids))
    driver_execute(conn, COUNT, (named, -1))
    yield
    driver_execute(conn, COUNT, (named, 1))
