from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import START, exits, person, sends


def test_no_order_inside_the_loss_window(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("win_back")
    person(eng, "ana")
    eng.track("ana", "Order Completed", {"revenue": 60})
    eng.run_until_idle()
    d = timedelta(days=1)
    assert sends(eng) == [("ana", "we_miss_you", "win_back_miss_you", START + 60 * d),
                          ("ana", "offer", "win_back_offer", START + 67 * d),
                          ("ana", "survey", "win_back_survey", START + 74 * d)]
    assert exits(eng) == [("ana", "survey", "completed", START + 74 * d)]
    assert eng.profile("ana").computed["days_since_last_order"] == 74


def test_each_order_restarts_the_clock(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("win_back")
    person(eng, "ben")
    d = timedelta(days=1)
    eng.track("ben", "Order Completed", {"revenue": 60})
    eng.track("ben", "Order Completed", {"revenue": 30}, at=START + 50 * d)
    eng.advance(59 * d)  # day 109: still inside the new window
    assert eng.sent == []
    eng.advance(2 * d)
    assert sends(eng) == [("ben", "we_miss_you", "win_back_miss_you", START + 110 * d)]
    assert exits(eng)[0] == ("ben", "loss_window", "exit_when:Order Completed", START + 50 * d)
    assert len(eng.enrollments("ben", "win_back")) == 2
