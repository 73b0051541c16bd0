"""A dispatcher's claim never outlasts its lease (engine/runtime/lease.py): a provider
slow on every answer took a claim's sends past `now + lease`, and another dispatcher
(another worker on the same database, with a store of its own) claimed the rows not yet
written and sent them again. On the fake clock, on every store: the claim's rows are
extended before a send the lease would not cover, so the other dispatcher finds nothing;
and a row another dispatcher took over (a send that outlasted what its adapter promised)
is not sent, and nothing is written for it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any

import pytest

from engine.ports import Message
from engine.runtime.dispatch import Dispatcher
from engine.runtime.lease import ClaimLease
from engine.store import SqlStore
from engine.testing import FakeClock, InMemoryStore
from tests.store.helpers import T0, outbox_entry

LEASE = timedelta(seconds=60)
KEYS = [f"e{n}:send:0" for n in range(10)]


@dataclass
class Slow:
    """An adapter each message of which takes `seconds` of the fake clock; it states
    `stated` seconds a message as its longest (`longest_send`). `meanwhile` runs during
    each send, after the clock moved (another worker's dispatcher)."""

    clock: FakeClock
    seconds: float
    stated: float
    meanwhile: Callable[[], object] = lambda: None
    name: str = "email"
    sent: list[str] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.clock.advance(timedelta(seconds=self.seconds))
        self.meanwhile()
        self.sent.append(message.key)

    def longest_send(self, count: int) -> float:
        return self.stated * count


@dataclass
class SlowBatch(Slow):
    def send_batch(self, messages: list[Message]) -> list[Exception | None]:
        for message in messages:
            self.send(message)
        return [None] * len(messages)


@dataclass
class Recording:
    """The other worker's adapter: quick (a second a send), keeps what it sent."""

    clock: FakeClock
    name: str = "email"
    sent: list[str] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.clock.advance(timedelta(seconds=1))
        self.sent.append(message.key)


@pytest.fixture
def stores(store: Any) -> Iterator[tuple[Any, Any, FakeClock]]:
    """The store under test and another on the same database (another worker's): the
    same object for the in-memory store."""
    clock = FakeClock(T0)
    if not isinstance(store, SqlStore):
        yield store, store, clock
        return
    other = SqlStore(store.url, clock=clock)
    try:
        yield store, other, clock
    finally:
        other.close()


def _queue(store: Any) -> None:
    for n, key in enumerate(KEYS):
        store.enqueue_send(outbox_entry(key, at=T0 - timedelta(seconds=1), profile=f"p{n}"))


@pytest.mark.parametrize("adapter", [Slow, SlowBatch])
def test_a_claim_slower_than_its_lease_is_extended_and_nobody_else_gets_its_rows(
        stores: tuple[Any, Any, FakeClock], adapter: type[Slow]) -> None:
    """Ten sends of 10 s each (stated so) on a 60 s lease: 100 s. The other worker's
    dispatcher runs during every send; before, from 60 s on it claimed all ten (their
    outcomes unwritten) and sent them again."""
    store, other_store, clock = stores
    _queue(store)
    rival = Recording(clock)
    other = Dispatcher(other_store, {"email": rival}, clock, lease=LEASE)
    slow = adapter(clock, seconds=10, stated=10, meanwhile=other.dispatch_due)
    dispatcher = Dispatcher(store, {"email": slow}, clock, lease=LEASE)
    dispatcher.dispatch_due()
    assert rival.sent == []  # nothing of the claim was due to the other worker
    assert slow.sent == KEYS
    assert clock.now() == T0 + timedelta(seconds=100)
    records = store.outbox_records()
    assert {(r.entry.key, r.status, r.attempts) for r in records} == {
        (key, "sent", 1) for key in KEYS}
    assert dispatcher.stats.sent == 10
    assert dispatcher.stats.lost == 0


def test_rows_taken_over_after_the_lease_ran_out_are_not_sent_nor_written(
        stores: tuple[Any, Any, FakeClock]) -> None:
    """An adapter that took far longer than it promised (2 minutes, 1 s stated): the
    lease ran out during its first send, and the other worker claimed all ten rows and
    sent them. The extension before the second send finds them taken over: the first
    dispatcher sends none of them and writes nothing for them (the first row, in flight
    when it was taken over, went out twice: no check can stop a send under way)."""
    store, other_store, clock = stores
    _queue(store)
    rival = Recording(clock)
    other = Dispatcher(other_store, {"email": rival}, clock, lease=LEASE)
    calls = 0

    def once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            other.dispatch_due()

    liar = Slow(clock, seconds=120, stated=1, meanwhile=once)
    dispatcher = Dispatcher(store, {"email": liar}, clock, lease=LEASE)
    dispatcher.dispatch_due()
    assert liar.sent == KEYS[:1]
    assert rival.sent == KEYS
    assert dispatcher.stats.lost == 9
    assert dispatcher.stats.sent == 1
    records = {r.entry.key: r for r in store.outbox_records()}
    assert {r.status for r in records.values()} == {"sent"}
    assert {r.attempts for r in records.values()} == {2}  # the other worker's claim
    # each row the other worker's, as it wrote it: sent a second apart from 2 minutes on
    for n, key in enumerate(KEYS[1:], start=1):
        assert records[key].sent_at == T0 + timedelta(seconds=120 + n + 1)
    sent = [d.details["key"] for d in store.recorded_decisions() if d.what == "sent"]
    assert sorted(sent) == sorted([*KEYS, KEYS[0]])  # one each, the first by both


@dataclass
class Unstated(Recording):
    """A user's adapter that states no `longest_send`: 40 s a send here."""

    seconds: float = 40
    meanwhile: Callable[[], object] = lambda: None

    def send(self, message: Message) -> None:
        self.clock.advance(timedelta(seconds=self.seconds - 1))
        self.meanwhile()
        super().send(message)


def test_an_adapter_that_states_nothing_is_taken_to_need_30_s_a_send() -> None:
    """Three sends of 40 s on a 60 s lease: the default (30 s and the margin) is not
    covered at the second, so the lease is pushed on and the other worker's
    dispatcher, running during each send, finds nothing."""
    store, clock = InMemoryStore(), FakeClock(T0)
    for n, key in enumerate(KEYS[:3]):
        store.enqueue_send(outbox_entry(key, at=T0 - timedelta(seconds=1), profile=f"p{n}"))
    rival = Recording(clock)
    other = Dispatcher(store, {"email": rival}, clock, lease=LEASE)
    own = Unstated(clock, meanwhile=other.dispatch_due)
    dispatcher = Dispatcher(store, {"email": own}, clock, lease=LEASE)
    dispatcher.dispatch_due()
    assert rival.sent == []
    assert own.sent == KEYS[:3]
    assert dispatcher.stats.extended == 1  # at 40 s: 60 s < 40 + 30 + 5; on to 135 s
    assert {r.status for r in store.outbox_records()} == {"sent"}


def test_a_lease_that_cannot_be_extended_sends_no_more_and_the_rows_come_back(
        caplog: pytest.LogCaptureFixture) -> None:
    """The database failed the extension: the claim sends nothing more and writes
    nothing for the rest (still leased: no one else has them either); its lease ends and
    the next run sends them."""
    store, clock = InMemoryStore(), FakeClock(T0)
    _queue(store)

    def down(*_: object) -> set[str]:
        raise ConnectionError("the database went away")

    store.extend_outbox_lease = down  # type: ignore[method-assign]
    slow = Slow(clock, seconds=10, stated=10)
    dispatcher = Dispatcher(store, {"email": slow}, clock, lease=LEASE)
    dispatcher.dispatch_due()
    assert slow.sent == KEYS[:5]  # 0 to 40 s; the send at 50 s needs the lease to 65 s
    assert dispatcher.stats.lost == 5
    assert "extending the lease of 10 sends failed (ConnectionError)" in caplog.text
    records = {r.entry.key: r for r in store.outbox_records()}
    assert {records[key].status for key in KEYS[5:]} == {"pending"}
    assert {records[key].next_attempt_at for key in KEYS[5:]} == {T0 + LEASE}
    del store.extend_outbox_lease
    clock.set(T0 + LEASE)
    dispatcher.dispatch_due()
    assert slow.sent == KEYS
    assert {r.status for r in store.outbox_records()} == {"sent"}


@pytest.mark.parametrize("adapter", [Slow, SlowBatch])
def test_a_stop_during_a_claim_puts_back_the_rows_not_sent_yet(
        stores: tuple[Any, Any, FakeClock], adapter: type[Slow]) -> None:
    """SIGTERM (`stopping`) during a claim's delivery: the rows not handed to the
    adapter yet go back, due now, their attempt not counted, and another worker's
    dispatcher sends them at once. Before, the claim was delivered to its end: behind a
    provider taking 10 s a send, 100 s for ten, past the 60 s a stop gets before its
    SIGKILL (docs/deploy.md), which left them all leased and the sent ones unwritten."""
    store, other_store, clock = stores
    keys = [f"e{n}:send:0" for n in range(45)]  # three chunks of a send_batch adapter
    for n, key in enumerate(keys):
        store.enqueue_send(outbox_entry(key, at=T0 - timedelta(seconds=1), profile=f"p{n}"))
    stopping = threading.Event()
    slow = adapter(clock, seconds=1, stated=1, meanwhile=stopping.set)
    dispatcher = Dispatcher(store, {"email": slow}, clock, lease=LEASE)
    dispatcher.stopping = stopping
    dispatcher.dispatch_due()
    handed = 20 if adapter is SlowBatch else 1  # a chunk under way is delivered whole
    assert slow.sent == keys[:handed]
    assert dispatcher.stats.released == len(keys) - handed
    records = {r.entry.key: r for r in store.outbox_records()}
    assert {records[key].status for key in keys[:handed]} == {"sent"}
    back = [records[key] for key in keys[handed:]]
    assert {(r.status, r.attempts, r.next_attempt_at) for r in back} == {
        ("pending", 0, clock.now())}
    rival = Recording(clock)
    Dispatcher(other_store, {"email": rival}, clock, lease=LEASE).dispatch_due()
    assert rival.sent == keys[handed:]


def test_the_claims_own_time_is_found_again_to_the_microsecond_in_any_timezone(
        store: Any) -> None:
    """The extension finds the claim's rows by an equality on `next_attempt_at` (the
    time the claim wrote): it must hold for a clock with microseconds, in an offset
    other than UTC (written as UTC, naive text on SQLite, timestamptz on PostgreSQL)."""
    _queue(store)
    now = (T0 + timedelta(microseconds=123457)).astimezone(
        timezone(timedelta(hours=5, minutes=30)))
    claimed = [e.key for e in store.claim_outbox(now, 100, LEASE)]
    assert sorted(claimed) == sorted(KEYS)
    later = now + timedelta(seconds=1, microseconds=1)
    assert store.extend_outbox_lease(KEYS[:4], now + LEASE, later + LEASE) == set(KEYS[:4])
    assert store.extend_outbox_lease(KEYS, now + LEASE, later + LEASE) == set(KEYS[4:])
    assert store.extend_outbox_lease(KEYS, later + LEASE, later + 2 * LEASE) == set(KEYS)
    store.mark_sent(KEYS[0], later)  # settled: no longer the claim's
    assert store.extend_outbox_lease(KEYS, later + 2 * LEASE, now) == set(KEYS[1:])


def test_a_write_whose_commit_failed_is_found_written_or_not_by_the_lease(
        store: Any) -> None:
    """After a write of outcomes failed at its COMMIT (engine/runtime/outcomes.py), the
    lease says whether it committed: its rows all still pending at the claim's lease (no:
    False), none (yes, or taken over: True), some (cannot tell: None). An extension that
    failed may have committed all the same: its lease counts as the claim's too. Asked
    without changing anything."""
    _queue(store)
    claimed = [e.key for e in store.claim_outbox(T0, 100, LEASE)]
    assert sorted(claimed) == sorted(KEYS)
    lease = ClaimLease(store, LEASE, T0 + LEASE, KEYS)
    assert lease.look(KEYS[:3]) is False
    store.mark_sent(KEYS[0], T0)
    assert lease.look(KEYS[:3]) is None
    assert lease.look(KEYS[:1]) is True
    store.extend_outbox_lease(KEYS[1:], T0 + LEASE, T0 + 2 * LEASE)  # committed, unseen
    lease.maybe.append(T0 + 2 * LEASE)
    assert lease.look(KEYS[1:3]) is False
    assert {r.next_attempt_at for r in store.outbox_records() if r.entry.key != KEYS[0]} == {
        T0 + 2 * LEASE}


def test_a_lease_whose_extension_failed_is_not_moved_by_a_later_keep(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An extension failed (every row of the claim `lost`, its lease `maybe`), and did not
    commit: the rows are still at the claim's first lease. A later `keep` (the next chunk
    of a `send_batch` adapter after the other adapters' rows) has no row left to extend;
    it must not move `until` to a time no row holds, or a look after a failed COMMIT of
    the sends made before finds none of them at our lease, says "written", and their
    outcomes are dropped: sent again when the lease ends."""
    _queue(store)
    store.claim_outbox(T0, 100, LEASE)
    lease = ClaimLease(store, LEASE, T0 + LEASE, KEYS)

    def away(*_: object) -> set[str]:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(store, "extend_outbox_lease", away)
    assert lease.keep(T0 + timedelta(seconds=50), 10) is False
    assert lease.lost == set(KEYS)
    monkeypatch.undo()
    assert lease.keep(T0 + timedelta(seconds=55), 10) is False  # nothing of ours to extend
    assert lease.until == T0 + LEASE
    assert lease.look(KEYS[:3]) is False  # not written: written again
