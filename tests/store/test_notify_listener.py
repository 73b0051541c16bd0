"""PostgreSQL's wake-up listener (engine/store/sql/notify.py) during an outage: it tries
again every second, and says so at the 1st, 2nd, 4th, 8th... failure in a row, with the
count, then once when it listens again; not a warning a second."""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
import pytest

from engine.store.sql import notify


class Listening:
    """A connection that listens until the test has seen it (no notifications)."""

    def __init__(self, listened: threading.Event) -> None:
        self.listened = listened

    def __enter__(self) -> Listening:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def execute(self, _: str) -> None:
        self.listened.set()

    def notifies(self, timeout: float) -> list[Any]:
        threading.Event().wait(min(timeout, 0.01))
        return []


def test_the_listeners_warnings_follow_1_2_4_8_and_one_info_line_says_it_listens_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    listened = threading.Event()
    tries = 0

    def connect(*_: Any, **__: Any) -> Listening:
        nonlocal tries
        tries += 1
        if tries <= 9:  # the database away for 9 tries
            raise psycopg.OperationalError("connection refused")
        return Listening(listened)

    monkeypatch.setattr(notify.psycopg, "connect", connect)
    waits: list[float] = []
    real_wait = threading.Event.wait

    def no_wait(self: threading.Event, timeout: float | None = None) -> bool:
        if timeout == 1.0:  # the second between tries: not waited here
            waits.append(timeout)
            return self.is_set()
        return real_wait(self, timeout)

    monkeypatch.setattr(threading.Event, "wait", no_wait)
    with caplog.at_level(logging.INFO, logger="journeyman.notify"):
        stop = notify.listen_for_wakes("postgresql+psycopg://u@127.0.0.1:5432/db",
                                       {"inbox": lambda *_: None})
        try:
            assert real_wait(listened, 10)
        finally:
            stop()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in said] == ["WARNING"] * 4 + ["INFO"], said
    assert [m.split(" (")[1].split(" in a row")[0] for _, m in said[:4]] == ["1", "2", "4",
                                                                               "8"]
    assert said[-1][1] == "listening for wake-ups again after 9 failed tries in a row"
    assert waits == [1.0] * 9
