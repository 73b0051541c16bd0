"""`journeyman replay --compare BEFORE.json`: what a change to the journeys did to a
log's replay, count by count. A QA trial replayed a log before and after making the
abandoned cart's grace wait 1h -> 3h and had only `diff` of two text reports to read
(the run time on the first line differs every time; one change moved a dozen lines)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from journeys.library import bundled_library

runner = CliRunner()


def _log(path: Path) -> Path:
    lines = []
    for user in ("ana", "ben", "cai"):
        lines.append({"type": "identify", "userId": user, "timestamp": "2026-03-02T09:00:00Z",
                      "traits": {"email": f"{user}@example.com", "consent": {"email": True}}})
        lines.append({"type": "track", "userId": user, "event": "Checkout Started",
                      "timestamp": "2026-03-02T09:00:00Z", "properties": {"cart_value": 50}})
    # cai buys 2 hours later: after a 1h grace's reminder, before a 3h grace's
    lines.append({"type": "track", "userId": "cai", "event": "Order Completed",
                  "timestamp": "2026-03-02T11:00:00Z", "properties": {"revenue": 50}})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _folder(tmp_path: Path, grace: str) -> Path:
    folder = tmp_path / f"journeys_{grace}"
    shutil.copytree(bundled_library(), folder, ignore=shutil.ignore_patterns("scenarios"))
    cart = folder / "abandoned_cart.yaml"
    text = cart.read_text(encoding="utf-8")
    assert "  - id: grace\n    wait: 1h\n" in text
    cart.write_text(text.replace("  - id: grace\n    wait: 1h\n",
                                 f"  - id: grace\n    wait: {grace}\n"), encoding="utf-8")
    return folder


def test_compare_tells_each_count_that_changed(tmp_path: Path) -> None:
    log = _log(tmp_path / "events.jsonl")
    first = runner.invoke(app, ["replay", str(log), "--journeys", str(_folder(tmp_path, "1h")),
                                "--json"])
    assert first.exit_code == 0, first.output
    before = tmp_path / "before.json"
    before.write_text(first.stdout, encoding="utf-8")
    after = _folder(tmp_path, "3h")

    text = runner.invoke(app, ["replay", str(log), "--journeys", str(after), "--no-progress",
                               "--compare", str(before)])
    assert text.exit_code == 0, text.output
    section = text.stdout.split(f"compared with {before}:\n", 1)[1].splitlines()
    assert section[0] == "  abandoned_cart:", section
    rows = {line.split()[0]: line.split()[1:] for line in section[1:]
            if line.startswith("    ")}
    assert rows["steps.reminder.sent"] == ["3", "->", "2", "(-1)"], section
    assert rows["steps.reminder.entered"] == ["3", "->", "2", "(-1)"], section
    assert section[-1].startswith("  unchanged: "), section
    assert "welcome" in section[-1], section
    assert not any("note: not the same events" in line for line in section), section

    as_json = runner.invoke(app, ["replay", str(log), "--journeys", str(after), "--json",
                                  "--compare", str(before)])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    changed = report["compared"]["journeys"]
    assert list(changed) == ["abandoned_cart"], changed
    assert changed["abandoned_cart"]["steps.reminder.sent"] == [3, 2]
    # the contract's fields are all still there, beside the new one
    assert report["journeys"]["abandoned_cart"]["steps"]["reminder"]["sent"] == 2


def test_compare_with_a_file_that_is_no_replay_report_is_a_usage_error(tmp_path: Path) -> None:
    log = _log(tmp_path / "events.jsonl")
    for name, body in (("bad.json", "{not json"), ("other.json", '{"events": 3}')):
        wrong = tmp_path / name
        wrong.write_text(body, encoding="utf-8")
        done = runner.invoke(app, ["replay", str(log), "--compare", str(wrong)])
        assert done.exit_code == 2, done.output
        assert f"--compare {wrong}: not a replay's --json report" in done.stderr
        assert done.stdout == ""
    missing = runner.invoke(app, ["replay", str(log), "--compare", str(tmp_path / "no.json")])
    assert missing.exit_code == 2, missing.output


def test_why_tells_one_persons_decisions_in_the_replay(tmp_path: Path) -> None:
    """A QA trial asked why a replayed customer got no offer: `journeyman why` reads a
    store, and a replay keeps none (nor, for speed, its decision log)."""
    log = _log(tmp_path / "events.jsonl")
    folder = _folder(tmp_path, "3h")
    text = runner.invoke(app, ["replay", str(log), "--journeys", str(folder), "--no-progress",
                               "--why", "cai"])
    assert text.exit_code == 0, text.output
    story = text.stdout.split("\ncai: ", 1)[1]
    assert "decision(s) in" in story.splitlines()[0]
    assert "  2026-03-02 11:00:00  exited      grace: exit_when: Order Completed" in story

    as_json = runner.invoke(app, ["replay", str(log), "--journeys", str(folder), "--json",
                                  "--why", "cai"])
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.stdout)["why"]
    cart = [(r["kind"], r["step"], r["reason"]) for r in records
            if r["journey"] == "abandoned_cart"]
    assert cart[0] == ("entered", "remember", "entry: Checkout Started")
    assert cart[-1] == ("exited", "grace", "exit_when: Order Completed")
    assert {"at", "journey", "step", "kind", "reason", "details"} <= set(records[0])

    stranger = runner.invoke(app, ["replay", str(log), "--journeys", str(folder), "--json",
                                   "--why", "caí"])
    assert stranger.exit_code == 1, stranger.output
    assert json.loads(stranger.stdout)["why"] is None  # the report is still printed
    assert "--why caí: nobody of that id in the replayed events" in stranger.stderr


def test_compare_with_another_commands_json_is_a_usage_error(tmp_path: Path) -> None:
    """`plan --json` (or `stats --json`) has a `journeys` object too: it was taken for a
    replay's report and every count of the replay listed as changed from nothing."""
    log = _log(tmp_path / "events.jsonl")
    plan = {"journeys": {"abandoned_cart": {"status": "unchanged", "from_version": 1,
                                            "to_version": 1, "in_flight": {}}},
            "errors": []}
    wrong = tmp_path / "plan.json"
    wrong.write_text(json.dumps(plan), encoding="utf-8")
    done = runner.invoke(app, ["replay", str(log), "--compare", str(wrong)])
    assert done.exit_code == 2, done.output
    assert f"--compare {wrong}: not a replay's --json report" in done.stderr
    assert done.stdout == ""
