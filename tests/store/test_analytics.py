"""The dashboard's counts (engine/store/sql/analytics.py) on SQLite and PostgreSQL: the
cohort of a period, the people on each step now, the variants, sends and decisions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.ports import Decision
from tests.store.helpers import T0, enrollment, later, outbox_entry

STEPS = ["wait", "split", "send_a", "send_b"]


def test_journey_counts(sql_store: Any) -> None:
    s = sql_store
    old = T0 - timedelta(days=30)  # before the period: counts "now", not in the cohort
    s.put_enrollment(enrollment("e0", profile="p0", entered=old, state="send_a",
                                visits={"wait": 1, "split": 1, "send_a": 1},
                                variants={"split": "a"}))
    s.put_enrollment(enrollment("e1", profile="p1", state="wait", visits={"wait": 1}))
    s.put_enrollment(enrollment("e2", profile="p2", state="send_a",
                                visits={"wait": 1, "split": 1, "send_a": 2},
                                variants={"split": "a"}, goal_reached_at=later(3)))
    s.put_enrollment(enrollment("e3", profile="p3", state="send_b", status="completed",
                                visits={"wait": 1, "split": 1, "send_b": 1},
                                variants={"split": "b"}, ended_at=later(4)))
    s.put_enrollment(enrollment("e4", profile="p4", state="split", status="exited",
                                visits={"wait": 1, "split": 1}, variants={"split": "holdout"}))
    s.put_enrollment(enrollment("x1", profile="p1", journey="other", state="wait"))
    s.enqueue_send(outbox_entry("k1", at=later(1)))  # journey "welcome", step send_welcome
    s.record_decision(Decision(later(1), "p2", "j", "send_a", "skipped", "quiet hours"))
    s.record_decision(Decision(later(2), "p3", "j", "send_a", "skipped", "quiet hours"))
    s.record_decision(Decision(later(2), "p3", "j", "send_b", "skipped", "no_consent"))
    s.record_decision(Decision(old, "p0", "j", "send_a", "skipped", "too old"))

    counts = s.journey_counts("j", T0 - timedelta(days=7), later(24), STEPS, ["split"])
    assert counts.on_step == {"wait": 1, "send_a": 2}
    assert counts.entered == 4
    assert counts.converted == 1
    assert counts.ended == {"active": 2, "completed": 1, "exited": 1}
    assert counts.passed == {"wait": 4, "split": 3, "send_a": 1, "send_b": 1}
    assert [(v.variant, v.people, v.converted) for v in counts.variants["split"]] == [
        ("a", 1, 1), ("b", 1, 0), ("holdout", 1, 0)]
    assert counts.decisions == [("send_a", "skipped", "quiet hours", 2),
                                ("send_b", "skipped", "no_consent", 1)]
    assert counts.sends == {}
    welcome = s.journey_counts("welcome", T0, later(24), ["send_welcome"])
    assert welcome.sends == {"send_welcome": {"pending": 1}}

    overview = s.journeys_overview(["j", "other", "welcome"], T0 - timedelta(days=7))
    assert (overview["j"].in_flight, overview["j"].entries, overview["j"].sends) == (3, 4, 0)
    assert overview["welcome"].sends == 1
    assert s.enrollments_table_count() == 6


def _direct(s: Any, journey: str, since: Any, until: Any) -> dict[str, Any]:
    """The cohort's counts straight from the enrollments table (no rollup)."""
    from sqlalchemy import select

    e = s._enrollments
    found: dict[str, Any] = {"entered": 0, "converted": 0, "ended": {}, "passed": {},
                             "variants": {}}
    with s.sql_engine.connect() as conn:
        for row in conn.execute(select(e).where(e.c.journey == journey,
                                                e.c.entered_at >= since,
                                                e.c.entered_at < until)):
            found["entered"] += 1
            found["converted"] += row.goal_reached_at is not None
            found["ended"][row.status] = found["ended"].get(row.status, 0) + 1
            for step in row.visits:
                found["passed"][step] = found["passed"].get(step, 0) + 1
            for step, variant in row.variants.items():
                mine = found["variants"].setdefault(step, {}).setdefault(variant, [0, 0])
                mine[0] += 1
                mine[1] += row.goal_reached_at is not None
    return found


def _rows(s: Any, table_name: str) -> int:
    from sqlalchemy import text

    with s.sql_engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table_name}")).scalar_one())


