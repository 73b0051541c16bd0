"""Identity resolution: anonymous history follows the known profile; merges never double a journey."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.testing import InMemoryEngine
from tests.engine.helpers import stub_email, write_folder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BROWSE = """
journey: browse
version: 1
entry: {event: Product Viewed}
steps:
  - {id: later, wait: 1d}
  - id: nudge
    send: {channel: email, template: nudge}
"""


@pytest.fixture
def eng(tmp_path: Path) -> InMemoryEngine:
    folder = write_folder(tmp_path / "j", {"browse": BROWSE}, {"nudge": stub_email("nudge")})
    return InMemoryEngine.from_folder(folder, start=T0)


def test_anonymous_enrollment_follows_the_user_after_identify(eng: InMemoryEngine) -> None:
    eng.post({"type": "track", "anonymousId": "anon-1", "event": "Product Viewed"})
    eng.post({"type": "identify", "anonymousId": "anon-1", "userId": "u1",
              "traits": {"email": "u1@example.com"}})
    eng.advance(timedelta(days=2))
    assert [(m.profile, m.to) for m in eng.sent] == [("u1", "u1@example.com")]
    assert eng.store.profile_for("anonymous_id", "anon-1") == "u1"
    assert "anon-1" not in eng.store.profiles


def test_alias_merges_and_deduplicates_enrollments(eng: InMemoryEngine) -> None:
    eng.post({"type": "track", "anonymousId": "a", "event": "Product Viewed"})
    eng.post({"type": "track", "userId": "u2", "event": "Product Viewed"},)
    eng.identify("u2", {"email": "u2@example.com", "plan": "pro"})
    eng.post({"type": "identify", "anonymousId": "a", "traits": {"plan": "free", "city": "Oslo"}})
    eng.post({"type": "alias", "previousId": "a", "userId": "u2"})
    eng.advance(timedelta(days=2))
    assert [m.profile for m in eng.sent] == ["u2"]  # once, not twice
    (kept, merged) = eng.enrollments("u2", "browse")
    assert kept.status == "completed"
    assert merged.exit_reason == "merged"
    traits = eng.profile("u2").traits
    assert traits["plan"] == "pro"   # the known profile wins on conflicts
    assert traits["city"] == "Oslo"  # and keeps what only the anonymous one knew


def test_an_alias_without_a_previous_id_merges_its_anonymous_id(eng: InMemoryEngine) -> None:
    """Segment's browser library sends `analytics.alias(newId)` as userId + anonymousId,
    no previousId: the previous id is the anonymousId, as Segment reads it."""
    eng.post({"type": "identify", "anonymousId": "a", "traits": {"city": "Oslo"}})
    eng.post({"type": "alias", "userId": "u4", "anonymousId": "a"})
    assert eng.store.profile_for("anonymous_id", "a") == "u4"
    assert eng.profile("u4").traits["city"] == "Oslo"
    assert "a" not in eng.store.profiles


def test_two_people_aliased_on_one_browser_stay_two(eng: InMemoryEngine) -> None:
    """The browser's alias(newId) for one person, then for another on the same laptop
    (no reset between): the second is not renamed into the first's profile."""
    eng.post({"type": "identify", "anonymousId": "a", "traits": {"city": "Oslo"}})
    eng.post({"type": "alias", "userId": "u4", "anonymousId": "a"})
    eng.post({"type": "alias", "userId": "u5", "anonymousId": "a"})
    assert eng.store.profile_for("user_id", "u4") == "u4"
    assert eng.store.profile_for("user_id", "u5") == "u5"
    assert eng.store.profile_for("anonymous_id", "a") == "u5"  # the device's newest user


def test_orders_add_up_across_a_merge(eng: InMemoryEngine) -> None:
    eng.post({"type": "track", "anonymousId": "a", "event": "Order Completed",
              "properties": {"revenue": 10}})
    eng.track("u3", "Order Completed", {"revenue": 5.5})
    eng.post({"type": "alias", "previousId": "a", "userId": "u3"})
    computed = eng.profile("u3").computed
    assert computed["orders_count"] == 2
    assert computed["total_spent"] == 15.5
