"""A journey's interest: the event names its rules can match. The runtime matches an
event only against the journeys interested in its name, so a journey left out by
mistake would silently miss its entries, exits or goals; these tests pin the rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.testing import InMemoryEngine
from journeys.compiler import compile_library
from journeys.loader import load_path
from tests.engine.helpers import stub_email, write_folder

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

JOURNEYS = {
    "named": """
        journey: named
        version: 1
        entry: {event: Signed Up, when: {event.properties.plan: {eq: pro}}}
        exit_when:
          - event: Unsubscribed
        goal: {event: Order Completed, when: {event.properties.total: {gt: 10}}, within: 7d}
        steps:
          - id: hello
            send: {channel: email, template: hello}
          - id: wait_click
            wait_for: {event: Email Clicked, timeout: 2d}
    """,
    "by_condition": """
        journey: by_condition
        version: 1
        entry: {event: Signed Up}
        exit_when:
          - when: {profile.traits.vip: {eq: true}}
        steps:
          - {id: pause, wait: 3d}
          - id: hello
            send: {channel: email, template: hello}
    """,
    "scheduled": """
        journey: scheduled
        version: 1
        entry: {schedule: "0 9 * * *", when: {profile.traits.vip: {eq: true}}}
        exit_when:
          - event: Order Completed
        steps:
          - id: hello
            send: {channel: email, template: hello}
    """,
}


def _folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "j", JOURNEYS, {"hello": stub_email("hello")})


def test_interest_is_the_event_names_the_rules_require(tmp_path: Path) -> None:
    compiled = compile_library(load_path(_folder(tmp_path)))
    assert compiled["named"].interest == {"Signed Up", "Unsubscribed", "Order Completed",
                                          "Email Clicked"}
    # An exit on a profile condition can happen on any event at all.
    assert compiled["by_condition"].interest is None
    # A schedule entry is entered by its cron timers, never by an event.
    assert compiled["scheduled"].interest == {"Order Completed"}


def test_the_runner_matches_only_interested_journeys(tmp_path: Path) -> None:
    eng = InMemoryEngine.from_folder(_folder(tmp_path), start=T0)
    ids = lambda name: [j.id for j in eng.runner.interested(name)]  # noqa: E731
    assert ids("Signed Up") == ["by_condition", "named"]
    assert ids("Order Completed") == ["by_condition", "named", "scheduled"]
    assert ids("Page Viewed") == ["by_condition"]
    assert ids(None) == ["by_condition"]  # identify, page, ...: no event name


def test_a_condition_exit_still_fires_on_an_unrelated_event(tmp_path: Path) -> None:
    eng = InMemoryEngine.from_folder(_folder(tmp_path), start=T0)
    eng.identify("u1", {"email": "u1@example.com", "consent": {"email": True}})
    eng.track("u1", "Signed Up")
    eng.run_until_idle(limit=timedelta(hours=1))
    eng.identify("u1", {"vip": True})  # no journey names this event
    eng.run_until_idle()
    assert [(e.journey, e.reason) for e in eng.exits] == [
        ("by_condition", "exit_when:condition")]
    assert [m.template for m in eng.sent] == []
