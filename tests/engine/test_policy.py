"""The global policy at delivery: consent, quiet hours (DST, two time zones), frequency
caps across journeys and across workers, per-journey overrides, the decision log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.ports import Decision
from engine.testing import InMemoryEngine
from tests.engine.helpers import stub_email, write_folder

POLICY = """
timezone: Europe/Madrid
quiet_hours: {start: "21:00", end: "08:00"}
frequency_caps:
  email: {max: 3, per: 7d}
consent_required: [email]
"""


def journey(jid: str, event: str, policy: str = "") -> str:
    return f"""
journey: {jid}
version: 1
entry: {{event: {event}}}
re_entry: always
{policy}
steps:
  - id: note
    send: {{channel: email, template: note}}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "j", {
        "orders": journey("orders", "Ordered"),
        "news": journey("news", "Subscribed"),
        "alerts": journey("alerts", "Alert", "policy: {quiet_hours: false, "
                                            "ignore_frequency_caps: true}"),
    }, {"note": stub_email("note")}, policy=POLICY)


def engine(folder: Path, start: datetime, **traits: object) -> InMemoryEngine:
    eng = InMemoryEngine.from_folder(folder, start=start)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}, **traits})
    return eng


def delivered(eng: InMemoryEngine) -> list[tuple[str, datetime]]:
    return [(m.journey, m.at) for m in eng.sent]


def decided(eng: InMemoryEngine) -> list[tuple[str, str, str]]:
    return [(d.journey, d.what, d.reason) for d in held(eng)]


def held(eng: InMemoryEngine) -> list[Decision]:
    """What the policy did to sends (the log also has entries, waits, sends, exits)."""
    return [d for d in eng.decisions if d.what in ("skipped", "deferred", "failed")]


NOON = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # 12:00 in Madrid


def test_a_cap_of_three_emails_a_week_holds_across_two_journeys(folder: Path) -> None:
    eng = engine(folder, NOON)
    for n, event in enumerate(["Ordered", "Subscribed", "Ordered", "Subscribed", "Ordered"]):
        eng.track("ana", event, at=NOON + timedelta(hours=n))
    assert delivered(eng) == [("orders", NOON), ("news", NOON + timedelta(hours=1)),
                              ("orders", NOON + timedelta(hours=2))]
    assert decided(eng) == [("news", "skipped", "frequency_cap"),
                            ("orders", "skipped", "frequency_cap")]
    assert held(eng)[0].details == {"channel": "email", "max": 3, "per_seconds": 604800.0,
                                    "sent": 3, "on_cap": "drop", "priority": 0}
    # a week after the first send, one slot is free again
    eng.track("ana", "Subscribed", at=NOON + timedelta(days=7))
    assert delivered(eng)[-1] == ("news", NOON + timedelta(days=7))
    eng.track("ana", "Subscribed", at=NOON + timedelta(days=7, minutes=1))
    assert len(eng.sent) == 4  # the second send of 2 March still counts


@pytest.mark.parametrize(("zone", "due", "until"), [
    # Madrid springs forward on 29 March 2026 (01:00 UTC): 08:00 is 07:00 UTC before,
    # 06:00 UTC after; New York on 8 March (07:00 UTC): 13:00 UTC before, 12:00 after.
    ("Europe/Madrid", datetime(2026, 3, 28, 5, 30, tzinfo=UTC),
     datetime(2026, 3, 28, 7, 0, tzinfo=UTC)),
    ("Europe/Madrid", datetime(2026, 3, 29, 5, 30, tzinfo=UTC),
     datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),
    ("Europe/Madrid", datetime(2026, 3, 28, 21, 30, tzinfo=UTC),  # 22:30, the night before
     datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 7, 9, 0, tzinfo=UTC),
     datetime(2026, 3, 7, 13, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 9, 0, tzinfo=UTC),
     datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 3, 0, tzinfo=UTC),  # 22:00 EST on the 7th
     datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
])
def test_quiet_hours_wait_for_local_morning_across_dst(folder: Path, zone: str, due: datetime,
                                                      until: datetime) -> None:
    eng = engine(folder, due, timezone=zone)
    eng.track("ana", "Ordered")
    assert eng.sent == []  # waiting, not dropped
    [decision] = held(eng)
    assert (decision.what, decision.reason, decision.details["until"]) == (
        "deferred", "quiet_hours", until.isoformat())
    assert decision.details["timezone"] == zone
    eng.run_until_idle()
    assert delivered(eng) == [("orders", until)]
    assert eng.store.outbox_records()[0].attempts == 1  # a deferral is not an attempt


