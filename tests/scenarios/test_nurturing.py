from __future__ import annotations

from collections.abc import Callable

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import START, at, exits, person, sends


def test_four_pulls_then_one_push(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("nurturing")
    person(eng, "ana", timezone="America/New_York")
    eng.track("ana", "Lead Created")
    eng.run_until_idle()
    assert sends(eng) == [
        ("ana", "pull_1", "nurture_pull_1", START),
        ("ana", "pull_2", "nurture_pull_2", at(5, 9)),
        ("ana", "pull_3", "nurture_pull_3", at(8, 9)),
        ("ana", "pull_4", "nurture_pull_4", at(11, 9)),
        # 10:00 in New York, which moved to daylight time on 8 March: 14:00 UTC
        ("ana", "push", "nurture_push_offer", at(11, 14)),
    ]
    assert exits(eng) == [("ana", "push", "completed", at(11, 14))]


def test_an_order_stops_the_drip(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("nurturing")
    person(eng, "ben")
    eng.track("ben", "Lead Created")
    eng.track("ben", "Order Completed", {"total": 80}, at=at(6, 9))
    eng.run_until_idle()
    assert [m.step for m in eng.sent] == ["pull_1", "pull_2"]
    assert exits(eng) == [("ben", "w2", "exit_when:Order Completed", at(6, 9))]
