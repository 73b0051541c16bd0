"""What a marketer reads on a journey page with an A/B split, in Chromium: the split's
edges give each variant's share of everyone (the holdout taken out first), the control
is named, the period is to the minute, no table cell is in scientific notation, and a
variant whose template fails to render is shown as such (it was a row among the
decisions; its sends counted nothing, and its split results looked like a real test)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.api.dashboard.auth import hash_password
from engine.store import SqlStore
from engine.testing import InMemoryEngine
from tests.api.dashboard_world import PASSWORD, START, World, build_world, start_server
from tests.engine.helpers import write_folder

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
    split = page.locator("#table-split_subject_test")
    head = split.locator("thead th").all_inner_texts()
    readings = {r.locator("td").first.inner_text(): r.locator("td").nth(head.index("reading"))
                .inner_text() for r in split.locator("tbody tr").all()}
    assert readings["benefits"] == "the control"
    assert readings["social_proof"] in ("no clear difference yet (p >= 0.05)", "-",
                                        "converts better than the control",
                                        "converts worse than the control")
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


AB = """
journey: ab
version: 1
entry: {event: Order Completed}
steps:
  - id: ab
    split:
      variants:
        - {name: plain, weight: 50, goto: ask_plain}
        - {name: points, weight: 50, goto: ask_points}
  - id: ask_plain
    send: {channel: email, template: plain}
    next: done
  - id: ask_points
    send: {channel: email, template: points}
  - id: done
    exit: asked
"""


def _log_in(page: Any, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "vi")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def test_a_variant_whose_template_fails_is_flagged(browser: Any, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"ab": AB}, {
        "plain": "channel: email\nsubject: Review?\ntext: hi\n",
        # no fallback, and nobody has a nickname: every send of it fails to render
        "points": "channel: email\nsubject: 'Hi {{ profile.traits.nickname }}'\ntext: hi\n"})
    store = SqlStore(f"sqlite:///{tmp_path / 'ab.db'}", create=True)
    engine = InMemoryEngine.from_folder(folder, start=START)
    engine.use_store(store)
    store.clock = engine.clock
    for i in range(20):
        engine.identify(f"u{i}", {"email": f"u{i}@example.com"})
        engine.track(f"u{i}", "Order Completed", {"revenue": 10})
    engine.advance("1h")
    store.create_user("vi", hash_password(PASSWORD), "viewer")
    with store.sql_engine.connect() as conn:
        points = conn.execute(text("SELECT count(*) FROM enrollments WHERE journey = 'ab' "
                                   "AND json_extract(variants, '$.ab') = 'points'")).scalar()
    url, server, thread = start_server(store, engine)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        _log_in(page, url)
        page.goto(f"{url}/journeys/ab?days=7")
        page.wait_for_selector("#diagram[data-drawn=yes]")
        page.screenshot(path=str(tmp_path / "not-rendered.png"), full_page=True)
        warning = page.locator("#not-rendered").inner_text()
        head = page.locator("#table-steps thead th").all_inner_texts()
        rows = {r.locator("td").first.inner_text(): r.locator("td").all_inner_texts()
                for r in page.locator("#table-steps tbody tr").all()}
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
    failed = int(rows["ask_points"][head.index("not rendered")])
    assert failed == points
    assert failed > 0
    assert int(rows["ask_plain"][head.index("not rendered")]) == 0
    assert f"ask_points: {failed} messages (template_error)" in warning
    assert "ask_plain" not in warning
    assert "A split's results compare" in warning


def test_the_journeys_list_takes_a_period(browser: Any, world: World) -> None:
    """The list was fixed at 7 days: a campaign older than a week showed zeros, with no
    way to look further back from it."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    _log_in(page, world.url)

    def entries(days: int) -> tuple[str, int, str | None]:
        page.fill("input[name=days]", str(days))
        page.locator("button", has_text="Show").click()
        page.wait_for_url(re.compile(rf"/\?days={days}$"))
        head = page.locator("#table-journeys thead th").all_inner_texts()
        row = page.locator("#table-journeys tbody tr", has_text=J)
        link = row.locator("a").first.get_attribute("href")
        return head[5], int(row.locator("td").nth(5).inner_text()), link

    assert entries(30) == ("entries (30 days)", 40, f"/journeys/{J}?days=30")
    assert entries(1) == ("entries (1 days)", 0, f"/journeys/{J}?days=1")  # 4 days ago
    csv = page.request.get(f"{world.url}/?days=30&csv=journeys").text()
    assert csv.splitlines()[0].startswith(
        "journey,title,status,version,in flight,entries (30 days)")
    page.goto(f"{world.url}/?days=0")
    assert "the period is a whole number of days from 1 to 3650" in page.inner_text("body")
