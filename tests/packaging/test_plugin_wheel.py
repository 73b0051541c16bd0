"""The pytest plugin as a user's project meets it: a fresh folder, the built wheel
installed (not editable), a test using `journeyman_engine` (under freezegun and under
time-machine) and a `*.scenario.yaml`, run by pytest in a subprocess."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.packaging.conftest import run

pytestmark = pytest.mark.slow

USER_TEST = '''
from datetime import UTC, datetime, timedelta

import time_machine
from freezegun import freeze_time
from journeys.library import bundled_library


@freeze_time("2026-03-02 09:00:00")
def test_browse_reminder_under_freezegun(journeyman_engine):
    eng = journeyman_engine(bundled_library(), only=["browse_retargeting"])
    assert eng.now == datetime(2026, 3, 2, 9, tzinfo=UTC)
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.track("ana", "Product Viewed", {"name": "Rain Shell"})
    eng.advance("4h")
    assert [(m.step, m.at) for m in eng.sent] == [
        ("still_interested", datetime(2026, 3, 2, 13, tzinfo=UTC))]
    assert datetime.now(UTC) == eng.now  # the code under test sees the engine's now


@time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=UTC), tick=False)
def test_welcome_under_time_machine(journeyman_engine):
    eng = journeyman_engine(bundled_library(), only=["welcome"])
    eng.identify("ben", {"email": "ben@example.com", "consent": {"email": False}})
    eng.track("ben", "Signed Up", {"source": "site"})
    eng.run_until_idle()
    assert [(s.step, s.reason) for s in eng.skipped] == [
        ("welcome_site", "no_consent"), ("preferences", "no_consent")]
    assert datetime.now(UTC) == eng.now == datetime(2026, 3, 4, 9, tzinfo=UTC)
'''

SCENARIO = """\
scenario: a VIP's abandoned cart gets the VIP offer
journeys: {journeys}
only: [abandoned_cart]
start: "2026-03-02T09:00:00Z"
profiles:
  ana: {{email: ana@example.com, consent: {{email: true}}, vip: true}}
events:
  - {{user: ana, track: Checkout Started, properties: {{cart_value: 120}}}}
expect:
  messages:
    - {{at: "2026-03-02T10:00:00Z", user: ana, journey: abandoned_cart, step: reminder}}
    - {{at: "{offer_at}", user: ana, journey: abandoned_cart, step: vip_offer}}
"""


def test_a_users_project_tests_journeys_with_the_plugin(installed: Path, tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    library = run(installed / "python", "-c", "from journeys.library import bundled_library; "
                  "print(bundled_library())", cwd=project).stdout.strip()
    assert "site-packages" in library
    (project / "test_journeys.py").write_text(USER_TEST)
    (project / "cart.scenario.yaml").write_text(
        SCENARIO.format(journeys=library, offer_at="2026-03-03T10:00:00Z"))
    (project / "late.scenario.yaml").write_text(
        SCENARIO.format(journeys=library, offer_at="2026-03-03T09:00:00Z"))
    done = run(installed / "pytest", "-v", "-p", "no:cacheprovider", cwd=project, check=False)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert re.search(r"^plugins: .*journeyman-", out, re.M), out
    assert "test_journeys.py::test_browse_reminder_under_freezegun PASSED" in out, out
    assert "test_journeys.py::test_welcome_under_time_machine PASSED" in out, out
    assert "cart.scenario.yaml::cart PASSED" in out, out
    assert "late.scenario.yaml::late FAILED" in out, out
    assert "FAIL  late.scenario.yaml  a VIP's abandoned cart gets the VIP offer" in out, out
    assert "at: expected 2026-03-03T09:00:00Z, got 2026-03-03T10:00:00Z (1h later)" in out, out
    assert "1 failed, 3 passed" in out, out


def test_the_bundled_scenarios_ship_and_pass(installed: Path, tmp_path: Path) -> None:
    library = run(installed / "python", "-c", "from journeys.library import bundled_library; "
                  "print(bundled_library())", cwd=tmp_path).stdout.strip()
    done = run(installed / "journeyman", "test", library, cwd=tmp_path)
    assert re.search(r"^\d+ passed, 0 failed$", done.stdout, re.M), done.stdout
