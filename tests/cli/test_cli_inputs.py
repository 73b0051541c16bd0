"""The command line's answers to bad inputs, run as a real subprocess: a journeys path
that does not exist (a usage error, exit 2, the same message from every command) and
profile, event and event-stream files of the wrong shape (exit 1, naming the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.conftest import LIBRARY

# Every command that takes --journeys, with what else it needs to get that far.
JOURNEYS_COMMANDS = {
    "graph": ["graph", "welcome"],
    "preview": ["preview", "welcome", "welcome_site", "--profile", "{tmp}/p.json"],
    "replay": ["replay", "{tmp}/events.jsonl"],
    "demo": ["demo", "--synthetic", "1", "--days", "0"],
    "plan": ["plan", "--db", "sqlite:///{tmp}/jm.db"],
    "stats": ["stats", "--db", "sqlite:///{tmp}/jm.db"],
}


@pytest.mark.parametrize("command", sorted(JOURNEYS_COMMANDS))
def test_a_missing_journeys_folder_is_a_usage_error_for_every_command(
        tmp_path: Path, command: str) -> None:
    """Not `nope:1:1: no such journey file` and exit 1 (a problem in a journey, as the
    loader words it) from some commands and exit 2 from `validate`: one message naming
    the option, exit 2, before any work (demo printed its progress line first)."""
    (tmp_path / "p.json").write_text('{"id": "ana"}')
    (tmp_path / "events.jsonl").write_text(
        '{"userId": "a", "event": "x", "timestamp": "2026-03-02T09:00:00Z"}\n')
    args = [a.replace("{tmp}", str(tmp_path)) for a in JOURNEYS_COMMANDS[command]]
    missing = tmp_path / "nope"
    result = run(*args, "--journeys", str(missing))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr == (f"journeyman {command}: no such file or folder: {missing} "
                             "(--journeys)\n")
    assert result.stdout == ""
    assert not (tmp_path / "jm.db").exists()  # it stopped before opening the store


def test_a_missing_journeys_path_argument_is_the_same_usage_error(tmp_path: Path) -> None:
    """The journey paths given as arguments (validate, simulate, graph FILE.yaml) say it
    the same way, without an option to name."""
    missing = tmp_path / "nope"
    events = tmp_path / "events.jsonl"
    events.write_text("")
    for args, path in (
            (["validate", str(missing)], missing),
            (["simulate", str(missing), "--events", str(events)], missing),
            (["graph", str(missing.with_suffix(".yaml"))], missing.with_suffix(".yaml"))):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr == f"journeyman {args[0]}: no such file or folder: {path}\n"
    folder = run("graph", "welcome", "--journeys", str(LIBRARY))  # an existing one still works
    assert folder.returncode == 0, folder.stderr
