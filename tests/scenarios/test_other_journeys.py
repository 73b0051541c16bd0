"""Scenarios for the rest of the bundled library."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import START, at, exits, person, sends

H = timedelta(hours=1)
D = timedelta(days=1)


def test_abandoned_cart_timeout_path_for_a_vip(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("abandoned_cart")
    person(eng, "ana", vip=True)
    eng.track("ana", "Checkout Started", {"cart_value": 120, "cart_items": 3})
    eng.run_until_idle()
    assert sends(eng) == [("ana", "reminder", "cart_reminder", START + H),
                          ("ana", "vip_offer", "cart_vip_discount", START + 25 * H)]
    assert "3 item(s)" in eng.sent[0].body
    assert exits(eng) == [("ana", "done", "completed", START + 25 * H)]


def test_abandoned_cart_click_ends_it(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("abandoned_cart")
    person(eng, "ben")
    eng.track("ben", "Checkout Started", {"cart_value": 40})
    eng.track("ben", "Email Clicked", at=START + 3 * H)
    eng.run_until_idle()
    assert [m.template for m in eng.sent] == ["cart_reminder"]
    assert exits(eng) == [("ben", "done", "completed", START + 3 * H)]


def test_post_purchase_series(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("post_purchase")
    person(eng, "ana")
    eng.track("ana", "Order Completed", {"revenue": 70})
    eng.run_until_idle()
    assert sends(eng) == [("ana", "how_to", "post_purchase_how_to", START + 3 * D),
                          ("ana", "complements", "post_purchase_complements", START + 10 * D),
                          ("ana", "survey", "post_purchase_survey", START + 14 * D)]


def test_browse_retargeting_and_its_exit(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("browse_retargeting")
    person(eng, "ana")
    person(eng, "ben")
    eng.track("ana", "Product Viewed", {"product_id": "p-77", "name": "Trail Runner 2"})
    eng.track("ben", "Product Viewed", {"product_id": "p-12", "name": "Rain Shell"})
    eng.track("ben", "Checkout Started", {"cart_value": 90}, at=START + H)
    eng.run_until_idle()
    assert sends(eng) == [("ana", "still_interested", "browse_reminder", START + 4 * H)]
    assert eng.sent[0].subject == "Still eyeing the Trail Runner 2?"
    assert exits(eng) == [("ben", "cool_off", "exit_when:Checkout Started", START + H),
                          ("ana", "still_interested", "completed", START + 4 * H)]


def test_reactivation_segment_entry(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("reactivation")
    person(eng, "ana")
    eng.track("ana", "Order Completed", {"revenue": 60})
    eng.track("ana", "Order Completed", {"revenue": 50}, at=START + D)
    assert eng.sent == []  # regular buyer, average ticket 55
    eng.track("ana", "Order Completed", {"revenue": 5}, at=START + 2 * D)  # average 38.33
    assert sends(eng) == [("ana", "bundle_offer", "reactivation_bundle", START + 2 * D)]
    eng.track("ana", "Order Completed", {"revenue": 5}, at=START + 3 * D)
    assert len(eng.sent) == 1  # still in the segment: no second entry


def test_birthday_at_nine_local_once_a_year(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("special_dates")
    person(eng, "ana", birthday="1991-03-05")
    person(eng, "ben", birthday="1988-03-05", timezone="America/New_York")
    person(eng, "cai", birthday="1990-07-01")
    eng.advance(10 * D)
    assert sends(eng) == [("ana", "gift", "birthday_gift", at(5, 8)),
                          ("ben", "gift", "birthday_gift", at(5, 14))]


def test_nps_detractor_escalates_when_not_resolved(
        library: Callable[..., InMemoryEngine]) -> None:
    eng = library("nps_detractors")
    person(eng, "ana", phone="+34600000001")
    person(eng, "ben")
    eng.track("ana", "NPS Submitted", {"score": 3, "comment": "late"})
    eng.track("ben", "NPS Submitted", {"score": 9})
    eng.run_until_idle()
    assert [(m.step, m.channel, m.to, m.at) for m in eng.sent] == [
        ("apology", "email", "ana@example.com", START),
        ("open_ticket", "webhook", None, START),
        ("escalate", "sms", "+34600000001", START + 7 * D)]
    assert '"score": "3"' in eng.sent[1].body
    assert exits(eng) == [("ana", "done", "followed_up", START + 7 * D)]


def test_nps_detractor_resolved(library: Callable[..., InMemoryEngine]) -> None:
    eng = library("nps_detractors")
    person(eng, "ana")
    eng.track("ana", "NPS Submitted", {"score": 5})
    eng.track("ana", "Support Ticket Resolved", at=START + 2 * D)
    eng.run_until_idle()
    assert [m.step for m in eng.sent] == ["apology", "open_ticket", "thanks"]
    assert exits(eng) == [("ana", "done", "followed_up", START + 2 * D)]
