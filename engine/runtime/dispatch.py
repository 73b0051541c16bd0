"""The outbox dispatcher: deliver queued sends through the channel adapters.

A send is rendered and queued in the same transaction as the step that made it
(engine/runtime/runner.py); delivery happens here, outside any transaction:

1. `claim_outbox` leases due rows (pending, `next_attempt_at` <= now) by pushing their
   `next_attempt_at` to now + lease and counting the attempt; it commits at once.
2. Each row is checked against the journey as it is *now*: a send whose enrollment
   exited after it was queued (an exit_when while it waited for quiet hours to end), or
   whose profile was merged into another, is not delivered; then the policy
   (engine/runtime/policy.py) may defer it (quiet hours) or skip it (no consent, over a
   frequency cap, counted in order inside the claim); last, a send with no address for
   its channel is skipped as `no_address`, and one to an address on the suppression
   list (engine/runtime/suppression.py) as `suppressed`. Each outcome is in the
   decision log.
3. The channel sends. Success marks the row `sent`. A `DeliveryError(permanent=True)`,
   or no adapter for the channel, marks it `failed` with the reason; one that is a
   bounce (a 5xx from the receiving server) also suppresses the address. Anything else is
   transient: the row goes back to pending with an exponential backoff, until
   `max_attempts`, after which it is `failed`.
4. The outcomes of a chunk of rows are written in one transaction.

An exception in our own code while handling one row (hostile data in a profile, a
bug) is that row's alone: it is retried with backoff like a transient failure, then
parked with its error and stack (`journeyman failures`); the other rows go on.

Delivery is therefore at least once, with an idempotency key: a process that dies
between a channel's success and the chunk's write leaves the rows leased; when the lease
runs out they are sent again with the same keys (email adapters derive the Message-ID
from it, webhooks send it as a header), so a receiver can drop the duplicate. In the
normal and retry paths nothing is sent twice.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from engine.core.model import Enrollment, Profile
from engine.core.times import iso
from engine.ports import (
    BatchChannel,
    Channel,
    Clock,
    Decision,
    DeliveryError,
    Message,
    OutboxEntry,
    Store,
)
from engine.runtime.metrics import Metrics
from engine.runtime.policy import PolicyGate
from engine.runtime.suppression import (
    HARD_BOUNCE,
    SOFT_BOUNCE,
    ProviderEvent,
    record_delivery_problem,
)

log = logging.getLogger("journeyman.dispatch")


SEND_CHUNK = 20  # messages per send_batch call


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base * 2**(n-1), capped, times a
    factor in [0.5, 1). The factor comes from a hash of the send key and the attempt, so
    retries of many sends spread out, yet a replay of the same history is identical."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=6)
    max_attempts: int = 8

    def delay(self, key: str, attempt: int) -> timedelta:
        raw = min(self.base * 2 ** max(attempt - 1, 0), self.cap)
        digest = hashlib.blake2b(f"{key}#{attempt}".encode(), digest_size=8).digest()
        factor = 0.5 + int.from_bytes(digest) / 2 ** 65
        return timedelta(seconds=raw.total_seconds() * factor)


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    held: int = 0  # not tried: their channel had just failed in the same batch
    parked: int = 0


ADDRESSED_CHANNELS = ("email", "sms", "push")  # channels that need the person's address


@dataclass
class _Chunk:
    """The rows of a claim being dispatched: what the checks need, loaded in bulk, and
    the outcomes waiting to be written in one transaction."""

    enrollments: dict[str, Enrollment]
    profiles: dict[str, Profile]
    outcomes: list[Callable[[], object]] = field(default_factory=list)
    sent: dict[tuple[str, str], int] = field(default_factory=dict)  # decided in this claim
    suppressed: set[str] = field(default_factory=set)  # addresses on the suppression list


class Dispatcher:
    def __init__(self, store: Store, channels: Mapping[str, Channel], clock: Clock, *,
                 retry: RetryPolicy | None = None, batch: int = 100,
                 lease: timedelta = timedelta(minutes=5), gate: PolicyGate | None = None) -> None:
        self.store = store
        self.gate = gate
        self.channels = dict(channels)
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.batch = batch
        self.lease = lease
        self.stats = DispatchStats()
        self.metrics: Metrics | None = None

    def _count(self, entry: OutboxEntry, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.sends.labels(entry.channel, outcome).inc()

    def dispatch_due(self) -> int:
        """Deliver every send due now; returns how many rows were tried."""
        tried = 0
        while entries := self.store.claim_outbox(self.clock.now(), self.batch, self.lease):
            self._dispatch(entries)
            tried += len(entries)
        return tried

    def _dispatch(self, entries: list[OutboxEntry]) -> None:
        chunk = _Chunk(self.store.load_enrollments({e.enrollment_id for e in entries}),
                       self.store.load_profiles({e.profile_id for e in entries}))
        chunk.suppressed = set(self.store.suppressed({e.to for e in entries if e.to}))
        failing: set[str] = set()  # channels that failed transiently in this claim
        batched: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            try:
                channel = self._channel_for(entry, failing, chunk)
                if channel is None:
                    continue
                if isinstance(channel, BatchChannel):
                    batched.setdefault(entry.channel, []).append(entry)
                    continue
                error = self._send_one(channel, entry)
                if not self._settle(entry, error, chunk):
                    failing.add(entry.channel)
            except Exception as exc:  # our own code, on this row's data: this row alone
                self._broken(entry, exc, chunk)
            if len(chunk.outcomes) >= SEND_CHUNK:
                self._write(chunk)
        for name, group in batched.items():
            self._send_batched(name, group, chunk)
        self._write(chunk)

    def _write(self, chunk: _Chunk) -> None:
        """The chunk's outcomes, in one transaction."""
        if chunk.outcomes:
            with self.store.transaction():
                for outcome in chunk.outcomes:
                    outcome()
            chunk.outcomes.clear()

    def _channel_for(self, entry: OutboxEntry, failing: set[str],
                     chunk: _Chunk) -> Channel | None:
        """The adapter to send `entry` with, or None once the row is settled otherwise
        (held back behind a failing channel, no longer wanted by its journey, deferred or
        skipped by the policy, or no adapter)."""
        if entry.channel in failing:
            self._hold(entry, chunk)
            return None
        now = self.clock.now()
        unwanted = self._unwanted(entry, chunk)
        if unwanted is not None:
            reason, details = unwanted
            self._skip(entry, reason, details, now, chunk)
            return None
        if self.gate is not None and not self._allowed(entry, now, chunk):
            return None
        if entry.channel in ADDRESSED_CHANNELS and not entry.to:
            self._skip(entry, "no_address", {}, now, chunk)
            return None
        if entry.to and entry.to in chunk.suppressed:
            self._skip(entry, "suppressed", {"address": entry.to}, now, chunk)
            return None
        channel = self.channels.get(entry.channel)
        if channel is None:
            self._fail(entry, f"no channel adapter for {entry.channel!r}", "no_channel", chunk)
        return channel

    @staticmethod
    def _unwanted(entry: OutboxEntry,
                  chunk: _Chunk) -> tuple[str, dict[str, Any]] | None:
        """Why the journey, as it is now, no longer wants this send delivered (None: it
        does). A send queued in the same step that ended its enrollment is wanted."""
        enrollment = chunk.enrollments.get(entry.enrollment_id)
        if enrollment is not None and enrollment.profile_id != entry.profile_id:
            return "profile_merged", {"into": enrollment.profile_id}
        if enrollment is not None and enrollment.status == "exited" and (
                (enrollment.ended_at or enrollment.updated_at) > entry.created_at):
            return "enrollment_exited", {"exit_reason": enrollment.exit_reason,
                                         "exited_at": iso(enrollment.ended_at
                                                          or enrollment.updated_at)}
        return None

    def _send_one(self, channel: Channel, entry: OutboxEntry) -> Exception | None:
        try:
            channel.send(entry.message(self.clock.now()))
        except Exception as exc:  # settled by _settle: permanent, or retried
            return exc
        return None

    def _send_batched(self, name: str, group: list[OutboxEntry], chunk: _Chunk) -> None:
        """Adapters with `send_batch` (email) get the rows in small chunks, so building
        one message overlaps sending the previous; the chunk bounds how many could be
        re-sent after a crash (at-least-once, same idempotency keys)."""
        channel = self.channels[name]
        assert isinstance(channel, BatchChannel)
        for start in range(0, len(group), SEND_CHUNK):
            part = group[start:start + SEND_CHUNK]
            now = self.clock.now()
            results = _batch_results(channel, [entry.message(now) for entry in part])
            healthy = [self._settle(entry, error, chunk)
                       for entry, error in zip(part, results, strict=True)]
            self._write(chunk)
            if not all(healthy):
                for entry in group[start + SEND_CHUNK:]:
                    self._hold(entry, chunk)
                return

    def _settle(self, entry: OutboxEntry, error: Exception | None, chunk: _Chunk) -> bool:
        """Mark the row after a send; False if the channel failed transiently."""
        if error is None:
            at = self.clock.now()
            chunk.outcomes.append(partial(self.store.mark_sent, entry.key, at))
            self.stats.sent += 1
            self._count(entry, "sent")
            return True
        if isinstance(error, DeliveryError) and error.permanent:
            bounced = error.bounce and entry.to is not None
            self._fail(entry, str(error), "permanent_failure", chunk)
            if bounced:
                assert entry.to is not None
                chunk.suppressed.add(entry.to)  # later rows of this claim too
                chunk.outcomes.append(partial(
                    record_delivery_problem, self.store,
                    ProviderEvent(HARD_BOUNCE, entry.to, entry.key, str(error)[:1000]),
                    source=f"channel:{entry.channel}", now=self.clock.now()))
            return True
        text = str(error) if isinstance(error, DeliveryError) else (
            f"{type(error).__name__}: {error}")  # an adapter's bug or a network error
        if isinstance(error, DeliveryError) and error.bounce and entry.to is not None:
            # A soft bounce (a 4xx to RCPT: mailbox full, greylisted): counted, retried.
            chunk.outcomes.append(partial(
                record_delivery_problem, self.store,
                ProviderEvent(SOFT_BOUNCE, entry.to, entry.key, text[:1000]),
                source=f"channel:{entry.channel}", now=self.clock.now()))
        self._retry(entry, text, chunk)
        return False

    def _hold(self, entry: OutboxEntry, chunk: _Chunk) -> None:
        """A channel that just failed (down, timing out) is not tried again for the rest
        of the batch: its rows wait for the backoff unattempted, so a batch cannot take
        longer than its lease while a server swallows connections."""
        when = self.clock.now() + self.retry.delay(entry.key, 1)
        chunk.outcomes.append(partial(self.store.mark_deferred, entry.key, when,
                                      "channel_unavailable"))
        self.stats.held += 1
        self._count(entry, "held")

    def _allowed(self, entry: OutboxEntry, now: datetime, chunk: _Chunk) -> bool:
        """Apply the policy; a deferral or skip is recorded here. Frequency caps count
        what the store has sent plus what this claim has decided to send so far."""
        assert self.gate is not None

        def sent_since(profile_id: str, channel: str, since: datetime) -> int:
            return (self.store.count_sent(profile_id, channel, since)
                    + chunk.sent.get((profile_id, channel), 0))

        verdict = self.gate.decide(entry, chunk.profiles.get(entry.profile_id), now,
                                   sent_since)
        if verdict.action == "send":
            key = (entry.profile_id, entry.channel)
            chunk.sent[key] = chunk.sent.get(key, 0) + 1
            return True
        details = dict(verdict.details)
        if verdict.action == "defer":
            assert verdict.until is not None
            chunk.outcomes.append(partial(self.store.mark_deferred, entry.key, verdict.until,
                                          verdict.reason))
            details["until"] = verdict.until.isoformat()
            self.stats.deferred += 1
            self._count(entry, "deferred")
            self._decide(entry, "deferred", verdict.reason, details, now=now, chunk=chunk)
        else:
            self._skip(entry, verdict.reason, details, now, chunk)
        return False

    def _skip(self, entry: OutboxEntry, reason: str, details: Mapping[str, Any],
              now: datetime, chunk: _Chunk) -> None:
        chunk.outcomes.append(partial(self.store.mark_skipped, entry.key, reason))
        self.stats.skipped += 1
        self._count(entry, "skipped")
        self._decide(entry, "skipped", reason, details, now=now, chunk=chunk)

    def _decide(self, entry: OutboxEntry, what: str, reason: str, details: Mapping[str, Any],
                *, now: datetime, chunk: _Chunk) -> None:
        chunk.outcomes.append(partial(self.store.record_decision, Decision(
            now, entry.profile_id, entry.journey, entry.step, what, reason,
            {"channel": entry.channel, **details})))

    def _retry(self, entry: OutboxEntry, error: str, chunk: _Chunk) -> None:
        if entry.attempts >= self.retry.max_attempts:
            self._fail(entry, f"gave up after {entry.attempts} attempts: {error}",
                       "retries_exhausted", chunk)
            return
        when = self.clock.now() + self.retry.delay(entry.key, entry.attempts)
        log.warning("send %s failed (attempt %d), retrying at %s: %s", entry.key,
                    entry.attempts, when.isoformat(), error)
        chunk.outcomes.append(partial(self.store.mark_retry, entry.key, when, error))
        self.stats.retried += 1
        self._count(entry, "retried")

    def _fail(self, entry: OutboxEntry, error: str, reason: str, chunk: _Chunk) -> None:
        now = self.clock.now()
        log.error("send %s failed for good: %s", entry.key, error)
        chunk.outcomes.append(partial(self.store.mark_failed, entry.key, now, error))
        self._decide(entry, "failed", reason, {"error": error}, now=now, chunk=chunk)
        self.stats.failed += 1
        self._count(entry, "failed")

    def _broken(self, entry: OutboxEntry, exc: Exception, chunk: _Chunk) -> None:
        """Our own code failed on this row: retry it with backoff, then park it."""
        error = f"{type(exc).__name__}: {exc}"[:2000]
        now = self.clock.now()
        if entry.attempts >= self.retry.max_attempts:
            stack = "".join(traceback.format_exception(exc))[-8000:]
            log.error("send %s parked after %d attempts: %s", entry.key, entry.attempts, error)
            chunk.outcomes.append(partial(
                self.store.park, "send", entry.key, profile_id=entry.profile_id,
                journey=entry.journey, step=entry.step, error=error, stack=stack,
                attempts=entry.attempts, at=now))
            self.stats.parked += 1
            self._count(entry, "parked")
            return
        self._retry(entry, error, chunk)


def _batch_results(channel: BatchChannel, messages: list[Message]) -> list[Exception | None]:
    """`send_batch`'s results, one per message. An adapter must settle each message
    itself and never raise (channels/email.py does); one that raises anyway, or answers
    with the wrong number of results, fails the chunk transiently here, so the exception
    cannot escape `dispatch_due` and leave the rows leased."""
    try:
        results = channel.send_batch(messages)
    except Exception as exc:  # an adapter's bug: retried with backoff like any failure
        return [exc] * len(messages)
    if len(results) != len(messages):
        error = DeliveryError(f"{channel.name} answered {len(results)} results for "
                              f"{len(messages)} messages")
        return [error] * len(messages)
    return results
