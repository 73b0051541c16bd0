"""Frequency caps decided send by send, by journey priority: three journeys want to
e-mail one person at the same instant under a cap of one a week (fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.testing import InMemoryEngine
from tests.engine.helpers import ONE_EMAIL_A_WEEK, capped_journey, stub_email, write_folder

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
def run(tmp_path: Path, mid_policy: str = "") -> InMemoryEngine:
    # written in an order that is neither by priority nor by name
    folder = write_folder(tmp_path / "j", {
        "mid": capped_journey("mid", 5, mid_policy),
        "low": capped_journey("low", 0),
        "high": capped_journey("high", 10),
    }, {"note": stub_email("note")}, policy=ONE_EMAIL_A_WEEK)
    eng = InMemoryEngine.from_folder(folder, start=NOON)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.track("ana", "Bought", at=NOON)
    return eng


def test_the_highest_priority_wins_and_the_others_are_dropped(tmp_path: Path) -> None:
    eng = run(tmp_path)
    assert [(m.journey, m.at) for m in eng.sent] == [("high", NOON)]
    capped = [(d.journey, d.what, d.reason, d.details["on_cap"], d.details["priority"])
              for d in eng.decisions if d.what in ("skipped", "deferred")]
    assert capped == [("mid", "skipped", "frequency_cap", "drop", 5),
                      ("low", "skipped", "frequency_cap", "drop", 0)]
    eng.advance(timedelta(days=8))
    assert len(eng.sent) == 1  # dropped for good


def test_on_cap_delay_sends_when_the_cap_allows_and_drop_does_not(tmp_path: Path) -> None:
    eng = run(tmp_path, "policy: {on_cap: delay}")
    assert [m.journey for m in eng.sent] == ["high"]
    deferred = next(d for d in eng.decisions if d.journey == "mid" and d.what == "deferred")
    assert (deferred.what, deferred.reason) == ("deferred", "frequency_cap")
    assert deferred.details["until"] == (NOON + timedelta(days=7)).isoformat()
    eng.advance(timedelta(days=6, hours=23))
    assert [m.journey for m in eng.sent] == ["high"]
    eng.advance(timedelta(hours=2))
    assert [(m.journey, m.at) for m in eng.sent] == [("high", NOON),
                                                     ("mid", NOON + timedelta(days=7))]
    assert [d.journey for d in eng.decisions if d.what == "skipped"] == ["low"]


def test_a_delayed_send_competes_again_by_priority(tmp_path: Path) -> None:
    """Two delayed sends come due together: the higher priority goes, the other waits
    another window; neither is lost."""
    folder = write_folder(tmp_path / "j", {
        "high": capped_journey("high", 10),
        "low": capped_journey("low", 0, "policy: {on_cap: delay}"),
        "mid": capped_journey("mid", 5, "policy: {on_cap: delay}"),
    }, {"note": stub_email("note")}, policy=ONE_EMAIL_A_WEEK)
    eng = InMemoryEngine.from_folder(folder, start=NOON)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.track("ana", "Bought", at=NOON)
    eng.advance(timedelta(days=15))
    assert [(m.journey, m.at) for m in eng.sent] == [
        ("high", NOON), ("mid", NOON + timedelta(days=7)), ("low", NOON + timedelta(days=14))]
