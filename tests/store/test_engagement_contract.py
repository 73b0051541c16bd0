"""The engagement part of the Store port (clicks, opens, bounces; the suppression list;
a goal's value), the same on the memory store, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from engine.core.model import RecordGoal
from engine.ports import Engagement, Suppression
from tests.store.helpers import T0, later, outbox_entry


def test_a_sent_message_is_found_by_its_key(store: Any) -> None:
    assert store.sent_message("k1") is None
    store.enqueue_send(outbox_entry("k1"))
    store.mark_sent("k1", later(1))
    found = store.sent_message("k1")
    assert (found.entry.key, found.status, found.sent_at) == ("k1", "sent", later(1))


def test_engagements_round_trip_by_journey(store: Any) -> None:
    click = Engagement("click", "k1", "p1", "j", "send", later(1), "https://x.example/?a=1",
                       2, human=True)
    scan = Engagement("click", "k1", "p1", "j", "send", later(2), "https://x.example/", 1,
                      human=False, reason="scanner_user_agent")
    other = Engagement("open", "k2", "p2", "other", "mail", later(3))
    for item in (click, scan, other):
        store.record_engagement(item)
    assert store.engagements("j") == [click, scan]
    assert store.engagements() == [click, scan, other]


def test_the_suppression_list_ignores_case_and_keeps_the_first_reason(store: Any) -> None:
    assert store.suppressed(["a@example.com"]) == {}
    assert store.suppress(Suppression("A@Example.com ", "hard_bounce", T0, "channel:email",
                                      {"message": "k1"}))
    assert not store.suppress(Suppression("a@example.com", "complaint", later(1), "api"))
    [kept] = store.suppressions()
    assert (kept.address, kept.reason, kept.at, kept.details) == (
        "a@example.com", "hard_bounce", T0, {"message": "k1"})
    assert set(store.suppressed(["a@EXAMPLE.com", "b@example.com"])) == {"a@EXAMPLE.com"}
    assert store.unsuppress("A@example.com")
    assert not store.unsuppress("a@example.com")
    assert store.suppressions() == []


def test_a_goal_keeps_its_value(store: Any) -> None:
    goals = [RecordGoal("e1", "p1", "j", later(1), 12.5), RecordGoal("e2", "p1", "j", later(2))]
    for goal in goals:
        store.record_goal(goal)
    assert store.recorded_goals("p1") == goals


def test_a_bounded_engagement_stops_at_its_limit_per_link_and_window(store: Any) -> None:
    store.enqueue_send(outbox_entry("k1"))

    def click(at: float, position: int | None = 1, human: bool = True,
              kind: str = "click") -> Engagement:
        return Engagement(kind, "k1", "p1", "j", "send", later(at), None, position,
                          human=human)

    assert [store.record_engagement(click(1), 2, T0) for _ in range(3)] == [True, True, False]
    assert store.record_engagement(click(1, position=2), 2, T0)  # another link
    assert store.record_engagement(click(1, human=False), 2, T0)  # a scanner's
    assert [store.record_engagement(click(1, None, kind="open"), 1, T0)
            for _ in range(2)] == [True, False]
    assert store.record_engagement(click(3), 2, later(2))  # the first two are older
    assert store.record_engagement(click(3))  # no limit: always
    assert len(store.engagements()) == 7
