from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core.model import Enrollment, ScheduleTimer
from engine.ports import OutboxEntry
from journeys.templating import Rendered

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


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


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def outbox_entry(key: str, at: datetime = T0, profile: str = "p1") -> OutboxEntry:
    rendered = Rendered("welcome_email", "email", subject="Hi Ana", html="<p>Hi</p>",
                        text="Hi", headers={"X-Journey": "welcome"})
    return OutboxEntry(key, "e1", profile, "welcome", "send_welcome", "email",
                       "ana@example.com", rendered, at)


def dormant_journey(template: str = "hello") -> str:
    """A segment journey that changes by time alone: 90 days without an order."""
    return f"""\
journey: dormant
version: 1
entry:
  segment:
    when:
      profile.computed.days_since_last_order: {{gte: 90}}
steps:
  - id: miss_you
    send: {{channel: email, template: {template}}}
"""


@contextmanager
def held_elsewhere(store: Any, take: Callable[[], None]) -> Iterator[None]:
    """Another worker's transaction on `store`, in a thread of its own, holding what
    `take()` claimed or locked in it until the block ends (then it commits)."""
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.transaction():
            take()
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        holder.join(10)
