"""The outbox dispatcher: deliver queued sends through the channel adapters.

A send is rendered and queued in the same transaction as the step that made it
(engine/runtime/runner.py); delivery happens here, outside any transaction, one row at a time:

0. The policy (engine/runtime/policy.py) may defer the send (quiet hours) or skip it (no
   consent, over a frequency cap); either is logged in the decision log.
1. `claim_outbox` leases due rows (pending, `next_attempt_at` <= now) by pushing their
   `next_attempt_at` to now + lease and counting the attempt; it commits at once.
2. The channel sends. Success marks the row `sent`. A `DeliveryError(permanent=True)`,
   or no adapter for the channel, marks it `failed` with the reason. Anything else is
   transient: the row goes back to pending with an exponential backoff, until
   `max_attempts`, after which it is `failed`.

Delivery is therefore at least once, with an idempotency key: a process that dies
between a channel's success and `mark_sent` leaves the row leased; when the lease
runs out it is sent again with the same key (email adapters derive the Message-ID from
it, webhooks send it as a header), so a receiver can drop the duplicate. In the normal
and retry paths nothing is sent twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from engine.runtime.policy import PolicyGate

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

    def dispatch_due(self) -> int:
        """Deliver every send due now; returns how many rows were tried."""
        tried = 0
        while entries := self.store.claim_outbox(self.clock.now(), self.batch, self.lease):
            failing: set[str] = set()  # channels that failed transiently in this batch
            batched: dict[str, list[OutboxEntry]] = {}
            for entry in entries:
                channel = self._channel_for(entry, failing)
                if channel is None:
                    continue
                if isinstance(channel, BatchChannel):
                    batched.setdefault(entry.channel, []).append(entry)
                elif not self._settle(entry, self._send_one(channel, entry)):
                    failing.add(entry.channel)
            for name, group in batched.items():
                self._send_batched(name, group)
            tried += len(entries)
        return tried

    def _channel_for(self, entry: OutboxEntry, failing: set[str]) -> Channel | None:
        """The adapter to send `entry` with, or None once the row is settled otherwise
        (held back behind a failing channel, deferred or skipped by the policy, or no
        adapter)."""
        if entry.channel in failing:
            self._hold(entry)
            return None
        if self.gate is not None and not self._allowed(entry, self.clock.now()):
            return None
        channel = self.channels.get(entry.channel)
        if channel is None:
            self._fail(entry, f"no channel adapter for {entry.channel!r}", "no_channel")
        return channel

    def _send_one(self, channel: Channel, entry: OutboxEntry) -> Exception | None:
        try:
            channel.send(entry.message(self.clock.now()))
        except Exception as exc:  # settled by _settle: permanent, or retried
            return exc
        return None

    def _send_batched(self, name: str, group: list[OutboxEntry]) -> None:
        """Adapters with `send_batch` (email) get the rows in small chunks, so building
        one message overlaps sending the previous; the chunk bounds how many could be
        re-sent after a crash (at-least-once, same idempotency keys)."""
        channel = self.channels[name]
        assert isinstance(channel, BatchChannel)
        for start in range(0, len(group), SEND_CHUNK):
            chunk = group[start:start + SEND_CHUNK]
            now = self.clock.now()
            results = _batch_results(channel, [entry.message(now) for entry in chunk])
            healthy = [self._settle(entry, error) for entry, error in zip(chunk, results,
                                                                          strict=True)]
            if not all(healthy):
                for entry in group[start + SEND_CHUNK:]:
                    self._hold(entry)
                return

    def _settle(self, entry: OutboxEntry, error: Exception | None) -> bool:
        """Mark the row after a send; False if the channel failed transiently."""
        if error is None:
            self.store.mark_sent(entry.key, self.clock.now())
            self.stats.sent += 1
            return True
        if isinstance(error, DeliveryError) and error.permanent:
            self._fail(entry, str(error), "permanent_failure")
            return True
        text = str(error) if isinstance(error, DeliveryError) else (
            f"{type(error).__name__}: {error}")  # an adapter's bug or a network error
        self._retry(entry, text)
        return False

    def _hold(self, entry: OutboxEntry) -> None:
        """A channel that just failed (down, timing out) is not tried again for the rest
        of the batch: its rows wait for the backoff unattempted, so a batch cannot take
        longer than its lease while a server swallows connections."""
        when = self.clock.now() + self.retry.delay(entry.key, 1)
        self.store.mark_deferred(entry.key, when, "channel_unavailable")
        self.stats.held += 1

    def _allowed(self, entry: OutboxEntry, now: datetime) -> bool:
        """Apply the policy; a deferral or skip is marked and logged here."""
        assert self.gate is not None
        verdict = self.gate.decide(entry, self.store.get_profile(entry.profile_id), now,
                                   self.store.count_sent)
        if verdict.action == "send":
            return True
        details = dict(verdict.details)
        if verdict.action == "defer":
            assert verdict.until is not None
            self.store.mark_deferred(entry.key, verdict.until, verdict.reason)
            details["until"] = verdict.until.isoformat()
            self.stats.deferred += 1
        else:
            self.store.mark_skipped(entry.key, verdict.reason)
            self.stats.skipped += 1
        what = "deferred" if verdict.action == "defer" else "skipped"
        self.store.record_decision(Decision(now, entry.profile_id, entry.journey, entry.step,
                                            what, verdict.reason,
                                            {"channel": entry.channel, **details}))
        return False

    def _retry(self, entry: OutboxEntry, error: str) -> None:
        if entry.attempts >= self.retry.max_attempts:
            self._fail(entry, f"gave up after {entry.attempts} attempts: {error}",
                       "retries_exhausted")
            return
        when = self.clock.now() + self.retry.delay(entry.key, entry.attempts)
        log.warning("send %s failed (attempt %d), retrying at %s: %s", entry.key,
                    entry.attempts, when.isoformat(), error)
        self.store.mark_retry(entry.key, when, error)
        self.stats.retried += 1

    def _fail(self, entry: OutboxEntry, error: str, reason: str) -> None:
        now = self.clock.now()
        log.error("send %s failed for good: %s", entry.key, error)
        self.store.mark_failed(entry.key, now, error)
        self.store.record_decision(Decision(now, entry.profile_id, entry.journey, entry.step,
                                            "failed", reason, {"error": error,
                                                               "channel": entry.channel}))
        self.stats.failed += 1


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
