"""A clock of one's own given to `Service(clock=...)` that has only `now()` (all the
Clock port asked until `from_wall`/`to_wall` were added to it) runs at the wall's pace,
as the service took any clock without a `speed` before: the loops asked it `to_wall`
after each run, which ended in an AttributeError (logged with its traceback by
APScheduler), the loop's next run left to the safety net's interval."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.testing import RecordingChannel
from tests.engine.helpers import stub_email, write_folder
from tests.service.test_schema_gate import HELLO, WAIT_S, signed_up, until


class NowOnly:
    """A wall clock that says the time and nothing else."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def test_a_clock_with_only_now_runs_at_the_walls_pace(
        store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"hi": stub_email("hi")})
    channel = RecordingChannel()
    service = Service(folder, store_url, channels={"email": channel},
                      secrets=[SigningSecret("s" * 32)], clock=NowOnly())  # type: ignore[arg-type]
    try:
        service.start()
        service.store.accept_events(signed_up("p1"))
        service.wake_events()
        until(lambda: [m.profile_id for m in channel.messages] == ["p1"], WAIT_S + 10,
              "p1's send was not made")
        # each run of a loop ended in the AttributeError (APScheduler logs it), its next
        # run left to the safety net
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        service.stop()


def test_the_helpers_take_a_clock_without_the_pace_methods_at_the_walls_pace() -> None:
    from engine.core.times import from_wall, to_wall
    from engine.qa.demo import TimeLapseClock

    assert from_wall(NowOnly(), 2.5) == timedelta(seconds=2.5)
    assert to_wall(NowOnly(), timedelta(minutes=1)) == 60.0
    lapse = TimeLapseClock(datetime(2026, 3, 2, tzinfo=UTC), speed=60.0)
    assert from_wall(lapse, 1.0) == timedelta(minutes=1)
    assert to_wall(lapse, timedelta(hours=1)) == 60.0
