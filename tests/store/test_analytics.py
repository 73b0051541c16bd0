"""The dashboard's counts (engine/store/sql/analytics.py) on SQLite and PostgreSQL: the
cohort of a period, the people on each step now, the variants, sends and decisions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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
