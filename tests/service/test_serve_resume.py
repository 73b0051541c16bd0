"""A running service picks up `journeyman journeys resume` of a time-segment journey:
the people who joined its segment while it was paused (no event of theirs since) enter
within seconds, through the re-armed time sweep (review fixes of issue 14)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from engine.core.model import Profile
from engine.core.times import iso
from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.testing import RecordingChannel
from tests.store.helpers import dormant_journey

DORMANT = dormant_journey()


def test_a_resumed_time_segment_enters_its_members_in_a_running_service(
        store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "hello.yaml").write_text(
        "channel: email\nsubject: Hi\nhtml: <p>Hi</p>\n")
    (folder / "policy.yaml").write_text("timezone: UTC\n")
    (folder / "dormant.yaml").write_text(DORMANT)
    channel = RecordingChannel()
    service = Service(folder, store_url, channels={"email": channel},
                      secrets=[SigningSecret("s" * 32)])
    try:
        quiet_since = datetime.now(UTC) - timedelta(days=120)
        with service.store.transaction():
            service.store.put_profile(Profile(
                "u1", {"email": "u1@example.com", "consent": {"email": True}},
                {"last_order_at": iso(quiet_since)}))
        paused = CliRunner().invoke(app, ["journeys", "pause", "dormant", "--db", store_url])
        assert paused.exit_code == 0, paused.output
        service.runner.closed = {"dormant"}  # as a refresh would (it was paused before start)
        service.start()  # arms u1's check, due now: it fires while the journey is paused
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and service.store.pending_timers():
            time.sleep(0.1)
        assert service.store.pending_timers() == 0  # checked, no next change: no timer
        assert channel.messages == []
        resumed = CliRunner().invoke(app, ["journeys", "resume", "dormant", "--db", store_url])
        assert resumed.exit_code == 0, resumed.output
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not channel.messages:
            time.sleep(0.2)
        assert [(m.profile_id, m.journey) for m in channel.messages] == [("u1", "dormant")]
    finally:
        service.stop()
