from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from engine.testing import InMemoryEngine
from tests.conftest import LIBRARY

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Madrid


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def person(eng: InMemoryEngine, pid: str, **traits: object) -> None:
    base: dict[str, object] = {"email": f"{pid}@example.com", "first_name": pid.title(),
                               "timezone": "Europe/Madrid",
                               "consent": {"email": True, "sms": True}}
    eng.identify(pid, {**base, **traits})


@pytest.fixture
def library() -> Callable[..., InMemoryEngine]:
    def make(*only: str) -> InMemoryEngine:
        return InMemoryEngine.from_folder(LIBRARY, start=START, only=list(only))

    return make


def sends(eng: InMemoryEngine) -> list[tuple[str, str, str, datetime]]:
    return [(m.profile, m.step, m.template, m.at) for m in eng.sent]


def exits(eng: InMemoryEngine) -> list[tuple[str, str, str, datetime]]:
    return [(e.profile, e.step, e.reason, e.at) for e in eng.exits]