def test_rollup_follows_every_write(sql_store: Any) -> None:
    """The rollup that the triggers keep (inserts, upserts that move a step, reach the
    goal or end, merges' updates, deletes) gives the same cohort counts as the table,
    for periods whose ends fall inside an hour and on the hour alike; on PostgreSQL the
    same before and after the deltas are folded into the rollup (migration 0014)."""
    import random

    s = sql_store
    rng = random.Random(16)
    ids = []
    for i in range(120):
        entered = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60), seconds=rng.random())
        eid = f"r{i}"
        ids.append((eid, entered))
        s.put_enrollment(enrollment(eid, profile=f"p{i}", entered=entered, state="wait",
                                    visits={"wait": 1}))
    for eid, entered in ids[::2]:  # move on, pick a variant, some reach the goal
        variant = rng.choice(["a", "b", "holdout"])
        won = rng.random() < 0.4
        s.put_enrollment(enrollment(eid, profile="p" + eid[1:], entered=entered,
                                    state="send_a", visits={"wait": 1, "split": 1,
                                                            "send_a": 1},
                                    variants={"split": variant},
                                    goal_reached_at=entered + timedelta(hours=1) if won
                                    else None))
    # A unit of work's batch: one statement (PostgreSQL: JsonRowsPlan) that inserts new
    # enrollments and updates others, some in counted columns and some not (the per
    # statement triggers of migration 0015 see both kinds of row, and only the changed)
    from engine.store.sql.rows import enrollment_values

    batch = []
    for i, (eid, entered) in enumerate(ids[1::4]):
        old = s.get_enrollment(eid)
        batch.append(enrollment(eid, profile="p" + eid[1:], entered=entered,
                                state=old.state, visits=dict(old.visits) if i % 2 else
                                {**old.visits, "split": 1}, variants=dict(old.variants),
                                goal_reached_at=old.goal_reached_at))
    for i in range(120, 140):
        entered = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        ids.append((f"r{i}", entered))
        batch.append(enrollment(f"r{i}", profile=f"p{i}", entered=entered, state="wait",
                                visits={"wait": 1}))
    from engine.store.sql.rollup import recounted

    with s.sql_engine.begin() as conn, recounted(conn, [x.id for x in batch]):
        s._many(conn, s._upsert_enrollment, [
            {**enrollment_values(x), "seq_profile": x.profile_id, "seq_journey": x.journey}
            for x in batch], apart=("seq_profile", "seq_journey"))
    for eid, entered in ids[::6]:  # some end
        old = s.get_enrollment(eid)
        s.put_enrollment(enrollment(eid, profile="p" + eid[1:], entered=entered,
                                    state=old.state, status="completed",
                                    visits=dict(old.visits), variants=dict(old.variants),
                                    goal_reached_at=old.goal_reached_at,
                                    ended_at=entered + timedelta(hours=2)))
    from sqlalchemy import delete

    e = s._enrollments
    with s.sql_engine.begin() as conn:  # erasure deletes rows
        conn.execute(delete(e).where(e.c.id.in_([eid for eid, _ in ids[1::10]])))
    periods = [(T0 - timedelta(days=1), T0 + timedelta(days=4)),
               (T0 + timedelta(hours=5, minutes=17, seconds=3),
                T0 + timedelta(days=2, hours=1, minutes=41)),
               (T0 + timedelta(hours=30), T0 + timedelta(hours=31)),
               (T0 + timedelta(hours=30, minutes=5), T0 + timedelta(hours=30, minutes=50))]
    for since, until, folded in [(a, b, False) for a, b in periods] + [
            (a, b, True) for a, b in periods]:
        if folded and since == periods[0][0]:  # PostgreSQL: the deltas go into the rollup
            moved = s.fold_rollup_deltas()
            assert (moved > 0) == s._pg
            assert _rows(s, "journey_rollup_delta") == 0
            assert s.fold_rollup_deltas() == 0
        got = s.journey_counts("j", since, until, STEPS, ["split"])
        want = _direct(s, "j", since, until)
        assert got.entered == want["entered"] > 0
        assert got.converted == want["converted"]
        assert got.ended == dict(sorted(want["ended"].items()))
        assert {k: v for k, v in got.passed.items() if v} == want["passed"]
        assert {step: {v.variant: [v.people, v.converted] for v in found}
                for step, found in got.variants.items() if found} == want["variants"]
        assert sum(day.entered for day in got.series.values()) == want["entered"]
        assert sum(day.passed.get("split", 0) for day in got.series.values()) == \
            want["passed"].get("split", 0)


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_two_transactions_counting_the_same_hour_do_not_wait_for_each_other(
        sql_store: Any) -> None:
    """PostgreSQL (migration 0014): two workers' transactions that enroll people in the
    same journey and hour touch the same rollup counts. The trigger appends deltas, so
    the second does not wait for the first to commit; with 0012's upsert it waited on
    the row lock, and two batches reaching two such rows in opposite orders deadlocked
    (1 s, then one failed: bench/scaleout_bench.py, two workers slower than one)."""
    from sqlalchemy import text

    s = sql_store
    first, second = s.sql_engine.connect(), s.sql_engine.connect()
    try:
        first.begin()
        second.begin()
        second.execute(text("SET LOCAL lock_timeout = '300ms'"))
        for conn, (eid, visits) in ((first, ("w1", '{"wait": 1}')),
                                    (second, ("w2", '{"wait": 1}'))):
            conn.execute(text(
                "INSERT INTO enrollments (id, journey, version, profile_id, state, status, "
                "data, visits, variants, entry_event, entered_at, updated_at, schema_version, "
                "entry_seq) VALUES (:id, 'j', 1, :id, 'wait', 'active', '{}', "
                "CAST(:visits AS jsonb), '{}', '{}', :at, :at, 1, 1)"), {"id": eid, "visits": visits, "at": T0})
        second.commit()  # no LockNotAvailable: it never waited for `first`
        first.commit()
    finally:
        first.close()
        second.close()
    counts = s.journey_counts("j", T0 - timedelta(hours=1), T0 + timedelta(hours=2), STEPS)
    assert (counts.entered, counts.passed["wait"]) == (2, 2)
    s.fold_rollup_deltas()
    counts = s.journey_counts("j", T0 - timedelta(hours=1), T0 + timedelta(hours=2), STEPS)
    assert (counts.entered, counts.passed["wait"]) == (2, 2)


