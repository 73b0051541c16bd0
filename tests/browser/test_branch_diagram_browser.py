"""A journey whose branch conditions hold what Mermaid reads as syntax (quotes, `<`,
`>`, `|`, brackets, braces, `;`, `#`, `:`): its diagram on the dashboard still draws in
Chromium, each branch edge saying its condition as it was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.store import SqlStore
from engine.testing import InMemoryEngine
from tests.api.dashboard_world import START, start_server
from tests.language.test_graph_labels import BRANCHY

pytestmark = pytest.mark.slow


def test_branch_conditions_draw_on_the_diagram(browser: Any, tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    folder.mkdir()
    (folder / "branchy.yaml").write_text(BRANCHY)
    store = SqlStore(f"sqlite:///{tmp_path / 'branchy.db'}", create=True)
    engine = InMemoryEngine.from_folder(folder, start=START)
    engine.use_store(store)
    url, server, thread = start_server(store, engine, open_local=True)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/journeys/branchy")
        page.wait_for_selector("#diagram[data-drawn]")
        assert page.get_attribute("#diagram", "data-drawn") == "yes"
        page.screenshot(path=str(tmp_path / "branchy.png"), full_page=True)
        labels = page.evaluate("Array.from(document.querySelectorAll('#diagram svg "
                               ".edgeLabel')).map(n => n.textContent)")
        assert "event.properties.price < 20 or event.properties.price > 100" in labels
        assert "profile.traits.tier in ['gold', 'silver']" in labels
        assert "else" in labels
        odd = next(label for label in labels if label.startswith("event.properties.note"))
        assert odd.startswith("event.properties.note = 'say \"hi\" <b> | [x] {y}; #58; a:")
        page.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