def test_profiles_without_a_timezone_use_the_policy_zone(folder: Path) -> None:
    eng = InMemoryEngine.from_folder(folder, start=datetime(2026, 3, 2, 22, 0, tzinfo=UTC))
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.track("ana", "Ordered")  # 23:00 in Madrid
    eng.run_until_idle()
    assert delivered(eng) == [("orders", datetime(2026, 3, 3, 7, 0, tzinfo=UTC))]


@pytest.mark.parametrize(("consent", "state"), [
    ({"email": False}, "opted_out"), ({}, "unknown"), ({"sms": True}, "unknown")])
def test_no_consent_no_email(folder: Path, consent: dict[str, bool], state: str) -> None:
    eng = InMemoryEngine.from_folder(folder, start=NOON)
    eng.identify("ana", {"email": "ana@example.com", "consent": consent})
    eng.track("ana", "Ordered")
    eng.run_until_idle()
    assert eng.sent == []
    assert decided(eng) == [("orders", "skipped", "no_consent")]
    assert held(eng)[0].details["consent"] == state
    assert eng.store.outbox_records()[0].status == "skipped"


def test_a_journey_override_turns_quiet_hours_and_caps_off(folder: Path) -> None:
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # midnight in Madrid
    eng = engine(folder, night)
    for n in range(5):
        eng.track("ana", "Alert", at=night + timedelta(minutes=n))
    assert len(eng.sent) == 5
    assert held(eng) == []
    eng.track("ana", "Ordered")  # the global rules still hold for other journeys,
    eng.run_until_idle()  # and the alerts count towards the cap
    assert decided(eng) == [("orders", "deferred", "quiet_hours"),
                            ("orders", "skipped", "frequency_cap")]


def test_consent_still_applies_under_an_override(folder: Path) -> None:
    eng = InMemoryEngine.from_folder(folder, start=NOON)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": False}})
    eng.track("ana", "Alert")
    assert eng.sent == []
    assert decided(eng) == [("alerts", "skipped", "no_consent")]


def test_caps_are_counted_in_the_store_so_they_hold_across_workers(tmp_path: Path,
                                                                   folder: Path) -> None:
    """Two dispatchers (two worker processes' worth: two stores on one database) share
    the cap, because it is counted from the outbox, not in memory."""
    from engine.core.model import Profile
    from engine.runtime.dispatch import Dispatcher
    from engine.runtime.policy import PolicyGate
    from engine.store import SqlStore
    from engine.testing import FakeClock, RecordingChannel
    from journeys.loader import load_path
    from tests.store.helpers import outbox_entry

    url = f"sqlite:///{tmp_path / 'caps.db'}"
    library = load_path(folder)
    clock = FakeClock(NOON)
    stores = [SqlStore(url, create=True, clock=clock), SqlStore(url, clock=clock)]
    channel = RecordingChannel()
    workers = [Dispatcher(s, {"email": channel}, clock, gate=PolicyGate(library.policy))
               for s in stores]
    try:
        stores[0].put_profile(Profile("p1", {"email": "ana@example.com",
                                             "consent": {"email": True}}))
        for n in range(6):
            stores[n % 2].enqueue_send(outbox_entry(f"k{n}", at=NOON))
            workers[n % 2].dispatch_due()
            clock.advance(timedelta(minutes=1))
        assert len(channel.messages) == 3
        assert stores[1].outbox_counts() == {"sent": 3, "skipped": 3}
    finally:
        for s in stores:
            s.close()
