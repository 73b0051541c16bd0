"""Processes started together on one PostgreSQL database arm the time-driven entries of
a new journey once: one arms, the others leave it to it (before, the second crashed on a
duplicate settings row: a worker of the journey bench died at start)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.core.model import Profile
from engine.runtime.time_entries import SETTING, arm_time_entries
from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from journeys.library import bundled_library
from tests.store.conftest import make_pg_store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_time_entries_are_armed_once_by_processes_starting_together(pg_database: str) -> None:
    store = make_pg_store(pg_database)  # emptied
    try:
        with store.transaction():
            for i in range(300):
                store.put_profile(Profile(f"p{i}", {"email": f"p{i}@example.com",
                                                    "birthday": "1990-06-01"}, {}))
    finally:
        store.close()
    services = [Service(bundled_library(), pg_database, channels={},
                        secrets=[SigningSecret("s" * 32)]) for _ in range(3)]
    barrier = threading.Barrier(len(services))
    armed: list[int] = []
    errors: list[BaseException] = []
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def arm(service: Any) -> None:
        barrier.wait()
        try:
            armed.append(arm_time_entries(service.runner, service.store, now))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=arm, args=(s,)) for s in services]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert sorted(armed)[:-1] == [0] * (len(services) - 1)  # one process armed them
        assert sorted(armed)[-1] >= 300
        assert services[0].store.setting(SETTING.format("special_dates")) is not None
        assert services[0].store.pending_timers() == sorted(armed)[-1]
    finally:
        for service in services:
            service.store.close()
