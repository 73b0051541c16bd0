"""What the testing kit (engine.testing.InMemoryEngine) gained for QA: `advance("3d")`,
`alias`, `page`, the `skipped` and `deferred` records, and a clock watcher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.testing import DeferRecord, FakeClock, InMemoryEngine, SkipRecord
from journeys.errors import InvalidJourney
from rules.durations import DurationError
from tests.conftest import LIBRARY, START


def test_advance_takes_a_duration_string() -> None:
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["welcome"])
    eng.advance("1d2h")
    eng.advance(timedelta(minutes=5))
    assert eng.now == START + timedelta(days=1, hours=2, minutes=5)
    with pytest.raises(DurationError, match="bad duration 'soon'"):
        eng.advance("soon")


def test_alias_merges_the_anonymous_visitor_into_the_user() -> None:
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["browse_retargeting"])
    eng.post({"type": "track", "anonymousId": "v-1", "event": "Product Viewed",
              "properties": {"name": "Rain Shell"}})
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    eng.alias("ana", "v-1")
    eng.page("ana", "Pricing", {"path": "/pricing"})
    eng.run_until_idle()
    assert [(m.profile, m.step, m.to) for m in eng.sent] == [
        ("ana", "still_interested", "ana@example.com")]
    assert eng.store.identities_of("ana") == [("anonymous_id", "v-1"), ("profile", "v-1"),
                                             ("user_id", "ana"), ("user_id", "v-1")]


def test_skipped_and_deferred_records() -> None:
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["nurturing"])
    eng.identify("ana", {"email": "a@example.com", "consent": {"email": False}})
    eng.identify("ben", {"email": "b@example.com", "consent": {"email": True},
                         "timezone": "America/New_York"})
    eng.track("ana", "Lead Created")
    eng.track("ben", "Lead Created")
    assert eng.skipped == [SkipRecord("ana", "nurturing", "pull_1", "no_consent", START, "email",
                                      {"channel": "email", "consent": "opted_out"})]
    until = datetime(2026, 3, 2, 13, tzinfo=UTC)  # 08:00 in New York
    [deferred] = eng.deferred
    assert deferred == DeferRecord("ben", "nurturing", "pull_1", "quiet_hours", START, until,
                                   "email", deferred.details)
    assert deferred.details["timezone"] == "America/New_York"


def test_the_clock_tells_its_watchers_when_it_moves() -> None:
    clock = FakeClock(START)
    seen: list[datetime] = []
    clock.watch(seen.append)
    clock.advance(timedelta(hours=1))
    clock.set(clock.now())  # not a move
    clock.set(START + timedelta(days=1))
    assert seen == [START + timedelta(hours=1), START + timedelta(days=1)]


def test_the_fixture_refuses_a_typo_in_only_and_times_it_cannot_keep(
        pytester: pytest.Pytester) -> None:
    """A QA trial: `journeyman_engine(..., only=["abandoned_kart"])` ran no journey at
    all, so `assert eng.sent == []` passed for nothing; `track(..., at=<the past>)`
    recorded the event now, not at `at`; `advance(timedelta(days=-1))` did nothing; a
    naive `advance_to` was a TypeError about comparing datetimes."""
    pytester.makepyfile(f"""
        from datetime import datetime, timedelta, UTC
        import pytest

        def test_it(journeyman_engine):
            with pytest.raises(KeyError, match="no such journeys: abandoned_kart"):
                journeyman_engine({str(LIBRARY)!r}, only=["abandoned_kart"])
            eng = journeyman_engine({str(LIBRARY)!r}, start="2026-03-02T09:00:00Z")
            with pytest.raises(ValueError, match="at=2026-03-01T00:00:00Z is before the "
                               "engine's clock, 2026-03-02T09:00:00Z"):
                eng.track("ana", "Signed Up", at=datetime(2026, 3, 1, tzinfo=UTC))
            with pytest.raises(ValueError, match="the fake clock only moves forward"):
                eng.advance(timedelta(days=-1))
            with pytest.raises(ValueError, match="a datetime with a time zone"):
                eng.advance_to(datetime(2026, 3, 3))
            assert eng.now == datetime(2026, 3, 2, 9, tzinfo=UTC)
            assert eng.decisions == []
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_missing_journeys_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    """`InMemoryEngine.from_folder("my_journeyz")` said "no such journey file": a
    newcomer who gave a folder looked for a file."""
    with pytest.raises(InvalidJourney, match="no such journeys folder or journey file"):
        InMemoryEngine.from_folder(tmp_path / "my_journeyz", start=START)


