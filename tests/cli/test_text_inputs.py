"""Every file a command reads that is not UTF-8 (a scenario, an events file, a profile,
an event log, channels.yaml, the demo's events) is `file:line:column: not UTF-8 text`
and exit 1, never a `UnicodeDecodeError` traceback nor a codec message without the
file's name (journeys/textfile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from channels.config import ChannelConfigError, load
from engine.cli import app
from tests.engine.helpers import HELLO, stub_email, write_folder

runner = CliRunner()
EVENT = ('{"type": "track", "userId": "ana", "event": "Signed Up", '
         '"timestamp": "2026-03-02T09:00:00Z"}\n')
LATIN_1 = '{"type": "track", "userId": "jos\xe9"}\n'.encode("latin-1")  # 0xe9 at column 33


def _fails_at(result: Result, where: str, offset: int) -> None:
    assert result.exit_code == 1, result.output
    assert f"{where}: not UTF-8 text (byte 0xe9 at offset {offset}); save the file as " \
           "UTF-8" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": stub_email("welcome")})


def test_a_scenario_file(tmp_path: Path, folder: Path) -> None:
    scenario = tmp_path / "x.scenario.yaml"
    scenario.write_bytes(b"scenario: caf\xe9\njourneys: j\n")
    _fails_at(runner.invoke(app, ["test", str(scenario)]), f"{scenario}:1:14", 13)


def test_an_events_file_to_simulate(tmp_path: Path, folder: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT.encode() + LATIN_1)
    _fails_at(runner.invoke(app, ["simulate", str(folder), "--events", str(events)]),
              f"{events}:2:33", len(EVENT) + 32)


def test_an_event_log_to_replay(tmp_path: Path, folder: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(EVENT.encode() + LATIN_1)
    _fails_at(runner.invoke(app, ["replay", str(log), "--journeys", str(folder)]),
              f"{log}:2:33", len(EVENT) + 32)


def test_a_profile_to_preview(tmp_path: Path, folder: Path) -> None:
    profile = tmp_path / "ana.json"
    profile.write_bytes(b'{"id": "ana", "traits": {"first_name": "Jos\xe9"}}')
    result = runner.invoke(app, ["preview", "hello", "welcome", "--journeys", str(folder),
                                 "--profile", str(profile)])
    _fails_at(result, f"{profile}:1:44", 43)
    assert result.output.startswith(f"--profile {profile}:1:44: not UTF-8")


def test_the_demo_events(tmp_path: Path) -> None:
    events = tmp_path / "demo.jsonl"
    events.write_bytes(LATIN_1)
    result = runner.invoke(app, ["demo", "--events", str(events), "--synthetic", "0"])
    _fails_at(result, f"{events}:1:33", 32)
    assert result.output.startswith(f"{events}:1:33: not UTF-8")


def test_channels_yaml_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "channels.yaml"
    config.write_bytes(b"console: {adapter: console}\n# caf\xe9\n")
    with pytest.raises(ChannelConfigError) as caught:
        load(config)
    assert str(caught.value) == (f"{config}:2:6: not UTF-8 text (byte 0xe9 at offset 33); "
                                 "save the file as UTF-8")
