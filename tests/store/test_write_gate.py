"""SQLite's writers take turns in the process, API requests first (issue 10, timer storms).

SQLite's busy handler is no queue: during a storm of due timers the loops committed and
began again before a waiting request's next poll, and requests waited seconds. The store
queues its writers (`FairWriteGate`), a foreground writer before waiting background work,
and the worker's timer batches commit early when a request waits."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.runtime import claim_sizes
from engine.runtime import dispatch as dispatch_module
from engine.store.sql.turns import FairWriteGate
from engine.testing import InMemoryEngine
from engine.work_kind import ForegroundWaits, background_work
from tests.engine.helpers import stub_email, write_folder
from tests.store.conftest import make_sqlite_store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WAIT_THEN_SEND = """
journey: later
version: 1
entry: {event: Ordered}
steps:
  - {id: pause, wait: 1m}
  - id: hello
    send: {channel: email, template: hello}
"""


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _race(gate_holder: Any, background: Any, foreground: Any, *,
          a_background: bool = True) -> list[str]:
    """A holds the write lock; B (background) then C (foreground) queue behind it; A lets
    go. Returns the order in which they got in."""
    order: list[str] = []
    release = threading.Event()
    holding = threading.Event()

    def a() -> None:
        with (background_work() if a_background else contextlib.nullcontext()), \
                gate_holder():
            order.append("A")
            holding.set()
            release.wait(5)

    def b() -> None:
        with background_work(), background():
            order.append("B")

    def c() -> None:
        with foreground():
            order.append("C")

    threads = [threading.Thread(target=f) for f in (a, b, c)]
    threads[0].start()
    assert holding.wait(5)
    threads[1].start()
    time.sleep(0.05)  # B is waiting
    threads[2].start()
    _until(ForegroundWaits.any)  # C is waiting
    release.set()
    for t in threads:
        t.join(5)
    assert not ForegroundWaits.any()
    return order


def test_a_foreground_writer_goes_before_waiting_background_work() -> None:
    gate = FairWriteGate()
    assert _race(gate.held, gate.held, gate.held) == ["A", "C", "B"]


def test_background_work_is_not_starved_by_a_stream_of_requests() -> None:
    gate = FairWriteGate()
    gate._foreground_streak = gate.FOREGROUND_STREAK - 1
    # A is a request too: the 8th in a row while B waits, so B goes before C
    assert _race(gate.held, gate.held, gate.held, a_background=False) == ["A", "B", "C"]


def test_a_thread_holding_the_gate_passes_through_it_again() -> None:
    gate = FairWriteGate()
    with gate.held(), gate.held():  # nested writes join the transaction: no deadlock
        pass


def test_on_sqlite_an_event_post_waits_for_the_transaction_in_progress_only(
        sqlite_template: Path, tmp_path: Path) -> None:
    """The real store: the loops' transactions and an API request's `accept_events`.
    Who wrote first is read from the inbox's ids: a writer's own bookkeeping after its
    commit (the wake-ups it sends, engine/store/sql/wake_sockets.py) is outside the
    write lock, so the order of the threads' returns can differ from it."""
    store = make_sqlite_store(sqlite_template, tmp_path)
    event = {"type": "track", "event": "Ordered", "userId": "u1", "messageId": "m1",
             "timestamp": T0.isoformat(), "properties": {}}
    loop_event = {**event, "messageId": "m-loop", "userId": "u2"}
    try:
        order = _race(store.transaction, lambda: _accepting(store, loop_event),
                      lambda: _accepting(store, event))
        assert order[0] == "A"
        assert sorted(order) == ["A", "B", "C"]
        with store.sql_engine.connect() as conn:
            written = [row[0] for row in conn.exec_driver_sql(
                "SELECT json_extract(event, '$.messageId') FROM inbox ORDER BY id")]
        assert written == ["m1", "m-loop"]  # the request, then the loop's transaction
    finally:
        store.close()


class _accepting:  # noqa: N801 - reads as what it does in _race
    """`with` around an API request's write: `accept_events` as the request makes it."""

    def __init__(self, store: Any, event: dict[str, Any]) -> None:
        self.store, self.event = store, event

    def __enter__(self) -> None:
        assert self.store.accept_events([self.event], "api") == [self.event["messageId"]]

    def __exit__(self, *_: object) -> None:
        return None


