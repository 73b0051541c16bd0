"""docs/testing.md works as written: its scenario passes, and its `--json` example has
every field the report has."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import LIBRARY, ROOT

DOC = (ROOT / "docs" / "testing.md").read_text()


def _block_after(marker: str, lang: str) -> str:
    tail = DOC[DOC.index(marker):]
    match = re.search(rf"```{lang}\n(.*?)```", tail, re.S)
    assert match is not None
    return match.group(1)


def test_the_docs_scenario_passes(tmp_path: Path) -> None:
    text = _block_after("`my_journeys/scenarios/cart.scenario.yaml`", "yaml")
    path = tmp_path / "cart.scenario.yaml"
    path.write_text(text.replace("journeys: ..", f"journeys: {LIBRARY}", 1))
    done = CliRunner().invoke(app, ["test", str(path)])
    assert done.exit_code == 0, done.output


def test_the_docs_json_example_names_every_field(tmp_path: Path) -> None:
    example = json.loads(_block_after("### The `--json` report", "json"))
    log = tmp_path / "e.jsonl"
    log.write_text(json.dumps({"type": "track", "userId": "u", "event": "Signed Up",
                               "properties": {"source": "site"},
                               "timestamp": "2026-03-02T09:00:00Z"}) + "\n")
    done = CliRunner().invoke(app, ["replay", str(log), "--json"])
    report = json.loads(done.stdout)
    assert set(report) == set(example)
    journey = report["journeys"]["first_purchase"]
    assert set(journey) == set(example["journeys"]["first_purchase"])
    assert set(journey["steps"]["first_look"]) == set(
        example["journeys"]["first_purchase"]["steps"]["first_look"])
