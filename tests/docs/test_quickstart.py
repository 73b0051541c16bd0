"""The quickstart works as written: its journey, templates and test, copied from the doc."""

from __future__ import annotations

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
