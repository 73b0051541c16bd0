"""Dates at the calendar's ends (a hostile or careless trait): they compare, they never
raise, and they never park a person's events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.core.model import Profile
from engine.core.time_conditions import next_change, next_hour
from engine.testing import InMemoryEngine
from rules import evaluate, parse_condition
from tests.engine.helpers import UNTIL, stub_email, write_folder
from tests.engine.test_time_entries import ANNIVERSARY

NOW = datetime(2026, 6, 9, 12, 0, tzinfo=UTC)
FAR = ["9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00",
       "9999-12-31T23:59:59.999999+00:00"]
EARLY = ["0001-01-01", "0001-01-01T00:00:00+05:00"]


@pytest.mark.parametrize("value", FAR + EARLY)
def test_relative_and_ordered_comparisons_of_extreme_dates(value: str) -> None:
    far = value.startswith("9999")
    facts = {"profile": {"traits": {"at": value}}}
    for raw, expected in [({"before": "365d"}, not far), ({"after": "365d"}, far),
                          ({"before": "2026-01-01"}, not far), ({"after": "2026-01-01"}, far),
                          ({"gt": "2026-01-01T00:00:00Z"}, far),
                          ({"lt": "2026-01-01T00:00:00Z"}, not far)]:
        assert evaluate(parse_condition({"profile.traits.at": raw}), facts, NOW) is expected


@pytest.mark.parametrize("value", FAR)
def test_next_change_past_the_calendar_is_never(value: str) -> None:
    condition = parse_condition({"profile.traits.at": {"before": "365d"}})
    assert next_change(condition, Profile("p", {"at": value}), NOW) is None
    dormant = parse_condition({"profile.computed.days_since_last_order": {"gt": 29}})
    assert next_change(dormant, Profile("p", {}, {"last_order_at": value}), NOW) is None
    recency = parse_condition({"profile.computed.rfm_recency_name": "long"})
    assert next_change(recency, Profile("p", {}, {"last_order_at": value}), NOW) is None


def test_next_hour_in_the_calendars_last_hour() -> None:
    last = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    assert next_hour(last) == datetime(9999, 12, 31, 23, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", FAR)
def test_a_far_future_signup_date_neither_fails_nor_parks(tmp_path: Path, value: str) -> None:
    folder = write_folder(tmp_path / "j", {"anniversary": ANNIVERSARY},
                          {"thanks": stub_email("thanks")}, policy="timezone: UTC\n")
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True},
                         "signed_up_at": value})
    eng.identify("ana", {"first_name": "Ana"})  # a later event is not held
    eng.advance(timedelta(days=2))
    assert eng.failures == []
    assert eng.profile("ana").traits["first_name"] == "Ana"
    assert eng.sent == []


def test_a_wait_until_the_calendars_end_does_not_stop_the_timer_loop(tmp_path: Path) -> None:
    """A wait until 9999-12-31T23:59:59-14:00 (past the calendar's end in UTC): its timer
    is kept at FAR_FUTURE, and the timer loop's round (`earliest + slack`) no longer
    overflows: it failed on every run and held every profile's timers."""
    from engine.core.times import FAR_FUTURE
    from engine.runtime.events import normalize
    from engine.service import Service
    from engine.testing import FakeClock

    folder = write_folder(tmp_path / "j", {"until": UNTIL}, {"hello": stub_email("hello")})
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    service = Service(folder, f"sqlite:///{tmp_path / 'end.db'}", channels={},
                      clock=FakeClock(now))
    try:
        service.store.accept_events([normalize(
            {"type": "track", "userId": "u", "event": "Scheduled",
             "properties": {"when": "9999-12-31T23:59:59-14:00"}},
            now=now, message_id="end")], "site")
        assert service.worker.handle_events() == 1
        assert service.store.next_timer_at() == FAR_FUTURE
        assert service._timer_round() is not None  # raised OverflowError
    finally:
        service.stop()
