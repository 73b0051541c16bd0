"""The pytest plugin as a user meets it, in pytest sessions run in process (pytester):
scenario files collected as items with the same diff as `journeyman test`, the
`journeyman_engine` factory, and its clock kept in step with freezegun and time-machine.
(tests/packaging/test_plugin_wheel.py does the same from the built wheel.)"""

from __future__ import annotations

import pytest

from tests.conftest import LIBRARY

SCENARIO = f"""\
scenario: browse reminder four hours after a view
journeys: {LIBRARY}
only: [browse_retargeting]
start: "2026-03-02T09:00:00Z"
profiles:
  ana: {{email: ana@example.com, consent: {{email: true}}}}
events:
  - {{user: ana, track: Product Viewed, properties: {{name: Rain Shell}}}}
expect:
  messages:
    - {{at: "AT", user: ana, journey: browse_retargeting, step: still_interested}}
"""


def test_scenario_files_are_test_items(pytester: pytest.Pytester) -> None:
    pytester.makefile(".scenario.yaml", good=SCENARIO.replace("AT", "2026-03-02T13:00:00Z"),
                      late=SCENARIO.replace("AT", "2026-03-02T12:00:00Z"))
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "good.scenario.yaml::good PASSED*",
        "late.scenario.yaml::late FAILED*",
        "FAIL  late.scenario.yaml  browse reminder four hours after a view*",
        "*DIFFERS*2026-03-02T13:00:00Z  message*ana*browse_retargeting/still_interested*line 11*",
        "*at: expected 2026-03-02T12:00:00Z, got 2026-03-02T13:00:00Z (1h later)",
    ])


def test_scenario_items_carry_a_marker(pytester: pytest.Pytester) -> None:
    """A CI that runs unit tests and scenarios as separate jobs selects by a marker,
    registered so that --strict-markers takes it."""
    pytester.makefile(".scenario.yaml", good=SCENARIO.replace("AT", "2026-03-02T13:00:00Z"))
    pytester.makepyfile(test_unit="def test_unit():\n    pass\n")
    only = pytester.runpytest("--strict-markers", "-m", "journeyman_scenario")
    only.assert_outcomes(passed=1, deselected=1)
    only.stdout.no_fnmatch_line("*test_unit*PASSED*")
    rest = pytester.runpytest("--strict-markers", "-m", "not journeyman_scenario", "-v")
    rest.assert_outcomes(passed=1, deselected=1)
    rest.stdout.fnmatch_lines(["*test_unit.py::test_unit PASSED*"])


def test_the_engine_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        from datetime import UTC, datetime, timedelta

        def test_engine(journeyman_engine):
            eng = journeyman_engine({str(LIBRARY)!r}, start="2026-03-02T09:00:00Z",
                                    only=["welcome", "nurturing"])
            eng.identify("ana", {{"email": "ana@example.com", "consent": {{"email": False}}}})
            eng.track("ana", "Signed Up", {{"source": "site"}})
            eng.identify("ben", {{"email": "ben@example.com", "consent": {{"email": True}},
                                 "timezone": "America/New_York"}})
            eng.track("ben", "Lead Created")
            eng.advance("3d")
            eng.advance(timedelta(hours=1))
            assert eng.now == datetime(2026, 3, 5, 10, tzinfo=UTC)
            assert [(s.profile, s.step, s.reason) for s in eng.skipped][:1] == [
                ("ana", "welcome_site", "no_consent")]
            assert [(d.profile, d.step, d.reason, d.until) for d in eng.deferred][:1] == [
                ("ben", "pull_1", "quiet_hours", datetime(2026, 3, 2, 13, tzinfo=UTC))]
            first = eng.sent[0]
            assert (first.profile, first.journey, first.step, first.template, first.channel,
                    first.to, first.at) == ("ben", "nurturing", "pull_1", "nurture_pull_1",
                                            "email", "ben@example.com",
                                            datetime(2026, 3, 2, 13, tzinfo=UTC))
            assert first.subject
            eng.alias("ben", "visitor-9")
            eng.run_until_idle()
            assert eng.exits[-1].reason == "completed"
            assert eng.profile("ana").traits["welcomed"] is True
            assert eng.decisions
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_freezegun_and_the_engine_agree_on_now(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import time
        from datetime import UTC, datetime, timedelta
        from freezegun import freeze_time

        @freeze_time("2026-03-02 09:00:00")
        def test_frozen(journeyman_engine):
            eng = journeyman_engine({str(LIBRARY)!r}, only=["browse_retargeting"])
            assert eng.now == datetime(2026, 3, 2, 9, tzinfo=UTC)  # the frozen now
            eng.identify("ana", {{"email": "a@example.com", "consent": {{"email": True}}}})
            eng.track("ana", "Product Viewed", {{"name": "Rain Shell"}})
            eng.advance("3d")
            assert datetime.now(UTC) == eng.now == datetime(2026, 3, 5, 9, tzinfo=UTC)
            assert time.time() == eng.now.timestamp()
            eng.advance(timedelta(minutes=30))
            assert datetime.now(UTC) == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
            assert [m.at for m in eng.sent] == [datetime(2026, 3, 2, 13, tzinfo=UTC)]

        def test_with_a_start_of_its_own(journeyman_engine):
            with freeze_time("2026-01-01") as frozen:
                eng = journeyman_engine({str(LIBRARY)!r}, start=datetime(2026, 6, 1, tzinfo=UTC),
                                        only=["welcome"])
                eng.advance("1h")
                assert datetime.now(UTC) == datetime(2026, 6, 1, 1, tzinfo=UTC)
    """)
    pytester.runpytest().assert_outcomes(passed=2)


def test_time_machine_and_the_engine_agree_on_now(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        from datetime import UTC, datetime
        import time_machine

        @time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=UTC), tick=False)
        def test_travel(journeyman_engine):
            eng = journeyman_engine({str(LIBRARY)!r}, only=["welcome"])
            assert eng.now == datetime(2026, 3, 2, 9, tzinfo=UTC)
            eng.identify("ana", {{"email": "a@example.com", "consent": {{"email": True}}}})
            eng.track("ana", "Signed Up", {{"source": "site"}})
            eng.run_until_idle()
            assert datetime.now(UTC) == eng.now == datetime(2026, 3, 4, 9, tzinfo=UTC)

        def test_ticking(journeyman_engine):
            with time_machine.travel(datetime(2026, 3, 2, 9, tzinfo=UTC)):
                eng = journeyman_engine({str(LIBRARY)!r}, only=["welcome"])
                eng.advance("2d")
                gap = datetime.now(UTC) - datetime(2026, 3, 4, 9, tzinfo=UTC)
                assert 0 <= gap.total_seconds() < 5  # ticking on from the engine's now
    """)
    pytester.runpytest().assert_outcomes(passed=2)


def test_fixture_listed_and_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    listed = pytester.runpytest("--fixtures")
    listed.stdout.fnmatch_lines(["journeyman_engine*"])
    pytester.makefile(".scenario.yaml", x="scenario: x\n")
    off = pytester.runpytest("-p", "no:journeyman")
    assert off.ret == pytest.ExitCode.NO_TESTS_COLLECTED
