"""The outbox dispatcher: retries with backoff, permanent failures, the decision log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.ports import DeliveryError, Message
from engine.runtime.dispatch import Dispatcher, RetryPolicy
from engine.store import SqlStore
from engine.testing import FakeClock, InMemoryStore
from tests.store.helpers import T0, outbox_entry


@dataclass
class ScriptedChannel:
    """Fails as scripted (one entry per call; None = deliver), then delivers."""

    script: list[Exception | None]
    name: str = "email"
    delivered: list[Message] = field(default_factory=list)
    calls: int = 0

    def send(self, message: Message) -> None:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        self.delivered.append(message)


def _setup(script: list[Exception | None],
           retry: RetryPolicy | None = None) -> tuple[InMemoryStore, FakeClock, ScriptedChannel,
                                                      Dispatcher]:
    store, clock = InMemoryStore(), FakeClock(T0)
    channel = ScriptedChannel(script)
    store.enqueue_send(outbox_entry("e1:send:0"))
    return store, clock, channel, Dispatcher(store, {"email": channel}, clock, retry=retry)


def _run_for(store: InMemoryStore, clock: FakeClock, dispatcher: Dispatcher,
             span: timedelta) -> None:
    end = clock.now() + span
    dispatcher.dispatch_due()
    while (due := store.next_outbox_at()) is not None and due <= end:
        clock.set(max(due, clock.now()))
        dispatcher.dispatch_due()


def test_transient_failures_retry_with_backoff_then_deliver_once() -> None:
    store, clock, channel, dispatcher = _setup([ConnectionError("refused"),
                                                DeliveryError("421 busy")])
    dispatcher.dispatch_due()
    record = store.outbox_records()[0]
    assert (record.status, record.attempts, record.last_error) == (
        "pending", 1, "ConnectionError: refused")
    first_wait = record.next_attempt_at - T0  # type: ignore[operator]
    assert timedelta(seconds=15) <= first_wait < timedelta(seconds=30)
    _run_for(store, clock, dispatcher, timedelta(hours=1))
    assert len(channel.delivered) == 1
    assert channel.calls == 3
    assert channel.delivered[0].key == "e1:send:0"
    record = store.outbox_records()[0]
    assert (record.status, record.attempts, record.sent_at) == ("sent", 3, clock.now())
    assert dispatcher.stats.retried == 2
    assert dispatcher.stats.sent == 1
    assert [d.what for d in store.decisions] == ["sent"]  # no skip, no failure


def test_permanent_failure_is_recorded_and_not_retried() -> None:
    store, clock, channel, dispatcher = _setup([DeliveryError("550 no such user",
                                                              permanent=True)])
    _run_for(store, clock, dispatcher, timedelta(days=1))
    assert channel.calls == 1
    assert channel.delivered == []
    record = store.outbox_records()[0]
    assert (record.status, record.last_error) == ("failed", "550 no such user")
    [decision] = store.decisions
    assert (decision.what, decision.reason, decision.step) == (
        "failed", "permanent_failure", "send_welcome")


def test_retries_give_up_after_the_limit() -> None:
    store, clock, channel, dispatcher = _setup([TimeoutError("slow")] * 10,
                                               RetryPolicy(max_attempts=3))
    _run_for(store, clock, dispatcher, timedelta(days=1))
    assert channel.calls == 3
    assert channel.delivered == []
    assert store.outbox_records()[0].status == "failed"
    assert store.decisions[0].reason == "retries_exhausted"


def test_a_send_for_a_channel_without_an_adapter_fails_visibly() -> None:
    store, clock = InMemoryStore(), FakeClock(T0)
    store.enqueue_send(outbox_entry("e1:send:0"))
    Dispatcher(store, {}, clock).dispatch_due()
    assert store.outbox_records()[0].status == "failed"
    assert store.decisions[0].reason == "no_channel"


@pytest.mark.parametrize("attempt", [1, 2, 5, 20])
def test_backoff_is_exponential_capped_and_jittered(attempt: int) -> None:
    policy = RetryPolicy(base=timedelta(seconds=10), cap=timedelta(minutes=10))
    raw = min(timedelta(seconds=10) * 2 ** (attempt - 1), timedelta(minutes=10))
    delays = {policy.delay(f"k{i}", attempt) for i in range(50)}
    assert all(raw / 2 <= d < raw for d in delays)
    assert len(delays) > 40  # spread out, not a thundering herd
    assert policy.delay("k1", attempt) == policy.delay("k1", attempt)  # replayable


def test_after_a_transient_failure_the_rest_of_the_batch_waits_unattempted() -> None:
    """A server that swallows connections costs one timeout per batch, not one per row."""
    store, clock = InMemoryStore(), FakeClock(T0)
    down = ScriptedChannel([TimeoutError("slow")] * 100)
    for n in range(5):
        store.enqueue_send(outbox_entry(f"k{n}"))
    dispatcher = Dispatcher(store, {"email": down}, clock)
    assert dispatcher.dispatch_due() == 5
    assert down.calls == 1
    assert dispatcher.stats.held == 4
    records = store.outbox_records()
    assert [r.attempts for r in records] == [1, 0, 0, 0, 0]  # held rows were not attempts
    assert all(r.status == "pending" and r.next_attempt_at > T0  # type: ignore[operator]
               for r in records)
    assert {r.last_error for r in records[1:]} == {"channel_unavailable"}
    down.script.clear()  # it is back
    _run_for(store, clock, dispatcher, timedelta(hours=1))
    assert len(down.delivered) == 5


def test_a_hard_bounce_suppresses_the_address_and_later_sends_are_skipped() -> None:
    store, clock, _, dispatcher = _setup([DeliveryError("550 no such user", permanent=True,
                                                        bounce=True)])
    store.enqueue_send(outbox_entry("e2:send:0"))  # the same address, same claim
    dispatcher.dispatch_due()
    [suppression] = store.suppressions()
    assert (suppression.reason, suppression.source) == ("hard_bounce", "channel:email")
    assert [(r.entry.key, r.status, r.last_error) for r in store.outbox_records()] == [
        ("e1:send:0", "failed", "550 no such user"), ("e2:send:0", "skipped", "suppressed")]
    assert [(e.kind, e.message_key) for e in store.engagements()] == [("bounce", "e1:send:0")]
    store.enqueue_send(outbox_entry("e3:send:0", at=clock.now()))  # later, any journey
    dispatcher.dispatch_due()
    assert store.outbox_records()[-1].status == "skipped"
    assert [d.reason for d in store.decisions] == ["permanent_failure", "suppressed",
                                                   "suppressed"]


def test_a_soft_bounce_is_counted_and_retried_not_suppressed() -> None:
    store, clock, channel, dispatcher = _setup([DeliveryError("452 mailbox full",
                                                              bounce=True)])
    _run_for(store, clock, dispatcher, timedelta(hours=1))
    assert len(channel.delivered) == 1
    assert store.suppressions() == []
    assert [e.kind for e in store.engagements()] == ["soft_bounce"]


def test_a_permanent_failure_that_is_no_bounce_suppresses_nothing() -> None:
    store, _clock, _, dispatcher = _setup([DeliveryError("cannot build", permanent=True)])
    dispatcher.dispatch_due()
    assert store.suppressions() == []


class CountingStore(SqlStore):
    """A real SQLite store that counts its write transactions."""

    transactions = 0

    @contextmanager
    def transaction(self, *, stamped: bool = False) -> Iterator[None]:
        self.transactions += 1
        with super().transaction(stamped=stamped):
            yield


def test_outcomes_whose_commit_failed_but_committed_are_not_written_again(
        tmp_path: Path) -> None:
    """The write after delivery fails at its COMMIT, which went through (the connection
    "lost" after it: a real SQLite store, the loss injected after its commit). Writing
    again would take a deferral's attempt back twice (and park a failure twice): the
    dispatcher asks whether the rows are still at the claim's lease, finds them written,
    and writes nothing more (engine/runtime/outcomes.py)."""
    from sqlalchemy.exc import OperationalError

    class CommitLost(CountingStore):
        @contextmanager
        def transaction(self, *, stamped: bool = False) -> Iterator[None]:
            with super().transaction(stamped=stamped):
                yield
            if self.transactions == 2:  # the admission was 1; this is the write after it
                raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    store = CommitLost(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        store.enqueue_send(outbox_entry("a:send:0", profile="p1"))
        store.enqueue_send(outbox_entry("b:send:0", profile="p2"))
        channel = ScriptedChannel([ConnectionError("refused")])  # then held for this claim
        dispatcher = Dispatcher(store, {"email": channel}, FakeClock(T0))
        paused: list[float] = []
        dispatcher.pause = paused.append
        assert dispatcher.dispatch_due() == 2
        assert store.transactions == 3  # the write again asks first, and writes nothing
        assert paused == [0.2]  # before the write again
        records = {r.entry.key: r for r in store.outbox_records()}
        assert (records["a:send:0"].attempts, records["a:send:0"].last_error) == (
            1, "ConnectionError: refused")
        assert (records["b:send:0"].attempts, records["b:send:0"].last_error) == (
            0, "channel_unavailable")  # claimed (+1), held (-1): once
    finally:
        store.close()


class CommitFails(CountingStore):
    """The write after the admission (transaction 2, and 3 if `again`) fails at its
    COMMIT without committing: rolled back, then the error a lost connection gives."""

    again = False

    @contextmanager
    def transaction(self, *, stamped: bool = False) -> Iterator[None]:
        from sqlalchemy.exc import OperationalError

        failing = self.transactions + 1 in ((2, 3) if self.again else (2,))
        with super().transaction(stamped=stamped):
            yield
            if failing:
                raise OperationalError("COMMIT", {}, Exception("server closed the connection"))


def test_outcomes_whose_commit_failed_and_did_not_commit_are_written_again(
        tmp_path: Path) -> None:
    """The COMMIT failed and nothing committed: the rows are still pending at the
    claim's lease, so the write goes again, once (before, it was given up and the send
    went out again when the lease ended)."""
    store = CommitFails(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        store.enqueue_send(outbox_entry("a:send:0"))
        channel = ScriptedChannel([])
        clock = FakeClock(T0)
        dispatcher = Dispatcher(store, {"email": channel}, clock)
        paused: list[float] = []
        dispatcher.pause = paused.append
        assert dispatcher.dispatch_due() == 1
        assert (store.transactions, paused) == (3, [0.2])
        (record,) = store.outbox_records()
        assert (record.status, record.attempts) == ("sent", 1)
        assert [d.what for d in store.recorded_decisions()] == ["sent"]
        clock.advance(timedelta(hours=1))
        assert dispatcher.dispatch_due() == 0
        assert len(channel.delivered) == 1
    finally:
        store.close()


def test_outcomes_the_database_cannot_account_for_are_left_to_the_lease(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The COMMIT failed and the question gets no answer through every pause: the error
    is raised, as before, and the rows wait for their lease (sent again then, with the
    same key)."""
    from sqlalchemy.exc import OperationalError

    store = CommitFails(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        store.enqueue_send(outbox_entry("a:send:0"))
        asked: list[object] = []

        def away(*args: object) -> set[str]:
            asked.append(args)
            raise OperationalError("UPDATE", {}, Exception("connection refused"))

        store.extend_outbox_lease = away  # type: ignore[method-assign]
        dispatcher = Dispatcher(store, {"email": ScriptedChannel([])}, FakeClock(T0))
        paused: list[float] = []
        dispatcher.pause = paused.append
        with pytest.raises(OperationalError):
            dispatcher.dispatch_due()
        assert (store.transactions, paused, len(asked)) == (5, [0.2, 1.0, 2.0], 3)
        assert "the last try of 4; unless written, they go out again" in caplog.text
        (record,) = store.outbox_records()
        assert (record.status, record.next_attempt_at) == ("pending", T0 + dispatcher.lease)
    finally:
        store.close()


class Busy(CountingStore):
    """Its first write of outcomes (transaction 2) fails before its COMMIT, on SQLite's
    busy (transient)."""

    def mark_sent_many(self, sent: Any) -> None:
        import sqlite3

        from sqlalchemy.exc import OperationalError

        if sent and self.transactions == 2:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = 5
            raise OperationalError("UPDATE outbox", {}, busy)
        super().mark_sent_many(sent)


def test_a_write_again_after_the_lease_ran_out_writes_nothing_over_anothers_claim(
        tmp_path: Path) -> None:
    """The write of a delivered send fails before its COMMIT (SQLite busy: transient);
    during the pause before the write again the lease runs out and another dispatcher
    claims the row (and sends it again: at least once). The write again wrote over that
    claim: `sent` twice in the decision log, the other's attempt taken back (a third
    review). It asks first, in its own transaction, and finds the row no longer at its
    lease: nothing is written."""
    path = f"sqlite:///{tmp_path / 'store.db'}"
    store = Busy(path, create=True)
    other_store = SqlStore(path)
    try:
        store.enqueue_send(outbox_entry("a:send:0"))
        clock = FakeClock(T0)
        mine, theirs = ScriptedChannel([]), ScriptedChannel([])
        dispatcher = Dispatcher(store, {"email": mine}, clock)
        other = Dispatcher(other_store, {"email": theirs}, clock)

        def lease_runs_out(seconds: float) -> None:
            clock.advance(dispatcher.lease + timedelta(seconds=1))
            assert other.dispatch_due() == 1

        dispatcher.pause = lease_runs_out
        assert dispatcher.dispatch_due() == 1
        assert (len(mine.delivered), len(theirs.delivered)) == (1, 1)
        (record,) = store.outbox_records()
        assert (record.status, record.attempts) == ("sent", 2)
        assert [d.what for d in store.recorded_decisions()] == ["sent"]
    finally:
        other_store.close()
        store.close()


def test_a_write_again_whose_rows_were_partly_claimed_meanwhile_writes_them_all(
        tmp_path: Path) -> None:
    """As above, but the other dispatcher claims one of the chunk's two rows (a claim
    takes whole profiles up to its limit). A fourth review: refusing to write left the
    row still ours pending at a lease already run out, and it went to its customer a
    second time. Nothing of the chunk committed (a committed write moves every row), so
    all its outcomes are written, as before the question was asked: b goes out once."""
    path = f"sqlite:///{tmp_path / 'store.db'}"
    store = Busy(path, create=True)
    other_store = SqlStore(path)
    try:
        store.enqueue_send(outbox_entry("a:send:0", profile="p1"))
        store.enqueue_send(outbox_entry("b:send:0", profile="p2"))
        clock = FakeClock(T0)
        mine, theirs = ScriptedChannel([]), ScriptedChannel([])
        dispatcher = Dispatcher(store, {"email": mine}, clock)
        other = Dispatcher(other_store, {"email": theirs}, clock, batch=1)

        def lease_runs_out(seconds: float) -> None:
            clock.advance(dispatcher.lease + timedelta(seconds=1))
            admission = other._admit()  # p1's row alone
            assert admission is not None
            other._deliver(admission[1], admission[0])

        dispatcher.pause = lease_runs_out
        assert dispatcher.dispatch_due() == 2
        clock.advance(timedelta(hours=1))
        other.dispatch_due()
        dispatcher.dispatch_due()
        delivered = [m.key for m in mine.delivered + theirs.delivered]
        assert sorted(delivered) == ["a:send:0", "a:send:0", "b:send:0"]
        assert {r.entry.key: r.status for r in store.outbox_records()} == {
            "a:send:0": "sent", "b:send:0": "sent"}
    finally:
        other_store.close()
        store.close()


@dataclass
class TenSeconds:
    """An adapter each message of which takes 10 s of the fake clock, and says so
    (`longest_send`); with `send_batch` when `batch`."""

    clock: FakeClock
    name: str
    sent: list[str] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.clock.advance(timedelta(seconds=10))
        self.sent.append(message.key)

    def longest_send(self, count: int) -> float:
        return 10.0 * count


@dataclass
class TenSecondsBatch(TenSeconds):
    def send_batch(self, messages: list[Message]) -> list[Exception | None]:
        for message in messages:
            self.send(message)
        return [None] * len(messages)


def test_sends_made_before_a_failed_extension_are_written_again_after_a_failed_commit(
        tmp_path: Path) -> None:
    """Five slow SMS go out; the extension the sixth needs fails (the database away: the
    rest of the claim is not sent); the e-mail adapter's chunk then has no row of the
    claim left to extend. The write of the five fails at its COMMIT without committing:
    the rows are still at the claim's lease, so they are written again. Before, that
    chunk's empty extension moved the lease to a time no row held, the look found none
    of the five at it, took the write for committed, and the five went out again when
    the lease ended."""
    from dataclasses import replace

    from sqlalchemy.exc import OperationalError

    store = CommitFails(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        store.enqueue_send(outbox_entry("m:send:0"))  # set aside for its batch first
        texts = [f"s{n}:send:0" for n in range(6)]
        for key in texts:
            store.enqueue_send(replace(outbox_entry(key), channel="sms"))
        real, failed = store.extend_outbox_lease, []

        def away_once(*args: Any) -> set[str]:
            if not failed:
                failed.append(args)
                raise OperationalError("UPDATE", {}, Exception("connection refused"))
            return real(*args)

        store.extend_outbox_lease = away_once  # type: ignore[method-assign]
        clock = FakeClock(T0)
        sms, email = TenSeconds(clock, "sms"), TenSecondsBatch(clock, "email")
        dispatcher = Dispatcher(store, {"sms": sms, "email": email}, clock,
                                lease=timedelta(seconds=60))
        dispatcher.pause = lambda _seconds: None
        assert dispatcher.dispatch_due() == 7
        assert (sms.sent, email.sent, len(failed)) == (texts[:5], [], 1)
        records = {r.entry.key: r for r in store.outbox_records()}
        assert {records[key].status for key in texts[:5]} == {"sent"}
        clock.set(T0 + timedelta(seconds=60))  # the claim's lease ends
        assert dispatcher.dispatch_due() == 2
        assert (sms.sent, email.sent) == (texts, ["m:send:0"])
    finally:
        store.close()


def test_a_write_that_finds_the_database_locked_twice_goes_on_the_third_time(
        tmp_path: Path) -> None:
    """SQLite busy (another process's long write) at the write after delivery, twice:
    nothing committed, so it is written again after a pause each time, and the send is
    marked sent once (before, the second failure left it leased, to go out again)."""
    from sqlalchemy.exc import OperationalError

    class Locked(CountingStore):
        @contextmanager
        def transaction(self, *, stamped: bool = False) -> Iterator[None]:
            with super().transaction(stamped=stamped):
                if self.transactions in (2, 3):  # after the admission (1)
                    raise OperationalError("BEGIN", {}, Exception("database is locked"))
                yield

    store = Locked(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        store.enqueue_send(outbox_entry("a:send:0"))
        channel = ScriptedChannel([])
        clock = FakeClock(T0)
        dispatcher = Dispatcher(store, {"email": channel}, clock)
        paused: list[float] = []
        dispatcher.pause = paused.append
        assert dispatcher.dispatch_due() == 1
        assert store.transactions == 4
        assert paused == [0.2, 1.0]
        (record,) = store.outbox_records()
        assert (record.status, record.attempts) == ("sent", 1)
        assert [d.what for d in store.recorded_decisions()] == ["sent"]
        clock.advance(timedelta(hours=1))
        assert dispatcher.dispatch_due() == 0
        assert len(channel.delivered) == 1
    finally:
        store.close()


def test_a_run_with_nothing_due_opens_no_write_transaction(tmp_path: Path) -> None:
    """A dispatcher woken when nothing is due (another worker's dispatcher took the
    sends, the safety tick) looks with a read first: on SQLite an admission waits for
    and holds the one write turn, which the events' batches need."""
    store = CountingStore(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        clock = FakeClock(T0)
        channel = ScriptedChannel([])
        dispatcher = Dispatcher(store, {"email": channel}, clock)
        assert dispatcher.dispatch_due() == 0  # an empty outbox
        store.enqueue_send(outbox_entry("a:send:0", at=T0 + timedelta(minutes=5)))
        assert dispatcher.dispatch_due() == 0  # queued for later
        assert store.transactions == 0
        clock.set(T0 + timedelta(minutes=5))
        assert dispatcher.dispatch_due() == 1  # due now: admitted, sent, written
        assert [m.key for m in channel.delivered] == ["a:send:0"]
        assert store.transactions >= 1
    finally:
        store.close()


def test_a_run_says_when_the_outbox_next_has_work_with_one_look_when_nothing_was_due(
        tmp_path: Path) -> None:
    """`Dispatcher.run` (the service's dispatcher loop): a run that found nothing due
    answers with the look it began with; a run that sent looks again."""
    looks: list[datetime | None] = []

    class Looking(CountingStore):
        def next_outbox_at(self) -> datetime | None:
            looks.append(found := super().next_outbox_at())
            return found

    store = Looking(f"sqlite:///{tmp_path / 'store.db'}", create=True)
    try:
        clock = FakeClock(T0)
        channel = ScriptedChannel([])
        dispatcher = Dispatcher(store, {"email": channel}, clock)
        assert dispatcher.run() is None  # an empty outbox: one look
        assert looks == [None]
        later = T0 + timedelta(minutes=5)
        store.enqueue_send(outbox_entry("a:send:0", at=later))
        store.enqueue_send(outbox_entry("b:send:0", at=later + timedelta(minutes=1)))
        looks.clear()
        assert dispatcher.run() == later  # not yet due: one look
        assert looks == [later]
        assert store.transactions == 0
        clock.set(later)
        looks.clear()
        assert dispatcher.run() == later + timedelta(minutes=1)  # sent a, looked again
        assert [m.key for m in channel.delivered] == ["a:send:0"]
        assert len(looks) == 2
    finally:
        store.close()


def test_a_phone_number_suppressed_from_the_cli_stops_sms_to_it(tmp_path: Path) -> None:
    """`suppressions add` took e-mail addresses only ('... is not an email address'),
    while an SMS send's `to` is a phone number: an E.164 number is accepted, and the
    dispatcher skips an SMS to it. Anything else is still refused."""
    from dataclasses import replace

    from typer.testing import CliRunner

    from engine.cli import app

    db = f"sqlite:///{tmp_path / 's.db'}"
    added = CliRunner().invoke(app, ["suppressions", "add", "+4915112345678", "--db", db])
    assert added.exit_code == 0, added.output
    for bad in ("+12", "4915112345678", "+49 151 12345678", "ana"):
        refused = CliRunner().invoke(app, ["suppressions", "add", bad, "--db", db])
        assert refused.exit_code == 1, bad
        assert "neither an e-mail address nor a phone number in E.164 form" in refused.output
    store = SqlStore(db)
    try:
        sms = ScriptedChannel([], name="sms")
        entry = outbox_entry("e1:send:0")
        store.enqueue_send(replace(entry, channel="sms", to="+4915112345678"))
        Dispatcher(store, {"sms": sms}, FakeClock(T0)).dispatch_due()
        assert sms.delivered == []
        assert [(r.status, r.last_error) for r in store.outbox_records()] == [
            ("skipped", "suppressed")]
    finally:
        store.close()