def test_decisions_are_grouped_in_the_database_without_the_persons_own_part(
        sql_store: Any) -> None:
    """A journey page read a row per distinct reason (each person's wait ends at their
    own time, each branch says the values it read) and grouped them in Python: the
    database groups by the reason without the person's own part, on SQLite and on
    PostgreSQL alike, so the rows read are a step's reasons, and the numbers are those
    of grouping every reason in Python (`own_part_removed`)."""
    from collections import Counter

    from engine.store.sql.reasons import own_part_removed

    s = sql_store
    written: list[tuple[str, str, str]] = []
    for i in range(30):
        t = (T0 + timedelta(minutes=7 * i, microseconds=i)).isoformat()
        written += [("grace", "waiting", f"until {t}"),
                    ("clicked", "waiting", f"for Email Clicked until {t}"),
                    ("offer", "branch", f"case 1 -> vip_offer (profile.traits.vip {i})"),
                    ("offer", "branch", f"else -> plain (case 1: profile.traits.vip {i}\n"
                                        f"is not = true)")]
        if i % 3 == 0:
            written.append(("on_day", "resumed", f"no wait: {t} is already past"))
    odd = [("grace", "waiting", "until next week"),  # a space in the time: as it is
           ("grace", "waiting", "until 2026-03-02T10:00:00Z\n"),  # a final newline
           ("grace", "waiting", "for A\nB until 2026-03-02T10:00:00Z"),  # a newline
           ("grace", "waiting", "for until 2026"),  # no event named
           ("offer", "branch", "case 1 -> vip_offer"),  # no values
           ("offer", "branch", "case one -> x (y)"),
           ("offer", "branch", "case 2 -> a b (c)"),
           ("offer", "branch", "case 12 (c)"),  # no target
           ("on_day", "resumed", "wait over"),
           ("send", "skipped", "until 2026-03-02T10:00:00Z")]  # not a wait: as it is
    written += odd * 2
    for n, (step, what, reason) in enumerate(written):
        s.record_decision(Decision(later(1), f"p{n}", "j", step, what, reason))
    s.record_decision(Decision(later(1), "p", "other", "grace", "waiting", "until x"))

    counts = s.journey_counts("j", T0, later(24), ["grace"])
    expected = Counter((step, what, own_part_removed(what, reason))
                       for step, what, reason in written)
    assert sorted(counts.decisions) == sorted((*key, n) for key, n in expected.items())
    read = {(step, what, reason): n for step, what, reason, n in counts.decisions}
    assert read[("grace", "waiting", "until the wait is over")] == 30
    assert read[("clicked", "waiting", "for Email Clicked, until the timeout")] == 30
    assert read[("offer", "branch", "case 1 -> vip_offer")] == 30 + 2  # with the bare one
    assert read[("offer", "branch", "else -> plain")] == 30
    assert read[("offer", "branch", "case 12")] == 2
    assert read[("on_day", "resumed", "no wait: the time was already past")] == 10
    assert read[("grace", "waiting", "for A\nB until 2026-03-02T10:00:00Z")] == 2
    assert read[("grace", "waiting", "until 2026-03-02T10:00:00Z\n")] == 2
    assert read[("send", "skipped", "until 2026-03-02T10:00:00Z")] == 2
    # 5 grouped reasons (one with the bare "case 1 -> vip_offer"), 9 odd ones as they are
    assert len(counts.decisions) == len(expected) == 14  # not a row a person
