"""The dashboard in a real browser: Playwright driving Debian's Chromium
(`/usr/bin/chromium`, installed by `.ci/run`). One server, one browser, several checks:
a visit without a session lands on the login page; log in; open a journey and see its
diagram drawn by Mermaid with the counts on its steps; the numbers on the page equal
direct SQL counts on the same store; open a profile and its timeline; retry a parked
failure through the CSRF-protected form; pause and resume the journey with its button; watch the live stream pick up a new event.
Screenshots go to the test's tmp folder."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.dashboard_world import PASSWORD, PEOPLE, World, build_world

pytestmark = pytest.mark.slow

J = "first_purchase"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("browser"))
    yield built
    built.close()


def cell_numbers(page: Any, table: str, column: str) -> dict[str, int]:
    """{first cell: number in `column`} of a table on the page."""
    head = page.locator(f"#table-{table} thead th").all_inner_texts()
    at = head.index(column)
    found = {}
    for row in page.locator(f"#table-{table} tbody tr").all():
        cells = row.locator("td").all_inner_texts()
        found[cells[0].strip()] = int(cells[at])
    return found


def test_the_dashboard_in_chromium(browser: Any, world: World, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # Without a session: the login page.
    page.goto(f"{world.url}/journeys/{J}")
    assert re.search(r"/login\?next=", page.url)
    assert page.locator("button", has_text="Log in").is_visible()
    page.screenshot(path=str(shots / "1-login.png"))

    page.fill("input[name=name]", "ed")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{world.url}/journeys/{J}")  # back where it was going

    # The diagram, drawn in the page, with the counts on the steps.
    page.goto(f"{world.url}/journeys/{J}?days=30")
    page.wait_for_selector("#diagram[data-drawn=yes]")
    svg = page.locator("#diagram svg")
    assert svg.count() == 1
    boxes = page.evaluate("Array.from(document.querySelectorAll('#diagram svg g.node'))"
                          ".map(n => n.textContent)")
    for step in ("first_look", "nudge_wait"):
        box = next(b for b in boxes if b.startswith(f"{step} —"))
        now = world.sql("SELECT count(*) FROM enrollments WHERE journey = :j AND status = "
                        "'active' AND state = :s", j=J, s=step)
        passed_step = world.sql("SELECT count(*) FROM enrollments WHERE journey = :j AND "
                                "json_extract(visits, '$.' || :s) IS NOT NULL", j=J, s=step)
        assert box.endswith(f"now {now} · passed {passed_step}"), box
    assert any(b.endswith(f"passed {PEOPLE}") for b in boxes)  # all passed first_look
    page.screenshot(path=str(shots / "2-journey.png"), full_page=True)

    # The page's funnel and split numbers equal direct SQL counts on the same store.
    entered = world.sql("SELECT count(*) FROM enrollments WHERE journey = :j", j=J)
    assert int(page.locator("#card-entered b").inner_text()) == entered == PEOPLE
    converted = world.sql("SELECT count(*) FROM enrollments WHERE journey = :j AND "
                          "goal_reached_at IS NOT NULL", j=J)
    assert int(page.locator("#card-converted b").inner_text()) == converted > 0
    passed = cell_numbers(page, "steps", "passed")
    for step, shown in passed.items():
        assert shown == world.sql("SELECT count(*) FROM enrollments WHERE journey = :j AND "
                                  "json_extract(visits, '$.' || :s) IS NOT NULL", j=J, s=step)
    people = cell_numbers(page, "split_subject_test", "people")
    assert people
    for variant, shown in people.items():
        assert shown == world.sql(
            "SELECT count(*) FROM enrollments WHERE journey = :j AND "
            "json_extract(variants, '$.subject_test') = :v", j=J, v=variant)
    assert sum(people.values()) == passed["subject_test"]

    # A profile, found by e-mail from the header's search, and its timeline.
    page.fill("header input[name=q]", "user3@example.com")
    page.press("header input[name=q]", "Enter")
    page.wait_for_selector("#table-timeline")
    whats = page.locator("#table-timeline tbody tr td:nth-child(2)").all_inner_texts()
    assert whats[0] == "entered"
    assert "goal" in whats
    page.screenshot(path=str(shots / "3-profile.png"), full_page=True)

    # An editor retries a parked failure through the form (with its CSRF token).
    page.goto(f"{world.url}/failures")
    page.click("button:has-text('Retry')")
    page.wait_for_selector("[role=status]")
    assert world.store.failures() == []
    page.screenshot(path=str(shots / "4-failures.png"))

    # An editor pauses the journey with the button on its page, then resumes it.
    page.goto(f"{world.url}/journeys/{J}")
    assert page.locator("#journey-status").inner_text() == "live"
    page.click("#status-button")
    page.wait_for_selector("#done")
    assert page.locator("#journey-status").inner_text() == "paused"
    assert page.locator("#status-button").inner_text() == "Resume"
    assert world.store.deployed_versions(J)[-1].status == "paused"
    page.screenshot(path=str(shots / "5-paused.png"))
    page.click("#status-button")
    page.wait_for_selector("#journey-status:has-text('live')")
    assert world.store.deployed_versions(J)[-1].status == "active"

    # The live stream: the page asks /live.json every few seconds and shows a new event.
    page.goto(f"{world.url}/live")
    world.store.accept_events([{"type": "track", "event": "Browser <i>Ping</i>",
                                "userId": "user5", "messageId": "browser-live-1",
                                "timestamp": "2026-03-02T09:00:00Z"}], "browser")
    page.wait_for_selector("#table-events tbody tr:first-child td:has-text('Browser <i>Ping</i>')",
                           timeout=15_000)
    assert int(page.locator("#live-state").get_attribute("data-updates") or 0) >= 1
    assert page.locator("#table-events i").count() == 0  # shown as text, never as HTML
    page.screenshot(path=str(shots / "6-live.png"))
    assert len(list(shots.glob("*.png"))) == 6
    page.close()
