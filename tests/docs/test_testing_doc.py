"""docs/testing.md works as written: its scenario passes, and its `--json` example has
every field the report has."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
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


def test_the_docs_scenario_passes_where_the_doc_puts_it(tmp_path: Path) -> None:
    # As written, `journeys: ..` and all: the doc once put it in `my_journeys/scenarios/`,
    # where `..` holds no abandoned_cart, and this test swapped `..` for the library.
    text = _block_after("`journeys/library/scenarios/cart.scenario.yaml`", "yaml")
    library = tmp_path / "library"
    shutil.copytree(LIBRARY, library, ignore=shutil.ignore_patterns("__pycache__"))
    path = library / "scenarios" / "cart.scenario.yaml"
    path.write_text(text)
    done = CliRunner().invoke(app, ["test", str(path)])
    assert done.exit_code == 0, done.output


def test_the_docs_pytest_plugin_examples_pass(tmp_path: Path) -> None:
    # Run by pytest in a project of its own, as a user would: the doc once pointed the
    # fixture at "my_journeys" for a bundled journey, and `sent` was [].
    (tmp_path / "test_doc.py").write_text(_block_after("## The pytest plugin", "python"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_doc.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


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
