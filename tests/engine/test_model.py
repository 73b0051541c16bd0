"""The core's values (engine/core/model.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from engine.core.model import Enrollment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE = Enrollment("e1", "welcome", 2, "ana", "send_welcome", "active", T0, T0,
                  {"type": "track", "event": "Signed Up"}, data={"a": 1}, visits={"s": 1})
# a new value for every field, of its type
CHANGES = {"id": "e2", "journey": "win_back", "version": 3, "profile_id": "bo",
           "state": "wait", "status": "exited", "entered_at": T0 + timedelta(days=1),
           "updated_at": T0 + timedelta(days=2), "entry_event": {"type": "identify"},
           "trigger_event": {"type": "track"}, "data": {"b": 2}, "visits": {"t": 3},
           "variants": {"split": "b"}, "exit_reason": "merged", "ended_at": T0,
           "goal_reached_at": T0, "schema_version": 9}


def test_changes_cover_every_field() -> None:
    assert set(CHANGES) == {f.name for f in dataclasses.fields(Enrollment)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_changed_is_dataclasses_replace(name: str) -> None:
    assert BASE.changed(**{name: CHANGES[name]}) == dataclasses.replace(
        BASE, **{name: CHANGES[name]})  # type: ignore[arg-type]


def test_changed_many_at_once_leaves_the_original() -> None:
    changed = BASE.changed(**CHANGES)
    assert changed == dataclasses.replace(BASE, **CHANGES)  # type: ignore[arg-type]
    assert BASE.state == "send_welcome"
    assert changed == Enrollment(**CHANGES)  # type: ignore[arg-type]


@pytest.mark.parametrize("profile_id", ["ana", "", "ü" * 300, "a\x1fb", "1e9", "😀"])
def test_enrollment_ids_are_uuid5(profile_id: str) -> None:
    """Enrollment ids are stored and a replay must enroll the same: the fast text is
    uuid5's, byte for byte."""
    import uuid

    from engine.core.advance import NAMESPACE, enrollment_id

    for journey, version, occurrence in (("welcome", 1, 0), ("win_back", 12, 7)):
        assert enrollment_id(journey, version, profile_id, occurrence) == str(uuid.uuid5(
            NAMESPACE, f"{journey}\x1f{version}\x1f{profile_id}\x1f{occurrence}"))
