"""Entries driven by time alone (issue 14 §2), on the fake clock: a birthday journey
deployed over profiles that exist already sends each one at 09:00 local on their
birthday, whatever their time zone (and after a change of zone); a dormant-customer
segment (days since the last order) enters quiet profiles with no new event."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.core.model import Profile
from engine.core.times import iso
from engine.testing import InMemoryEngine
from tests.conftest import LIBRARY
from tests.engine.helpers import stub_email, write_folder

DEPLOY = datetime(2026, 6, 9, 12, 0, tzinfo=UTC)
ZONES = ["Pacific/Auckland", "Asia/Tokyo", "Europe/Madrid", "America/New_York",
         "America/Los_Angeles", None]  # None: the policy's zone (Europe/Madrid)
BIRTHDAYS = ["1990-06-10", "1985-06-11", "1970-12-25"]  # the last: not this week
PROFILES = 10_000


def person(n: int) -> Profile:
    traits: dict[str, object] = {"email": f"p{n}@example.com", "consent": {"email": True},
                                 "first_name": f"P{n}", "birthday": BIRTHDAYS[n % 3]}
    zone = ZONES[n % len(ZONES)]
    if zone is not None:
        traits["timezone"] = zone
    return Profile(f"p{n}", traits)


def local(n: int) -> ZoneInfo:
    return ZoneInfo(ZONES[n % len(ZONES)] or "Europe/Madrid")


def test_a_birthday_journey_deployed_over_existing_profiles_sends_at_nine_local() -> None:
    eng = InMemoryEngine.from_folder(LIBRARY, start=DEPLOY, only=["special_dates"])
    for n in range(PROFILES):  # they exist before the journey is deployed
        eng.store.put_profile(person(n))
    assert eng.deploy() == PROFILES  # one cron timer each
    assert eng.deploy() == 0  # a restart with the same journeys arms nothing
    eng.advance(timedelta(days=3))
    sent = {m.profile: m.at for m in eng.sent}
    assert len(eng.sent) == len(sent)  # once each
    expected = {f"p{n}" for n in range(PROFILES) if n % 3 != 2}
    assert set(sent) == expected
    for n in range(PROFILES):
        at = sent.get(f"p{n}")
        if at is not None:
            when = at.astimezone(local(n))
            assert (when.time(), when.strftime("%m-%d")) == (
                time(9, 0), BIRTHDAYS[n % 3][5:]), (n, iso(at))


def test_a_change_of_time_zone_moves_the_next_birthday_send() -> None:
    """Los Angeles to Tokyo the day before: 09:00 in Tokyo, not 09:00 in Los Angeles
    (which is already the next day in Tokyo: the birthday would be missed)."""
    eng = InMemoryEngine.from_folder(LIBRARY, start=DEPLOY, only=["special_dates"])
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True},
                         "birthday": "1990-06-10", "timezone": "America/Los_Angeles"})
    eng.advance(timedelta(hours=1))
    eng.identify("ana", {"timezone": "Asia/Tokyo"})
    eng.advance(timedelta(days=2))
    assert [m.at for m in eng.sent] == [datetime(2026, 6, 10, 0, 0, tzinfo=UTC)]


DORMANT = """
journey: dormant
version: 1
entry:
  segment:
    when:
      profile.computed.days_since_last_order: {gte: 30}
re_entry: {after: 60d}
steps:
  - id: miss_you
    send: {channel: email, template: miss_you}
"""


def test_a_dormant_segment_enters_quiet_profiles_without_an_event(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"dormant": DORMANT},
                          {"miss_you": stub_email("miss_you")},
                          policy="timezone: UTC\nconsent_required: [email]\n")
    eng = InMemoryEngine.from_folder(folder, start=DEPLOY)
    count = 2_000
    last_orders = {}
    for n in range(count):  # last ordered between 50 days and 1 hour ago
        last = DEPLOY - timedelta(hours=1 + n * 24 * 50 / count)
        last_orders[f"p{n}"] = last
        eng.store.put_profile(Profile(f"p{n}", {"email": f"p{n}@example.com",
                                                "consent": {"email": True}},
                                      {"orders_count": 1, "last_order_at": iso(last)}))
    eng.deploy()
    eng.advance(timedelta(days=31))
    sent = {m.profile: m.at for m in eng.sent}
    assert set(sent) == set(last_orders)
    for pid, last in last_orders.items():
        due = max(DEPLOY, last + timedelta(days=30))
        assert timedelta(0) <= sent[pid] - due <= timedelta(hours=1), pid


def test_an_order_moves_the_dormant_date_and_a_quiet_profile_is_not_entered_early(
        tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"dormant": DORMANT},
                          {"miss_you": stub_email("miss_you")},
                          policy="timezone: UTC\nconsent_required: [email]\n")
    eng = InMemoryEngine.from_folder(folder, start=DEPLOY)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.track("ana", "Order Completed", {"revenue": 20})
    eng.advance(timedelta(days=20))
    eng.track("ana", "Order Completed", {"revenue": 20})  # twenty days later
    eng.advance(timedelta(days=29, hours=23))
    assert eng.sent == []
    eng.advance(timedelta(hours=2))
    assert [m.at for m in eng.sent] == [DEPLOY + timedelta(days=50)]
