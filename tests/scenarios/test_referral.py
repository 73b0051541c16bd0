from __future__ import annotations

from collections.abc import Callable

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import START, at, exits, person, sends


def test_the_referrer_is_rewarded_when_the_friends_first_order_completes(
        library: Callable[..., InMemoryEngine]) -> None:
    eng = library("referral", "referral_reward")
    person(eng, "ana", loyalty_points=100)
    person(eng, "ben")
    eng.track("ben", "Signed Up", {"source": "site", "referrer_id": "ana"})
    assert eng.sent == []
    eng.track("ben", "Order Completed", {"revenue": 35}, at=at(9, 17))
    assert sends(eng) == [("ben", "thank_friend", "referral_friend_thanks", at(9, 17)),
                          ("ana", "tell", "referral_reward", at(9, 17))]
    assert eng.profile("ana").traits["loyalty_points"] == 600
    assert "600" in eng.sent[1].body
    assert eng.profile("ana").computed["referrals_count"] == 1
    assert eng.profile("ana").computed["lifecycle_stage"] == "advocate"
    assert exits(eng) == [("ben", "done", "rewarded", at(9, 17)),
                          ("ana", "tell", "completed", at(9, 17))]
    eng.track("ben", "Order Completed", {"revenue": 35}, at=at(10, 17))
    assert len(eng.sent) == 2  # only the first order counts


def test_no_order_within_thirty_days_rewards_nobody(
        library: Callable[..., InMemoryEngine]) -> None:
    eng = library("referral", "referral_reward")
    person(eng, "cai")
    eng.track("cai", "Signed Up", {"source": "site", "referrer_id": "ana"})
    eng.run_until_idle()
    assert eng.sent == []
    assert exits(eng) == [("cai", "expired", "no_first_order", at(1, 9, month=4))]
    assert at(1, 9, month=4) > START