def test_from_folder_takes_start_as_an_iso_string_with_a_time_zone() -> None:
    """`from_folder(start=...)` took only a datetime, while scenario files and the
    fixture take an ISO 8601 string: a string now works too (any offset); one without a
    time zone (which instant would it be?) is a clear ValueError, as a naive datetime is."""
    eng = InMemoryEngine.from_folder(LIBRARY, start="2026-03-02T10:00:00+01:00",
                                     only=["welcome"])
    assert eng.now == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert InMemoryEngine.from_folder(LIBRARY, start="2026-03-02T09:00:00Z").now == eng.now
    with pytest.raises(ValueError, match=r"start='2026-03-02T09:00:00' has no time zone: "
                                         r"write 2026-03-02T09:00:00Z \(UTC\)"):
        InMemoryEngine.from_folder(LIBRARY, start="2026-03-02T09:00:00")
    with pytest.raises(ValueError, match=r"start='next monday' is not an ISO 8601 time"):
        InMemoryEngine.from_folder(LIBRARY, start="next monday")
    with pytest.raises(ValueError, match=r"start=datetime\.datetime\(2026, 3, 2, 9, 0\) has "
                                         r"no time zone"):
        InMemoryEngine.from_folder(LIBRARY, start=datetime(2026, 3, 2, 9))


def test_an_event_name_no_journey_reads_is_told_not_silently_ignored() -> None:
    """`eng.track("ana", "Checkout Startd")` entered nobody and said nothing, so a test
    that nothing is sent passed for nothing. As in scenario files: a name a typo away
    from one the journeys (or computed traits) read is an error with "did you mean"; any
    other unread name is an UnreadEventWarning (an error under `pytest -W error`);
    `unread=True` sends one on purpose (a client's misspelled event must enter nobody)."""
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["abandoned_cart"])
    eng.identify("ana", {"email": "ana@example.com", "consent": {"email": True}})
    with pytest.raises(ValueError, match=r"no journey reads the event 'Checkout Startd' "
                                               r"\(did you mean 'Checkout Started'\?"):
        eng.track("ana", "Checkout Startd", {"cart_value": 40})
    with pytest.raises(ValueError, match="did you mean 'Checkout Started'") as raised:
        eng.post({"type": "track", "anonymousId": "v-1", "event": "checkout started"})
    from engine.testing import UnreadEventError, UnreadEventWarning

    assert isinstance(raised.value, UnreadEventError)
    assert [d.what for d in eng.decisions] == []  # refused before anything happened
    with pytest.warns(UnreadEventWarning, match=r"no journey reads the event 'Newsletter "
                                                r"Opened': it enters, resumes and exits "
                                                r"nothing \(unread=True if that is meant\)"
                      ) as told:
        eng.track("ana", "Newsletter Opened")
    assert told[0].filename == __file__  # at the test's own line, not the kit's
    eng.track("ana", "Checkout Startd", {"cart_value": 40}, unread=True)
    eng.post({"type": "track", "userId": "ana", "event": "Newsletter Opened"}, unread=True)
    eng.track("ana", "Order Completed")  # read by computed traits and goals: no word
    eng.run_until_idle()
    assert eng.sent == []


def test_any_event_may_enter_a_segment_journey_so_none_is_told_unread(tmp_path: Path) -> None:
    """A segment entry is evaluated on each of a profile's events: a track nothing names
    entered someone (a new customer, identified by it), and the kit warned that it
    "enters, resumes and exits nothing" (an error under `pytest -W error`). A typo of a
    name read is still an error."""
    import warnings

    from tests.engine.helpers import stub_email, write_folder

    known = ("journey: known\nversion: 1\nentry:\n  segment:\n    when: "
             "{profile.computed.identified: {eq: true}}\nsteps:\n  - id: hello\n"
             "    send: {channel: email, template: hello}\n")
    folder = write_folder(tmp_path / "j", {"known": known}, {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(folder, start=START)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eng.track("ana", "Page Loaded")
    assert [(d.journey, d.what) for d in eng.decisions][:1] == [("known", "entered")]
    with pytest.raises(ValueError, match="did you mean 'Order Completed'"):
        eng.track("ana", "Order Complted")
