"""One bad profile, event or send never hurts anyone else (issue 10), on the real stores:
the worker and dispatcher of production on InMemoryStore, SQLite and PostgreSQL, driven
by the fake clock so retries and backoffs play out in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.testing import InMemoryEngine
from tests.engine.helpers import UNTIL, stub_email, write_folder
from tests.store.helpers import held_elsewhere

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

LATER = """
journey: later
version: 1
entry: {event: Ordered}
steps:
  - {id: pause, wait: 2s}
  - id: hello
    send: {channel: email, template: hello}
"""
CODE = """
journey: code
version: 1
entry: {event: Coded}
steps:
  - id: mail
    send: {channel: email, template: code}
"""
PLAN = """
journey: plan_change
version: 1
entry: {event: identify}
re_entry: always
steps:
  - id: note
    send: {channel: email, template: hello}
"""
REVIEW = """
journey: review
version: 1
entry: {event: Delivered}
exit_when:
  - event: Review Written
steps:
  - id: ask
    send: {channel: email, template: hello}
"""
QUIET = """
timezone: UTC
quiet_hours: {start: "21:00", end: "08:00"}
consent_required: []
"""


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def on_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Build an InMemoryEngine for a folder, then move it onto the store under test."""
    from tests.store.conftest import make_pg_store, make_sqlite_store

    made: list[Any] = []

    def build(folder: Path, start: datetime = T0) -> InMemoryEngine:
        eng = InMemoryEngine.from_folder(folder, start=start)
        if request.param == "sqlite":
            store = make_sqlite_store(request.getfixturevalue("sqlite_template"), tmp_path)
        elif request.param == "postgres":
            store = make_pg_store(request.getfixturevalue("pg_database"))
        else:
            return eng
        store.clock = eng.clock
        made.append(store)
        eng.use_store(store)
        return eng

    yield build
    for store in made:
        store.close()


def _folder(tmp_path: Path, journeys: dict[str, str], policy: str | None = None) -> Path:
    return write_folder(tmp_path / "j", journeys, {
        "hello": stub_email("hello"),
        "code": "channel: email\nsubject: code\ntext: '{{ event.properties.code + 1000 }}'\n",
    }, policy)


def test_fifty_good_profiles_get_their_delayed_message_while_three_poisoned_ones_fail_alone(
        on_store: Any, tmp_path: Path) -> None:
    eng = on_store(_folder(tmp_path, {"later": LATER, "code": CODE, "until": UNTIL}))
    for i in range(50):
        eng.identify(f"good{i}", {"email": f"good{i}@example.com"})
        eng.track(f"good{i}", "Ordered")
    for user in ("overflow", "template", "absurd"):
        eng.identify(user, {"email": f"{user}@example.com"})
    for _ in range(2):  # the second order overflows total_spent: this profile's error only
        eng.track("overflow", "Order Completed", {"revenue": 1e308})
    eng.track("template", "Coded", {"code": "abc"})  # TypeError in the template
    # the calendar's very end: it overflowed and was parked; it waits there now
    eng.track("absurd", "Scheduled", {"when": "9999-12-31T23:59:59-14:00"})
    eng.advance(timedelta(minutes=10))  # every retry and backoff plays out

    delayed = [m for m in eng.sent if m.template == "hello"]
    assert sorted(m.profile for m in delayed) == sorted(f"good{i}" for i in range(50))
    assert {m.at for m in delayed} == {T0 + timedelta(seconds=2)}
    parked = {f.profile_id: f for f in eng.store.failures()}
    assert set(parked) == {"overflow"}
    assert "ComputedTraitError" in parked["overflow"].error
    assert "total_spent overflowed" in parked["overflow"].error
    assert [m for m in eng.sent if m.profile == "absurd"] == []  # waiting, not failed
    assert all(f.kind == "event" and f.attempts == 5 and "Traceback" in f.stack
               for f in parked.values())
    [skip] = [d for d in eng.store.recorded_decisions("template") if d.what == "skipped"]
    assert skip.reason == "template_error"
    assert "TypeError" in skip.details["error"]
    overflow = eng.store.get_profile("overflow")
    assert overflow is not None
    assert overflow.computed["total_spent"] == 1e308  # the first order only


