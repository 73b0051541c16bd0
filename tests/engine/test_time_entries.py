"""Entries driven by time alone (issue 14 §2), on the fake clock: a birthday journey
deployed over profiles that exist already sends each one at 09:00 local on their
birthday, whatever their time zone (and after a change of zone); a dormant-customer
segment (days since the last order) enters quiet profiles with no new event."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
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
PROFILES = 10_000


def birthday(n: int) -> date:
    """Spread over the year (leap days included), several per day."""
    return date(1988, 1, 1) + timedelta(days=(n * 37) % 366)


def person(n: int) -> Profile:
    traits: dict[str, object] = {"email": f"p{n}@example.com", "consent": {"email": True},
                                 "first_name": f"P{n}", "birthday": birthday(n).isoformat()}
    zone = ZONES[n % len(ZONES)]
    if zone is not None:
        traits["timezone"] = zone
    return Profile(f"p{n}", traits)


def local(n: int) -> ZoneInfo:
    return ZoneInfo(ZONES[n % len(ZONES)] or "Europe/Madrid")


def nine_on_next_birthday(n: int, after: datetime) -> datetime:
    born = birthday(n)
    for year in (after.year, after.year + 1):
        day = (date(year, 2, 28) if (born.month, born.day) == (2, 29) and year % 4
               else born.replace(year=year))
        nine = datetime.combine(day, time(9, 0), tzinfo=local(n)).astimezone(UTC)
        if nine > after:
            return nine
    raise AssertionError(n)


def test_a_birthday_journey_deployed_over_existing_profiles_sends_at_nine_local() -> None:
    """10,000 profiles made before the journey, in six time zones, birthdays all over
    the year: on deploy each gets one timer at 09:00 local on its next birthday (the
    store says so), and two days of the fake clock send exactly those born on them, at
    09:00 local, once."""
    eng = InMemoryEngine.from_folder(LIBRARY, start=DEPLOY, only=["special_dates"])
    for n in range(PROFILES):  # they exist before the journey is deployed
        eng.store.put_profile(person(n))
    assert eng.deploy() == PROFILES  # one timer each
    assert eng.deploy() == 0  # a restart with the same journeys arms nothing
    timers = {t.profile_id: t.due_at for t in eng.store.due_timers(
        DEPLOY + timedelta(days=800), 2 * PROFILES)}
    assert timers == {f"p{n}": nine_on_next_birthday(n, DEPLOY) for n in range(PROFILES)}

    eng.advance(timedelta(days=2))
    end = DEPLOY + timedelta(days=2)
    sent = {m.profile: m.at for m in eng.sent}
    assert len(eng.sent) == len(sent)  # once each
    expected = {f"p{n}": nine_on_next_birthday(n, DEPLOY) for n in range(PROFILES)
                if nine_on_next_birthday(n, DEPLOY) <= end}
    assert len(expected) > 40  # born on one of these two days, in some zone
    assert sent == expected
    for pid, at in sent.items():
        n = int(pid[1:])
        when = at.astimezone(local(n))
        assert (when.time(), when.strftime("%m-%d")) == (time(9, 0),
                                                         birthday(n).strftime("%m-%d"))


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


DORMANT_TAG = """
journey: dormant
version: 1
entry:
  segment:
    when:
      all:
        - profile.computed.orders_count: {gte: 1}
        - profile.computed.days_since_last_order: {gte: 30}
steps:
  - id: tag
    update_profile: {set: {dormant: true}}
"""


def test_a_dormant_segment_enters_ten_thousand_quiet_profiles_without_an_event(
        tmp_path: Path) -> None:
    """10,000 profiles whose last order was 28 to 32 days before the deploy, and no
    event after: each enters when it reaches 30 days without an order (those past it
    at the deploy, at once), within the hour."""
    folder = write_folder(tmp_path / "j", {"dormant": DORMANT_TAG}, {},
                          policy="timezone: UTC\n")
    eng = InMemoryEngine.from_folder(folder, start=DEPLOY)
    count = 10_000
    last_orders = {}
    for n in range(count):
        last = DEPLOY - timedelta(days=28 + 4 * n / count)
        last_orders[f"p{n}"] = last
        eng.store.put_profile(Profile(f"p{n}", {"email": f"p{n}@example.com"},
                                      {"orders_count": 1, "last_order_at": iso(last)}))
    eng.deploy()
    eng.advance(timedelta(days=3))
    late = []
    for pid, last in last_orders.items():
        [enrollment] = eng.enrollments(pid, "dormant")
        due = max(DEPLOY, last + timedelta(days=30))
        if not timedelta(0) <= enrollment.entered_at - due <= timedelta(hours=1):
            late.append((pid, enrollment.entered_at, due))
    assert late == []
    assert eng.profile("p0").traits["dormant"] is True


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


ANNIVERSARY = """
journey: anniversary
version: 1
entry:
  segment:
    when:
      profile.traits.signed_up_at: {before: 365d}
steps:
  - id: thanks
    send: {channel: email, template: thanks}
"""


def test_a_signup_anniversary_enters_a_year_after_signup_with_no_event(
        tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"anniversary": ANNIVERSARY},
                          {"thanks": stub_email("thanks")}, policy="timezone: UTC\n")
    eng = InMemoryEngine.from_folder(folder, start=DEPLOY)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True},
                         "signed_up_at": iso(DEPLOY - timedelta(days=300))})
    eng.advance(timedelta(days=64))
    assert eng.sent == []
    eng.advance(timedelta(days=2))
    [message] = eng.sent
    assert timedelta(0) < message.at - (DEPLOY + timedelta(days=65)) <= timedelta(hours=1)


def test_next_change_of_time_conditions() -> None:
    from engine.core.time_conditions import next_change, time_dependent
    from rules import parse_condition

    ordered = Profile("p", {}, {"last_order_at": iso(DEPLOY)})
    dormant = parse_condition({"profile.computed.days_since_last_order": {"gt": 29}})
    assert time_dependent(dormant)
    assert next_change(dormant, ordered, DEPLOY) == DEPLOY + timedelta(days=30)
    assert next_change(dormant, ordered, DEPLOY + timedelta(days=30)) is None
    assert next_change(dormant, Profile("p"), DEPLOY) is None  # never ordered
    static = parse_condition({"profile.computed.orders_count": {"gte": 2}})
    assert not time_dependent(static)
    born = Profile("p", {"birthday": "1990-06-10", "timezone": "Asia/Tokyo"})
    birthday = parse_condition({"profile.computed.birthday_today": True})
    assert next_change(birthday, born, DEPLOY) == datetime(2026, 6, 9, 15, 0, tzinfo=UTC)
    assert next_change(birthday, born, datetime(2026, 6, 9, 15, 0, tzinfo=UTC)) == datetime(
        2026, 6, 10, 15, 0, tzinfo=UTC)
