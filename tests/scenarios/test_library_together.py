"""The whole bundled library on one profile stream (issue 14): every scenario file's
events, run with all twelve journeys at once instead of only the ones it tests, still
deliver every message the file expects, at the time it expects (caps, counted send by
send with journey priorities, and `on_cap: delay` for the post-purchase how-to, keep
other journeys from silently taking their place)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.qa.scenario_file import load_scenario
from engine.qa.scenarios import LibraryCache, run_scenario
from tests.conftest import LIBRARY

SCENARIOS = sorted((LIBRARY / "scenarios").glob("*.scenario.yaml"))
CACHE = LibraryCache()


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name.split(".")[0])
def test_the_library_together_delivers_what_each_scenario_expects(path: Path) -> None:
    scenario, library = load_scenario(path, CACHE, path.name)
    messages = [e for (kind, _), items in scenario.expectations.items() for e in items
                if kind == "messages"]
    together = replace(scenario, only=None, expectations={("messages", False): messages},
                       no_messages_for=[], profiles={})
    result = run_scenario(together, library)
    missing = [(r.fields, r.notes) for r in result.rows if r.kind == "messages"
               and r.mark != "ok"] if not result.passed else []
    assert not result.invalid, (result.problems, result.error)
    assert result.passed, missing