def test_a_failing_event_holds_its_profiles_later_events_and_order_holds(
        on_store: Any, tmp_path: Path) -> None:
    """`plan: first` fails once, `plan: second` waits behind it: the profile ends on
    `second`, never first-after-second (which would undo an unsubscribe)."""
    eng = on_store(_folder(tmp_path, {"plan_change": PLAN}))
    failing = {"once"}
    handle = eng.runner.handle

    def flaky(event: Any, unit: Any) -> str:
        if event["traits"].get("plan") == "first" and failing:
            failing.clear()
            raise RuntimeError("injected failure")
        return handle(event, unit)

    eng.runner.handle = flaky
    eng.identify("u1", {"email": "u1@example.com", "plan": "first"})
    eng.identify("u1", {"plan": "second"})
    eng.identify("u2", {"email": "u2@example.com", "plan": "other"})
    # u2 is not held behind u1; u1 waits for its retry.
    assert [m.profile for m in eng.sent] == ["u2"]
    assert eng.store.get_profile("u1") is None
    eng.advance(timedelta(seconds=5))
    assert eng.profile("u1").traits["plan"] == "second"
    notes = [m for m in eng.sent if m.profile == "u1"]
    assert len(notes) == 2
    assert eng.store.failures() == []


def test_a_send_held_by_quiet_hours_is_not_delivered_after_its_journey_exited(
        on_store: Any, tmp_path: Path) -> None:
    """A review request queued at 02:00 waits for quiet hours to end at 08:00; the
    review is written at 04:00, so at 08:00 the request is skipped, and why is logged."""
    night = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    eng = on_store(_folder(tmp_path, {"review": REVIEW}, QUIET), night)
    eng.identify("ana", {"email": "ana@example.com"})
    eng.track("ana", "Delivered")
    eng.track("ana", "Review Written", at=night + timedelta(hours=2))
    eng.advance(timedelta(hours=8))
    assert eng.sent == []
    held = eng.store.recorded_decisions("ana", kinds=("deferred", "skipped"))
    assert [(d.what, d.reason) for d in held] == [("deferred", "quiet_hours"),
                                                  ("skipped", "enrollment_exited")]
    skipped = held[1]
    assert skipped.details["exit_reason"] == "exit_when:Review Written"
    assert [r.status for r in eng.store.outbox_records()] == ["skipped"]


def test_parked_failures_can_be_retried_after_a_fix(on_store: Any, tmp_path: Path) -> None:
    eng = on_store(_folder(tmp_path, {"later": LATER}))
    broken = {"yes"}
    handle = eng.runner.handle

    def until_fixed(event: Any, unit: Any) -> str:
        if broken:
            raise RuntimeError("a bug, fixed later")
        return handle(event, unit)

    eng.runner.handle = until_fixed
    eng.identify("u1", {"email": "u1@example.com"})
    eng.track("u1", "Ordered")
    eng.advance(timedelta(minutes=5))
    [failure] = eng.store.failures()
    assert (failure.kind, failure.profile_id, failure.attempts) == ("event", "u1", 5)
    assert eng.store.inbox_counts() == {"parked": 1, "pending": 1}  # the order waits
    broken.clear()
    assert eng.store.retry_failure(failure.id, eng.now)
    eng.advance(timedelta(seconds=5))
    assert [m.template for m in eng.sent] == ["hello"]
    assert eng.store.failures() == []
    assert eng.store.inbox_counts() == {}


@pytest.mark.postgres
@pytest.mark.parametrize("on_store", ["postgres"], indirect=True)  # PostgreSQL's locks
def test_a_merge_that_reaches_a_profile_held_elsewhere_waits_briefly_and_is_no_failure(
        on_store: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """PostgreSQL, two workers: an identify merges an anonymous profile that the other
    worker's transaction holds. The event waits `BUSY_RETRY` (not a backoff: no attempt
    counted) and then merges; the profile's later events wait behind it."""
    from engine.runtime.worker import BUSY_RETRY
    from engine.store import SqlStore

    eng = on_store(_folder(tmp_path, {"plan_change": PLAN}))
    eng.post({"type": "track", "event": "Viewed", "userId": "u1"}, unread=True)
    eng.post({"type": "track", "event": "Viewed", "anonymousId": "a1"}, unread=True)
    other = SqlStore(request.getfixturevalue("pg_database"))  # the other worker's

    def take_a1() -> None:  # the other worker's transaction, handling a1
        assert other.try_lock_profiles(["a1"]) == {"a1"}

    try:
        with held_elsewhere(other, take_a1):
            eng.post({"type": "identify", "userId": "u1", "anonymousId": "a1",
                      "traits": {"plan": "gold"}})
            eng.post({"type": "identify", "userId": "u1", "traits": {"plan": "silver"}})
            assert eng.worker.stats.failures == 0
            assert eng.store.inbox_counts() == {"pending": 2}  # the merge, and behind it
            assert eng.store.next_inbox_at() == eng.now + BUSY_RETRY
    finally:
        other.close()
    eng.advance(BUSY_RETRY)
    assert not eng.store.inbox_counts()
    assert eng.store.load_identities([("anonymous_id", "a1")]) == {("anonymous_id", "a1"): "u1"}
    profile = eng.store.get_profile("u1")
    assert profile is not None
    assert profile.traits["plan"] == "silver"  # in order: gold, then silver
    assert eng.worker.stats.failures == 0
