from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.model import Enrollment, ScheduleTimer
from engine.ports import OutboxEntry
from journeys.templating import Rendered

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def needs(store: Any, *methods: str) -> None:
    """Skip when the store (InMemoryStore) does not have these methods."""
    missing = [m for m in methods if not hasattr(store, m)]
    if missing:
        pytest.skip(f"{type(store).__name__} has no {', '.join(missing)}")


def needs_rules() -> None:
    """engine.testing/engine.profiles import the rules package; skip while it is absent."""
    try:
        import engine.profiles  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the rules package is not importable yet ({exc})")


def timer(key: str, due: datetime, *, profile: str = "p1", enrollment: str = "e1",
          step: str = "wait", journey: str = "j", occurrence: int = 0) -> ScheduleTimer:
    return ScheduleTimer(key=key, enrollment_id=enrollment, profile_id=profile, journey=journey,
                         step=step, occurrence=occurrence, due_at=due)


def enrollment(eid: str, *, profile: str = "p1", journey: str = "j", entered: datetime = T0,
               status: str = "active", state: str = "wait", **extra: Any) -> Enrollment:
    return Enrollment(id=eid, journey=journey, version=1, profile_id=profile, state=state,
                      status=status, entered_at=entered, updated_at=entered,  # type: ignore[arg-type]
                      entry_event={"type": "track", "event": "Signed Up", "messageId": eid},
                      **extra)


def exits_of(store: Any) -> list[Any]:
    return store.recorded_exits() if hasattr(store, "recorded_exits") else list(store.exits)


def goals_of(store: Any) -> list[Any]:
    return store.recorded_goals() if hasattr(store, "recorded_goals") else list(store.goals)


def decisions_of(store: Any) -> list[Any]:
    return (store.recorded_decisions() if hasattr(store, "recorded_decisions")
            else list(store.decisions))


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def outbox_entry(key: str, at: datetime = T0, profile: str = "p1") -> OutboxEntry:
    rendered = Rendered("welcome_email", "email", subject="Hi Ana", html="<p>Hi</p>",
                        text="Hi", headers={"X-Journey": "welcome"})
    return OutboxEntry(key, "e1", profile, "welcome", "send_welcome", "email",
                       "ana@example.com", rendered, at)
