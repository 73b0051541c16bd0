"""The quickstart works as written: its journey, templates and test, copied from the doc."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import ROOT

DOC = (ROOT / "docs" / "quickstart.md").read_text()


def _block_after(marker: str, lang: str) -> str:
    tail = DOC[DOC.index(marker):]
    match = re.search(rf"```{lang}\n(.*?)```", tail, re.S)
    assert match is not None
    return match.group(1)


def test_quickstart_journey_and_test_pass(tmp_path: Path) -> None:
    folder = tmp_path / "my_journeys"
    (folder / "templates").mkdir(parents=True)
    (folder / "trial_ending.yaml").write_text(_block_after("`my_journeys/trial_ending.yaml`",
                                                            "yaml"))
    reminder = _block_after("`my_journeys/templates/trial_reminder.yaml`", "yaml")
    (folder / "templates" / "trial_reminder.yaml").write_text(reminder)
    (folder / "templates" / "trial_last_call.yaml").write_text(reminder)
    code = _block_after("`tests/test_trial_ending.py`", "python")
    namespace: dict[str, object] = {}
    exec(compile(code.replace('"my_journeys"', repr(str(folder))), "quickstart", "exec"),
         namespace)
    test = namespace["test_a_trial_user_who_never_clicks_gets_two_emails"]
    assert callable(test)
    test()


def test_quickstart_step_5_runs_as_written_in_madrid_time(tmp_path: Path) -> None:
    """Step 5's events name no time zone: the bundled policy's Europe/Madrid applies, so
    the 09:00 reminder is 08:00Z, as the doc says (a newcomer expected 09:00Z)."""
    from typer.testing import CliRunner

    from engine.cli import app

    folder = tmp_path / "my_journeys"
    (folder / "templates").mkdir(parents=True)
    (folder / "trial_ending.yaml").write_text(_block_after("`my_journeys/trial_ending.yaml`",
                                                            "yaml"))
    reminder = _block_after("`my_journeys/templates/trial_reminder.yaml`", "yaml")
    (folder / "templates" / "trial_reminder.yaml").write_text(reminder)
    (folder / "templates" / "trial_last_call.yaml").write_text(reminder)
    shell = _block_after("## 5. Run it on recorded events", "sh")
    events = shell.split("<<'JSONL'\n", 1)[1].split("JSONL\n", 1)[0]
    (tmp_path / "events.jsonl").write_text(events)
    assert "reminder goes out at 08:00Z (09:00 in\nMadrid)" in DOC
    runner = CliRunner()
    done = runner.invoke(app, ["simulate", str(folder), "--events",
                               str(tmp_path / "events.jsonl"), "--json"])
    assert done.exit_code == 0, done.output
    sent = json.loads(done.stdout)["messages"]
    assert [(m["step"], m["at"]) for m in sent] == [("reminder", "2026-03-10T08:00:00Z"),
                                                    ("last_call", "2026-03-13T08:00:00Z")]
