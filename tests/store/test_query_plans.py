"""The hot path's queries use their indexes on SQLite, whatever the table holds, and on
PostgreSQL before it has statistics (a prepared statement's generic plan).

Each query is captured as the store runs it and put to `EXPLAIN QUERY PLAN`. Found
by a storm of 100,000 cron timers (issue 10): a claim looked its rows up by `due_at`
alone, which all of them shared, and the identity lookup of every batch scanned the
whole identities table; both were row-value `IN`s."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from engine.core.model import ScheduleTimer
from engine.ports import Decision, WriteRun
from engine.store import SqlStore
from tests.store.conftest import make_sqlite_store
from tests.store.helpers import outbox_entry

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@contextmanager
def captured(store: SqlStore) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any,
               many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "DELETE", "UPDATE")):
            seen.append((statement, parameters[0] if many else parameters))

    event.listen(store.sql_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(store.sql_engine, "before_cursor_execute", before)


def plans(store: SqlStore, statements: list[tuple[str, Any]], table: str) -> list[str]:
    out = []
    with store.sql_engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        for statement, parameters in statements:
            if f" {table}" not in statement:
                continue
            rows = raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            out.append(" / ".join(str(r[-1]) for r in rows))
    assert out, f"no query on {table} was captured"
    return out


def fill_outbox(store: SqlStore, count: int, *, profile: str, status: str) -> None:
    """PostgreSQL: `count` sends due at T0, row i's profile and status given as SQL of i."""
    from sqlalchemy import text

    with store.sql_engine.begin() as conn:
        conn.execute(text(
            'INSERT INTO outbox (send_key, enrollment_id, profile_id, journey, step, channel, '
            'template, "to", rendered, status, attempts, next_attempt_at, created_at) '
            f"SELECT 'k' || i, 'e' || i, {profile}, 'j', 's', 'webhook', 't', NULL, "
            f"""'{{"template": "t", "channel": "webhook"}}', {status}, 0, :at, :at """
            "FROM generate_series(1, :count) AS i"), {"at": T0, "count": count})


def table_scans(plan: str) -> list[str]:
    """The plan's scans of a table or index; a list parameter read by `json_each` (the
    statements run at the driver, engine/store/sql/driver.py) is the ids given, not a
    table."""
    return [step for step in plan.split(" / ")
            if "SCAN" in step and "json_each VIRTUAL TABLE" not in step]


def test_claiming_due_timers_finds_and_deletes_them_by_index(
        sqlite_template: Path, tmp_path: Path) -> None:
    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        store.add_timers([ScheduleTimer(key=f"cron:j:p{i}", enrollment_id=f"e{i}",
                                        profile_id=f"p{i}", journey="j", step="s",
                                        due_at=T0, occurrence=0) for i in range(50)])
        with store.transaction(), captured(store) as seen:
            assert len(store.claim_due_timers(T0 + timedelta(seconds=1), 10)) == 10
        for plan in plans(store, seen, "timers"):
            assert not table_scans(plan), plan
            # every timer of a storm shares one due_at: a lookup by it alone walks them all
            assert "(due_at=?)" not in plan, plan
    finally:
        store.close()


def test_identities_are_looked_up_by_their_primary_key(
        sqlite_template: Path, tmp_path: Path) -> None:
    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        run = WriteRun()
        for i in range(50):
            run.identities[("user_id", f"u{i}")] = f"p{i}"
        store.write_changes([run])
        with captured(store) as seen:
            found = store.load_identities([("user_id", "u1"), ("anonymous_id", "a1"),
                                           ("user_id", "u2")])
        assert found == {("user_id", "u1"): "p1", ("user_id", "u2"): "p2"}
        for plan in plans(store, seen, "identities"):
            assert not table_scans(plan), plan
    finally:
        store.close()


def test_a_withdrawal_finds_its_sends_by_profile_and_enrollment(
        sqlite_template: Path, tmp_path: Path) -> None:
    """Not by status: without ANALYZE, SQLite took the (status, next_attempt_at) index
    and walked every pending send of everyone on each withdrawal (migration 0016)."""
    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        for i in range(50):
            store.enqueue_send(outbox_entry(f"k{i}", profile=f"p{i}"))
        run = WriteRun()
        run.withdrawn.append(("p7", "e1", Decision(T0, "p7", "welcome", "", "skipped",
                                                   "enrollment_exited", {})))
        with captured(store) as seen:
            store.write_changes([run])
        assert store.outbox_counts().get("skipped") == 1
        for plan in plans(store, seen, "outbox"):
            assert "ix_outbox_profile_enrollment (profile_id=? AND enrollment_id=?)" in plan, plan
    finally:
        store.close()


