"""What a marketer reads on a journey page with an A/B split, in Chromium: the split's
edges give each variant's share of everyone (the holdout taken out first), the control
is named, the period is to the minute, and no table cell is in scientific notation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.dashboard_world import PASSWORD, World, build_world

pytestmark = pytest.mark.slow

J = "first_purchase"  # split subject_test: holdout 10, benefits 50, social_proof 50


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("journey-page"))
    yield built
    built.close()


def test_a_split_journey_page_reads_right(browser: Any, world: World, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(f"{world.url}/login")
    page.fill("input[name=name]", "vi")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{world.url}/")
    page.goto(f"{world.url}/journeys/{J}?days=30")
    page.wait_for_selector("#diagram[data-drawn=yes]")
    page.screenshot(path=str(tmp_path / "journey.png"), full_page=True)

    labels = page.evaluate("Array.from(document.querySelectorAll('#diagram svg "
                           "g.edgeLabel')).map(n => n.textContent.trim())")
    # it said `benefits 50%`, `social_proof 50%` and `holdout 10%`: 110% in all
    assert "benefits 45% (weight 50)" in labels, labels
    assert "social_proof 45% (weight 50)" in labels, labels
    assert "holdout 10%" in labels, labels

    assert "control: benefits;" in page.locator("p.muted", has_text="control:").inner_text()
    period = page.locator("#period").inner_text()
    minute = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert re.match(f"{minute} \u2013 {minute} \u00b7",
                    period), period

    cells = page.locator("table td.n").all_inner_texts()
    assert cells
    assert not [c for c in cells if re.search(r"\de[+-]\d", c)], cells
    median = page.locator("#table-kpis tr", has_text="median_time_to_goal")
    seconds = median.locator("td").nth(1).inner_text()
    assert re.fullmatch(r"\d{3},\d{3}", seconds), seconds  # about 4 days, in seconds
