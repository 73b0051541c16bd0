from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import at, exits, person, sends


def test_a_lead_who_never_buys_gets_value_then_a_push(
        library: Callable[..., InMemoryEngine]) -> None:
    eng = library("first_purchase")
    person(eng, "ana")
    eng.track("ana", "Signed Up", {"source": "site"})
    eng.run_until_idle()
    variant = eng.enrollments("ana", "first_purchase")[0].variants["subject_test"]
    first = {"benefits": ("uvp_benefits", "first_purchase_uvp"),
             "social_proof": ("uvp_social", "first_purchase_social")}[variant]
    assert sends(eng) == [("ana", *first, at(5, 9)),
                          ("ana", "push", "first_purchase_push", at(10, 9))]  # 10:00 Madrid
    assert exits(eng) == [("ana", "push", "completed", at(10, 9))]


def test_an_order_ends_it_and_counts_as_the_goal(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("first_purchase")
    person(eng, "ben")
    eng.track("ben", "Signed Up", {"source": "site"})
    eng.track("ben", "Order Completed", {"revenue": 49.0}, at=at(4, 12))
    eng.run_until_idle()
    assert eng.sent == []
    assert exits(eng) == [("ben", "first_look", "exit_when:Order Completed", at(4, 12))]
    assert len(eng.store.goals) == 1


def test_existing_buyers_do_not_enter(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("first_purchase")
    person(eng, "cai")
    eng.track("cai", "Order Completed", {"revenue": 20})
    eng.track("cai", "Signed Up", {"source": "site"})
    eng.run_until_idle()
    assert eng.sent == []


def test_split_and_holdout_shares(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("first_purchase")
    for i in range(400):
        eng.track(f"lead{i}", "Signed Up", {"source": "site"})
    eng.run_until_idle()
    variants = Counter(eng.enrollments(f"lead{i}", "first_purchase")[0].variants["subject_test"]
                       for i in range(400))
    assert 20 <= variants["holdout"] <= 60
    assert abs(variants["benefits"] - variants["social_proof"]) < 70
