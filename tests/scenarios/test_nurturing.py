from __future__ import annotations

from collections.abc import Callable

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import at, exits, person, sends


def test_four_pulls_then_one_push(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("nurturing")
    person(eng, "ana", timezone="America/New_York")
    eng.track("ana", "Lead Created")
    eng.run_until_idle()
    # The pulls are due at 09:00 UTC, inside the quiet hours (21:00-08:00) in New York:
    # each waits for 08:00 there, which is 13:00 UTC until New York moves to daylight
    # time on 8 March, 12:00 UTC after. The journey's own clock does not wait.
    assert sends(eng) == [
        ("ana", "pull_1", "nurture_pull_1", at(2, 13)),
        ("ana", "pull_2", "nurture_pull_2", at(5, 13)),
        ("ana", "pull_3", "nurture_pull_3", at(8, 12)),
        ("ana", "pull_4", "nurture_pull_4", at(11, 12)),
        # 10:00 in New York (daylight time): 14:00 UTC, outside the quiet hours
        ("ana", "push", "nurture_push_offer", at(11, 14)),
    ]
    deferred = [(d.step, d.details["until"]) for d in eng.decisions if d.what == "deferred"]
    assert deferred == [("pull_1", "2026-03-02T13:00:00+00:00"),
                        ("pull_2", "2026-03-05T13:00:00+00:00"),
                        ("pull_3", "2026-03-08T12:00:00+00:00"),
                        ("pull_4", "2026-03-11T12:00:00+00:00")]
    assert exits(eng) == [("ana", "push", "completed", at(11, 14))]


def test_an_order_stops_the_drip(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("nurturing")
    person(eng, "ben")
    eng.track("ben", "Lead Created")
    eng.track("ben", "Order Completed", {"total": 80}, at=at(6, 9))
    eng.run_until_idle()
    assert [m.step for m in eng.sent] == ["pull_1", "pull_2"]
    assert exits(eng) == [("ben", "w2", "exit_when:Order Completed", at(6, 9))]