def test_due_timers_commit_one_at_a_time_while_a_request_waits(
        sqlite_template: Path, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"later": WAIT_THEN_SEND},
                          {"hello": stub_email("hello")}, None)

    def fire_all(waiting: bool) -> tuple[int, int]:
        eng = InMemoryEngine.from_folder(folder, start=T0)
        (tmp_path / str(waiting)).mkdir()
        store = make_sqlite_store(sqlite_template, tmp_path / str(waiting))
        store.clock = eng.clock
        eng.use_store(store)
        eng.worker.budget = 60.0  # only a waiting request cuts the chunk, not a slow machine
        # serve's worker fires inside the write lock; a `journeyman worker` holds no lock
        # while it fires (engine/store/sql/stamps.py), so it has no request to let in
        eng.worker.snapshots = None
        try:
            for i in range(20):
                eng.track(f"u{i}", "Ordered")
            eng.clock.advance(timedelta(minutes=2))
            batches = eng.worker.stats.batches
            ForegroundWaits.add(1 if waiting else 0)
            try:
                fired = eng.worker.fire_timers()
            finally:
                ForegroundWaits.add(-1 if waiting else 0)
            return fired, eng.worker.stats.batches - batches
        finally:
            store.close()

    assert fire_all(waiting=False) == (20, 1)  # one transaction for the twenty
    assert fire_all(waiting=True) == (20, 20)  # a commit after each: the request gets in


def _lately_for_background(gate: FairWriteGate) -> bool:
    with background_work():
        return gate.requests_lately()


def test_background_work_sees_the_api_busy_for_a_while_after_a_request() -> None:
    gate = FairWriteGate(lately=60.0)
    with background_work(), gate.held():  # the loops' own turns make nobody busy
        pass
    assert not _lately_for_background(gate)
    with gate.held():  # a request's write
        pass
    assert _lately_for_background(gate)
    # Asked by anyone but background work (a request, a program driving the worker in
    # its own thread): no request would wait for it
    assert not gate.requests_lately()
    gate._foreground_at -= 61.0  # that request was a minute ago
    assert not _lately_for_background(gate)
    ForegroundWaits.add(1)  # a request waiting now
    try:
        assert _lately_for_background(gate)
    finally:
        ForegroundWaits.add(-1)


@pytest.mark.parametrize("busy", [False, True])
def test_while_the_api_is_busy_timer_chunks_and_admissions_are_short(
        busy: bool, sqlite_template: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's loops beside requests: a chunk of timers fires for `BUSY_API_BUDGET`
    (0 here: its least, `MIN_TIMER_BATCH` timers) and the dispatcher claims
    `BUSY_API_CLAIM` sends (5 here) per transaction; otherwise one of each for all."""
    monkeypatch.setattr(claim_sizes, "BUSY_API_BUDGET", 0.0)
    monkeypatch.setattr(dispatch_module, "BUSY_API_CLAIM", 5)
    folder = write_folder(tmp_path / "j", {"later": WAIT_THEN_SEND},
                          {"hello": stub_email("hello")}, None)
    eng = InMemoryEngine.from_folder(folder, start=T0)
    store = make_sqlite_store(sqlite_template, tmp_path)
    store.clock = eng.clock
    eng.use_store(store)
    eng.worker.budget = 60.0  # only the API cuts the chunk, not a slow machine
    eng.worker.snapshots = None  # serve's worker: firing inside the write lock
    claims: list[int] = []
    claim_outbox = store.claim_outbox

    def counted(now: datetime, limit: int, lease: timedelta) -> Any:
        claims.append(limit)
        return claim_outbox(now, limit, lease)

    store.claim_outbox = counted  # type: ignore[method-assign]
    try:
        for i in range(20):  # requests' writes: the API was busy just now
            eng.identify(f"u{i}", {"email": f"u{i}@example.com", "consent": {"email": True}})
            eng.track(f"u{i}", "Ordered")
        eng.clock.advance(timedelta(minutes=2))
        store._write_gate._lately = 3600.0 if busy else 0.0  # type: ignore[union-attr]
        batches = eng.worker.stats.batches
        claims.clear()  # the engine dispatched after each event (nothing was due)
        with background_work():  # as the service's loops run
            assert eng.worker.fire_timers() == 20
            chunks = eng.worker.stats.batches - batches
            eng.dispatcher.dispatch_due()
        assert eng.dispatcher.stats.sent == 20
        if busy:
            assert chunks == 5  # 4 timers each
            assert claims == [5] * 5  # the fifth finds nothing left: done
        else:
            assert chunks == 1
            assert claims == [100]
    finally:
        store.close()