def test_the_caps_read_the_profiles_sends_by_profile_and_admission(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The dispatcher's caps (`admitted_since`, in its write turn): by (profile_id,
    admitted_at), not by status. With the profiles as one JSON list (driver.py), SQLite
    took the (status, next_attempt_at) index and walked every pending and sent send
    (80 ms at 200,000 rows)."""
    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        for i in range(50):
            store.enqueue_send(outbox_entry(f"k{i}", profile=f"p{i % 10}"))
            store.mark_admitted(f"k{i}", T0 + timedelta(minutes=i))
        with captured(store) as seen:
            found = store.admitted_since(["p1", "p2"], T0 + timedelta(minutes=30))
        assert sorted(found) == ["p1", "p2"]
        assert len(found["p1"]) == 2  # k31, k41
        for plan in plans(store, seen, "outbox"):
            assert "ix_outbox_profile_admitted (profile_id=? AND admitted_at>?)" in plan, plan
    finally:
        store.close()


def test_a_claim_of_due_sends_takes_its_profiles_due_rows_by_their_index(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The dispatcher's claim (in its write turn) reads the head of the queue on the
    (status, next_attempt_at, id) index, then takes every due send of those profiles on
    (profile_id, status, next_attempt_at): neither every due send of everyone (on the
    queue's index: 15-30 ms a claim of 50 with 100,000 due, storm_bench.py) nor every
    send the profiles ever had (on a profile index alone: 9.5 ms with 1,000 each). A
    profile's sent sends, as the unsubscribe page reads them, by the same index."""
    from sqlalchemy import text

    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        for i in range(60):
            store.enqueue_send(outbox_entry(f"k{i}", profile=f"p{i % 30}"))
        for i in range(60, 120):  # history: sent sends of the same profiles
            store.enqueue_send(outbox_entry(f"k{i}", profile=f"p{i % 30}"))
        with store.sql_engine.begin() as conn:
            conn.execute(text("UPDATE outbox SET status = 'sent', next_attempt_at = NULL "
                              "WHERE CAST(substr(send_key, 2) AS INTEGER) >= 60"))
        with store.transaction(), captured(store) as seen:
            claimed = store.claim_outbox(T0 + timedelta(seconds=1), 5, timedelta(minutes=5))
        assert sorted(e.key for e in claimed) == sorted(
            f"k{i}" for i in range(60) if i % 30 < 5)  # each head profile's two due sends
        takes = [p for p in plans(store, seen, "outbox") if "json_each" in p]
        assert takes, "the claim took no rows by profile"
        for plan in takes:
            assert ("ix_outbox_profile_due (profile_id=? AND status=? AND next_attempt_at<?)"
                    in plan), plan
        with captured(store) as seen:
            assert len(store.outbox_records("p7", "sent")) == 2
        for plan in plans(store, seen, "outbox"):
            assert "ix_outbox_profile_due (profile_id=? AND status=?)" in plan, plan
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_the_next_entry_seq_reads_the_profiles_rows_on_a_new_database(
        sql_store: SqlStore) -> None:
    """PostgreSQL, a prepared statement's generic plan on a database with no statistics
    yet (a new install, every bench run): the next entry_seq of a profile in a journey
    must come from the index on (profile_id, journey, entry_seq). On `journey = ?` it
    was planned on (journey, entered_at), reading every enrollment of the journey, once
    per enrollment upserted."""
    from sqlalchemy import select, text
    from sqlalchemy.dialects import postgresql

    store = sql_store
    with store.sql_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO enrollments (id, journey, version, profile_id, state, status, data, "
            "visits, variants, entry_event, entered_at, updated_at, schema_version, entry_seq) "
            "SELECT 'e' || i, 'j', 1, 'p' || i, 'wait', 'active', '{}', '{}', '{}', '{}', "
            ":at, :at, 1, 1 FROM generate_series(1, 400) AS i"), {"at": T0})
    compiled = select(store._next_entry_seq()).compile(dialect=postgresql.dialect())
    places = {"seq_profile": "$1", "seq_journey": "$2"}

    def bind(match: re.Match[str]) -> str:  # the two keys stay parameters, constants inline
        name = match.group(1)
        value = compiled.params[name]
        return places.get(name) or (f"'{value}'" if isinstance(value, str) else str(value))

    query = re.sub(r"%\((\w+)\)s", bind, str(compiled))
    with store.sql_engine.connect() as conn:
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(f"PREPARE next_seq(varchar, varchar) AS {query}")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN EXECUTE next_seq('p7', 'j')"))
        seq = conn.exec_driver_sql("EXECUTE next_seq('p7', 'j')").scalar_one()
    assert "ix_enrollments_profile_journey_seq" in plan, plan
    assert "ix_enrollments_journey_entered" not in plan, plan
    assert seq == 2


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_the_head_of_the_send_queue_is_read_in_the_indexs_order(sql_store: SqlStore) -> None:
    """PostgreSQL: the claim's head (`ORDER BY next_attempt_at, id LIMIT n`) reads the
    queue's index in order and stops at n rows. A timer storm queues its sends due at
    one instant; on (status, next_attempt_at) alone PostgreSQL fetched every one of
    them to sort by id (40-75 ms a claim with 100,000 due, migration 0021)."""
    from sqlalchemy import text

    store = sql_store
    fill_outbox(store, 5000, profile="'p' || i", status="'pending'")
    with store.sql_engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE outbox")  # the service's statistics loop does
        plan = "\n".join(r[0] for r in conn.execute(text(
            "EXPLAIN SELECT profile_id FROM outbox WHERE status = 'pending' "
            "AND next_attempt_at <= :now ORDER BY next_attempt_at, id LIMIT 50 "
            "FOR UPDATE SKIP LOCKED"), {"now": T0}))
    assert "ix_outbox_status_next_id" in plan, plan
    assert "Sort" not in plan, plan
    with store.transaction():
        claimed = store.claim_outbox(T0 + timedelta(seconds=1), 50, timedelta(minutes=5))
    assert [e.key for e in claimed] == [f"k{i}" for i in range(1, 51)]


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_the_claims_due_rows_of_its_profiles_read_their_index_in_a_generic_plan(
        sql_store: SqlStore) -> None:
    """PostgreSQL, a generic plan once the service's statistics loop has analyzed the
    outbox: the claim's lookups of its profiles' due rows (`rows_of`, `due_per_profile`)
    read (profile_id, status, next_attempt_at), not the queue's index (every due send,
    100,000 in a storm) nor a profile's whole history."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    store = sql_store
    fill_outbox(store, 20000, profile="'p' || (i % 2000)",
                status="CASE WHEN i % 3 = 0 THEN 'pending' ELSE 'sent' END")
    for name in ("rows_of", "due_per_profile"):
        compiled = store._outbox_statements[name].compile(dialect=postgresql.dialect())
        names = list(compiled.params)
        places = {n: f"${i}" for i, n in enumerate(names, 1)}
        query = re.sub(r"%\((\w+)\)s", lambda m, p=places: p[m.group(1)], str(compiled))
        types = ", ".join({"profiles": "varchar[]", "now": "timestamptz"}.get(n, "varchar")
                          for n in names)
        values = ", ".join({"profiles": "ARRAY['p7', 'p8']", "now": "now()"}.get(n, "'pending'")
                           for n in names)
        with store.sql_engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE outbox")
            conn.execute(text("SET plan_cache_mode = force_generic_plan"))
            conn.exec_driver_sql(f"PREPARE {name}({types}) AS {query}")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                f"EXPLAIN EXECUTE {name}({values})"))
            conn.rollback()
        assert "ix_outbox_profile_due" in plan, (name, plan)
        assert re.search(r"Index Cond: .*profile_id.*status", plan), (name, plan)
        assert "ix_outbox_status_next_id" not in plan, (name, plan)


def test_the_active_enrollments_load_uses_the_partial_index_in_a_generic_plan(
        sql_store: SqlStore) -> None:
    """PostgreSQL: the unit's load of its profiles' active enrollments (one text for any
    number of ids, so psycopg prepares it and PostgreSQL may settle on a generic plan)
    reads the partial index ix_enrollments_active, never a profile's whole history. With
    `status = $2` a generic plan cannot know the status, so it cannot use that index.
    (Before any statistics, PostgreSQL 15 planned it on ix_enrollments_in_flight, every
    active enrollment, until the service's statistics loop analyzed the table: a custom
    plan, the first five runs' and usually later ones', is right either way.)"""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    store = sql_store
    if store.dialect != "postgresql":
        pytest.skip("SQLite: the status is written in (units.py `_unit_statements`)")
    with store.sql_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO enrollments (id, journey, version, profile_id, state, status, data, "
            "visits, variants, entry_event, entered_at, updated_at, schema_version, entry_seq) "
            "SELECT 'e' || i, 'j' || (i % 7), 1, 'p' || (i % 40), 'end', "
            "CASE WHEN i % 50 = 0 THEN 'active' ELSE 'completed' END, '{}', '{}', '{}', '{}', "
            ":at, :at, 1, i FROM generate_series(1, 2000) AS i"), {"at": T0})
    compiled = store._unit_statements["active"].compile(dialect=postgresql.dialect())
    query = str(compiled).replace("%(ids)s", "$1")
    assert "%(" not in query, query  # every value but the ids is written in
    with store.sql_engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE enrollments")  # the service's statistics loop does
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(f"PREPARE active_of(varchar[]) AS {query}")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN EXECUTE active_of(ARRAY['p10', 'p20'])"))
        found = conn.exec_driver_sql(
            "EXECUTE active_of(ARRAY['p10', 'p20'])").all()
    assert "ix_enrollments_active" in plan, plan
    assert sorted(r.id for r in found) == sorted(
        f"e{i}" for i in range(1, 2001) if i % 50 == 0 and i % 40 in (10, 20))


def test_withdrawals_skip_their_enrollments_sends_each_with_its_reason(
        sql_store: SqlStore) -> None:
    """A run's withdrawals are one statement (units.py): each enrollment's pending sends
    skipped with its own reason and a decision each; other enrollments' untouched."""
    from dataclasses import replace

    store = sql_store
    # k5: e2's send left under p1 (a merge moves enrollments, not their outbox rows):
    # not (p2, e2)'s, so not withdrawn with it
    for key, eid, pid in (("k1", "e1", "p1"), ("k2", "e1", "p1"), ("k3", "e2", "p2"),
                          ("k4", "e3", "p3"), ("k5", "e2", "p1")):
        store.enqueue_send(replace(outbox_entry(key, profile=pid), enrollment_id=eid))
    run = WriteRun()
    for pid, eid, reason in (("p1", "e1", "exit_when:Order Completed"),
                             ("p2", "e2", "enrollment_exited"),
                             ("p1", "e1", "a second withdrawal finds nothing left")):
        run.withdrawn.append((pid, eid, Decision(T0, pid, "welcome", "", "skipped", reason,
                                                 {"why": reason})))
    store.write_changes([run])
    records = {r.entry.key: r for r in store.outbox_records()}
    assert {k: (r.status, r.last_error) for k, r in records.items()} == {
        "k1": ("skipped", "exit_when:Order Completed"),
        "k2": ("skipped", "exit_when:Order Completed"),
        "k3": ("skipped", "enrollment_exited"), "k4": ("pending", None),
        "k5": ("pending", None)}
    decisions = sorted((d.profile_id, d.step, d.reason, d.details["channel"])
                       for d in store.recorded_decisions() if d.what == "skipped")
    assert decisions == [("p1", "send_welcome", "exit_when:Order Completed", "email")] * 2 + [
        ("p2", "send_welcome", "enrollment_exited", "email")]


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_a_withdrawal_reads_the_profile_enrollment_index_in_a_generic_plan(
        sql_store: SqlStore) -> None:
    """PostgreSQL: with the pairs as a joined set the planner hashed them and read the
    whole outbox; as arrays it looks the profiles up in an index that leads with the
    profile, whatever the statistics (a generic plan on a new database: with none it
    takes ix_outbox_profile_due since migration 0021, ix_outbox_profile_enrollment
    before)."""
    from sqlalchemy import text

    store = sql_store
    store.enqueue_send(outbox_entry("k0", profile="p0"))
    with store.sql_engine.begin() as conn:  # a realistic outbox: many pages of pending sends
        conn.execute(text(
            "INSERT INTO outbox (send_key, enrollment_id, profile_id, journey, step, channel, "
            "template, \"to\", rendered, status, attempts, next_attempt_at, created_at) "
            "SELECT 'k' || i, 'e' || i, 'p' || i, journey, step, channel, template, \"to\", "
            "rendered, status, attempts, next_attempt_at, created_at "
            "FROM outbox, generate_series(1, 20000) AS i"))
    query = (store._withdraw_sends.text.replace(":reasons", "$1").replace(":eids", "$2")
             .replace(":pids", "$3").replace(":keys", "$4"))
    with store.sql_engine.connect() as conn:
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(
            f"PREPARE withdraw(text[], varchar[], varchar[], text[]) AS {query}")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN EXECUTE withdraw('{why}', '{e7}', '{p7}', ARRAY[E'p7\\x1fe7'])"))
        conn.rollback()
    assert re.search(r"Index Scan on ix_outbox_profile_(enrollment|due)\b", plan), plan
    assert "Index Cond: ((profile_id)::text = ANY" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_the_inbox_claim_finds_the_held_profiles_by_their_partial_index(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The claim, a lane's look and a takeover's leave out the profiles with a held or
    parked event through ix_inbox_held (which holds only those), not by reading the
    whole inbox: its condition was no term of the query, and every claim read every
    waiting event (69 ms at 200,000)."""
    from engine.ports import Lane
    from engine.runtime.events import normalize

    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        store.accept_events([normalize({"type": "track", "userId": f"u{i}", "event": "X"},
                                       now=T0, message_id=f"m{i}") for i in range(50)])
        with captured(store) as seen:
            store.claim_inbox(10, T0)
            store.peek_inbox(10, T0, Lane(0, 2))
            store.peek_inbox(10, T0, Lane(), waiting_since=T0, served=[Lane(0, 3)])
        found = plans(store, [s for s in seen if "inbox" in s[0]], "inbox")
        assert len(found) == 3, found
        for plan in found:
            assert "USING INDEX ix_inbox_held" in plan, plan
    finally:
        store.close()


def test_a_merge_moves_its_waiting_events_by_index_without_reading_their_bodies(
        sql_store: SqlStore) -> None:
    """The waiting events' rows move with their inbox rows; their messageIds are read by
    the database (json_extract / ->>), not their whole bodies by the store: a merge of a
    long backlog read every one of them back (`RETURNING inbox.event`)."""
    from sqlalchemy import select

    from engine.runtime.events import normalize

    sql_store.accept_events([normalize(
        {"type": "track", "userId": user, "event": "Seen", "properties": {"n": i}},
        now=T0, message_id=f"{user}-m{i}") for user in ("a1", "u1") for i in range(3)], "t")
    with captured(sql_store) as seen, sql_store.transaction():
        sql_store.merge_profiles(into="u1", from_="a1")
    ev, ib = sql_store._events, sql_store._inbox
    with sql_store.sql_engine.connect() as conn:
        assert set(conn.execute(select(ev.c.profile_id)).scalars()) == {"u1"}
        assert set(conn.execute(select(ib.c.profile_id)).scalars()) == {"u1"}
    on_inbox = [statement for statement, _ in seen if re.search(r"\binbox\b", statement)]
    assert on_inbox
    for statement in on_inbox:  # the JSON's messageId only, never the event itself
        bare = re.sub(r"JSON_EXTRACT\(inbox\.event,|inbox\.event ->>", "", statement)
        assert not re.search(r"\bevent\b", bare), statement
    if sql_store.dialect == "sqlite":
        moving = [(s, p) for s, p in seen if s.startswith("UPDATE events")]
        for plan in plans(sql_store, moving, "events"):
            assert not table_scans(plan), plan


def test_the_bound_on_replayed_links_counts_by_its_index(
        sqlite_template: Path, tmp_path: Path) -> None:
    """Each click counts the like engagements of its message in the last hour
    (tracking.py RECORD_LIMIT). On the index on message_key alone it read every
    engagement the message ever had, so a replay loop made every click of that message
    slower (1.5 ms at 300 rows, 4.2 ms at 5,600); on migration 0023's index it seeks to
    the hour's rows of that link."""
    from engine.ports import Engagement

    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        store.enqueue_send(outbox_entry("k1"))
        for i in range(30):
            assert store.record_engagement(Engagement(
                "click", "k1", "p1", "welcome", "s", T0 + timedelta(minutes=i), "https://x",
                position=1 + i % 3), limit=10, since=T0)
        with captured(store) as seen:
            assert not store.record_engagement(Engagement(
                "click", "k1", "p1", "welcome", "s", T0 + timedelta(minutes=40), "https://x",
                position=1), limit=10, since=T0)
        [plan] = plans(store, seen, "engagements")
        assert ("ix_engagements_message_kind (message_key=? AND kind=? AND position=? AND "
                "human=? AND at>?)") in plan, plan
    finally:
        store.close()
