"""The command line's answers to bad inputs, run as a real subprocess: a journeys path
that does not exist (a usage error, exit 2, the same message from every command) and
profile, event and event-stream files of the wrong shape (exit 1, naming the file)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
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
    "apply": ["apply", "--db", "sqlite:///{tmp}/jm.db"],
    "stats": ["stats", "--db", "sqlite:///{tmp}/jm.db"],
}
# plan and apply exit 1 for whatever stops a deploy (qa-contract.md, section 5): a
# missing folder was 1 there before the message was made one for every command
DEPLOYS = {"plan", "apply"}


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
    assert result.returncode == (1 if command in DEPLOYS else 2), (result.stdout,
                                                                   result.stderr)
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


PROFILE = '{"id": "ana", "traits": {"email": "ana@example.com", "first_name": "Ana"}}'


@pytest.mark.parametrize(("option", "text", "message"), [
    ("--profile", "[1, 2]", 'expected a JSON object: {"id": "...", "traits": {...}, '
                            '"computed": {...}}, got an array'),
    ("--profile", '{"traits": 5}', "'traits' must be an object, got a number"),
    ("--event", '"str"', 'expected a JSON object, a Segment event: {"type": "track", '
                         '"event": "...", "properties": {...}, ...}, got a string'),
])
def test_preview_says_which_file_has_the_wrong_shape(tmp_path: Path, option: str, text: str,
                                                    message: str) -> None:
    """A profile or event file of valid JSON but the wrong shape: the option, the file
    and what was expected, exit 1; these were an AttributeError, a TypeError and a
    ValueError with their tracebacks."""
    (tmp_path / "profile.json").write_text(PROFILE)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    files = {"--profile": tmp_path / "profile.json", option: bad}
    result = run("preview", "welcome", "welcome_site", "--journeys", str(LIBRARY),
                 *(a for name, path in files.items() for a in (name, str(path))))
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"{option} {bad}: {message}\n"


def test_preview_reads_a_well_shaped_event(tmp_path: Path) -> None:
    """The checks refuse only the wrong shapes: an event with properties renders."""
    (tmp_path / "profile.json").write_text(PROFILE)
    (tmp_path / "event.json").write_text(
        '{"type": "track", "event": "Signed Up", "userId": "ana", "properties": {}}')
    result = run("preview", "welcome", "welcome_site", "--journeys", str(LIBRARY),
                 "--profile", str(tmp_path / "profile.json"),
                 "--event", str(tmp_path / "event.json"))
    assert result.returncode == 0, result.stderr
    assert "to: ana@example.com" in result.stdout


def test_read_object_names_the_file_and_the_shape(tmp_path: Path) -> None:
    """The helper behind --profile and --event, on the shapes a subprocess each would
    be slow for."""
    from engine.qa.inputs import (
        PROFILE_FIELDS,
        PROFILE_SHAPE,
        InputFileError,
        read_object,
    )

    path = tmp_path / "p.json"
    for text, message in (
            ("null", f"expected {PROFILE_SHAPE}, got null"),
            ("5", f"expected {PROFILE_SHAPE}, got a number"),
            ('{"id": true}', "'id' must be a string or a number, got true"),
            ('{"id": {"a": 1}}', "'id' must be a string or a number, got an object"),
            ('{"computed": [1]}', "'computed' must be an object, got an array"),
            ("", "1:1: not JSON: Expecting value")):
        path.write_text(text)
        with pytest.raises(InputFileError) as raised:
            read_object(path, "--profile", PROFILE_SHAPE, PROFILE_FIELDS)
        assert str(raised.value).removeprefix(f"--profile {path}").lstrip(": ") == message
    path.write_text('{"id": 7, "traits": null, "computed": {"n": 1}}')  # null: absent
    assert read_object(path, "--profile", PROFILE_SHAPE, PROFILE_FIELDS)["id"] == 7


def test_demo_names_the_events_file_and_its_line(tmp_path: Path) -> None:
    """A bad line 2 was reported as `line 1 column 2` (each line parsed alone); the
    file's own line number now, as `simulate` and `replay` say it. Lines that are no
    event object, or one the API would refuse (an HTTP error from inside the demo), are
    refused the same way before the service starts."""
    events = tmp_path / "events.jsonl"
    good = '{"type": "track", "userId": "a", "event": "X", "timestamp": "2026-03-02T09:00:00Z"}'
    big = good.replace('"X"', '"X", "properties": {"p": "' + "y" * 40_000 + '"}')
    for second, message in (
            ('{"type": "track",', "2:18: not JSON: Expecting property name enclosed in "
                                  "double quotes"),
            ("[1]", "2:1: each line must be a JSON object (an event), got an array"),
            ('{"userId": "a", "event": "X"}', "2:1: every event needs an ISO 8601 "
                                              "'timestamp' to be played in the demo"),
            (good.replace('"X"', '"X", "properties": 5'),
             "2:1: 'properties' must be an object"),
            # the API's size limit too (engine/api/ingest.py checked_event)
            (big, f"2:1: event larger than 32768 bytes ({len(orjson.dumps(json.loads(big)))})")):
        events.write_text(f"{good}\n{second}\n")
        result = run("demo", "--events", str(events), "--synthetic", "0")
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"{events}:{message}\n"
        assert result.stdout == ""  # refused before anything started


DEEP = "[" * 100_000 + "]" * 100_000  # json.loads: RecursionError at ~1,000 levels


def test_deeply_nested_inputs_are_refused_at_their_place_without_a_traceback(
        tmp_path: Path) -> None:
    """`preview --profile`, `simulate --events` and `replay` printed `RecursionError:
    maximum recursion depth exceeded while decoding a JSON array`; the API refused the
    same (400 body is nested too deeply). Now `file:line:col: nested too deeply (at most
    64 levels)`, exit 1, the column that of the first bracket past level 64."""
    profile = tmp_path / "deep.json"
    profile.write_text('{"id": "ana",\n "traits": {"x": ' + DEEP + "}}")
    events = tmp_path / "events.jsonl"
    good = '{"type": "track", "userId": "a", "event": "X", "timestamp": "2026-03-02T09:00:00Z"}'
    events.write_text(good + '\n{"type": "track", "x": ' + DEEP + "}\n")
    column = len('{"type": "track", "x": ') + 63 + 1  # the event is level 1
    profile_column = len(' "traits": {"x": ') + 62 + 1  # the profile, traits: 1 and 2
    for args, message in (
            (["preview", "welcome", "welcome_site", "--journeys", str(LIBRARY),
              "--profile", str(profile)],
             f"--profile {profile}:2:{profile_column}: "),
            (["simulate", str(LIBRARY), "--events", str(events)], f"{events}:2:{column}: "),
            (["replay", str(events), "--journeys", str(LIBRARY)], f"{events}:2:{column}: ")):
        result = run(*args)
        assert result.returncode == 1, (args, result.stderr)
        told = message + "nested too deeply (at most 64 levels)\n"
        if args[0] == "replay":  # the line told, the rest replayed (stdout), then exit 1
            told += f"journeyman replay: 1 unreadable line(s) of {events} not replayed " \
                    "(exit 1)\n"
            assert result.stdout.startswith("replayed 1 event of 1 profile, ")
        if args[0] == "simulate":  # the same: the rest simulated, then exit 1
            told += f"journeyman simulate: 1 line(s) of {events} not simulated (exit 1)\n"
            assert result.stdout.endswith("-- 1 event(s), 0 message(s), 0 skipped, "
                                          "0 deferred, 0 exit(s)\n")
        assert result.stderr == told
        assert "Traceback" not in result.stderr


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count(
        tmp_path: Path) -> None:
    from engine.jsonfast import nested_past
    from engine.qa.inputs import PROFILE_SHAPE, InputFileError, read_event_lines, read_object

    path = tmp_path / "p.json"
    inner = "[" * 62 + "]" * 62  # with the profile and traits objects: 64 levels
    path.write_text('{"traits": {"x": ' + inner + ', "s": "' + "[{" * 500 + '"}}')
    assert read_object(path, "--profile", PROFILE_SHAPE)["traits"]["s"] == "[{" * 500
    path.write_text('{"traits": {"x": [' + inner + "]}}")
    with pytest.raises(InputFileError, match=r":1:80: nested too deeply"):
        read_object(path, "--profile", PROFILE_SHAPE)
    events = tmp_path / "e.jsonl"
    events.write_text('{"timestamp": "2026-03-02T09:00:00Z", "p": {"a": ' + inner + "}}\n")
    assert len(read_event_lines(events)) == 1
    assert nested_past('["\\"[[", [[1]]]', 2) == 10
    assert nested_past(b'["\\"[[", [[1]]]', 2) == 10
    assert nested_past('[[1], [2], {"a": [3]}]', 3) is None
