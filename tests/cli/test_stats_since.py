"""`journeyman stats --since`: an ISO date or time, or a duration back from now (a
marketer's trial typed `--since 7d` and was told it was not an ISO date)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app as cli
from engine.store import SqlStore


def _since(tmp_path: Path, text: str) -> datetime:
    SqlStore(f"sqlite:///{tmp_path / 'jm.db'}", create=True).close()
    done = CliRunner().invoke(cli, ["stats", "welcome", "--since", text, "--json",
                                    "--db", f"sqlite:///{tmp_path / 'jm.db'}"])
    assert done.exit_code == 0, done.output
    since = json.loads(done.stdout)["journeys"]["welcome"]["since"]
    return datetime.fromisoformat(since.replace("Z", "+00:00"))


def test_since_takes_a_duration_back_from_now(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    since = _since(tmp_path, "7d")
    after = datetime.now(UTC)
    assert before - timedelta(days=7, seconds=1) <= since <= after - timedelta(days=7)
    hours = _since(tmp_path, "12h")
    assert abs(datetime.now(UTC) - timedelta(hours=12) - hours) < timedelta(minutes=1)


def test_since_still_takes_an_iso_date(tmp_path: Path) -> None:
    assert _since(tmp_path, "2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)


def test_a_since_that_is_neither_is_a_usage_error(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["stats", "welcome", "--since", "last week",
                                    "--db", f"sqlite:///{tmp_path / 'jm.db'}"])
    assert done.exit_code == 2
    assert "neither an ISO date or time nor a duration" in done.output
