"""Local-time waits are DST-correct in the profile's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from engine.core.steps.wait import next_local_time

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("now", "tz", "expected"),
    [
        # same day, later
        (datetime(2026, 3, 2, 7, 0, tzinfo=UTC), MADRID, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        # exactly at 10:00 local: strictly after, so tomorrow
        (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), MADRID, datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),
        # across spring forward (Madrid 29 Mar 2026): 10:00 CEST is 08:00 UTC
        (datetime(2026, 3, 28, 12, 0, tzinfo=UTC), MADRID, datetime(2026, 3, 29, 8, 0, tzinfo=UTC)),
        # across fall back (Madrid 25 Oct 2026): 10:00 CET is 09:00 UTC
        (datetime(2026, 10, 24, 12, 0, tzinfo=UTC), MADRID,
         datetime(2026, 10, 25, 9, 0, tzinfo=UTC)),
        # New York springs forward on 8 Mar 2026: 10:00 EDT is 14:00 UTC
        (datetime(2026, 3, 7, 16, 0, tzinfo=UTC), NEW_YORK,
         datetime(2026, 3, 8, 14, 0, tzinfo=UTC)),
    ],
)
def test_next_ten_am(now: datetime, tz: ZoneInfo, expected: datetime) -> None:
    assert next_local_time(now, "10:00", tz) == expected


def test_a_time_inside_the_spring_gap_resolves_after_the_gap() -> None:
    # 02:30 does not exist in Madrid on 29 Mar 2026 (02:00 -> 03:00 CEST)
    due = next_local_time(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), "02:30", MADRID)
    assert due == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert due.astimezone(MADRID).hour == 3


def test_the_repeated_hour_on_fall_back_takes_the_first_reading() -> None:
    due = next_local_time(datetime(2026, 10, 24, 12, 0, tzinfo=UTC), "02:30", MADRID)
    assert due == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET
