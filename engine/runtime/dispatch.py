"""The outbox dispatcher: deliver queued sends through the channel adapters.

A send is rendered and queued in the same transaction as the step that made it
(engine/runtime/runner.py); the dispatcher admits it, then delivers it:

1. **Admission, in one transaction.** `claim_outbox` leases due rows (pending,
   `next_attempt_at` <= now) by pushing their `next_attempt_at` to now + lease and
   counting the attempt; it takes each profile it claims with *all* its due sends, and
   on PostgreSQL locks the profiles, so a profile's competing sends are decided together
   by one process. They are decided highest journey `priority` first, then oldest
   first. Each row is checked against the journey as it is *now*: a send whose
   enrollment exited after it was queued (an exit_when while it waited for quiet hours
   to end), or whose profile was merged into another, is not delivered; then the policy
   (engine/runtime/policy.py) may defer it (quiet hours, a cap with `on_cap: delay`) or
   skip it (no consent, a cap with `on_cap: drop`), caps counted from the sends the
   store *admitted* in the window plus those admitted so far in this admission; last, a
   send with no address for its channel is skipped as `no_address`, and one to an
   address on the suppression list (engine/runtime/suppression.py) as `suppressed`. An
   admitted send is marked so (it counts against caps from then on). Each outcome is in
   the decision log.
2. **Delivery, outside any transaction.** Before each send (or `send_batch` chunk)
   the claim's lease must outlast the longest the adapter says it can take, or one
   UPDATE pushes it on for the rows still this claim's; a row another dispatcher took
   over meanwhile is not sent, nor written (engine/runtime/lease.py). Success marks
   the row `sent`. A `DeliveryError(permanent=True)`, or no adapter, marks it
   `failed` with the reason; one that is a bounce (a 5xx from the receiving server) also
   suppresses the address. Anything else is transient: the row goes back to pending
   with an exponential backoff, until `max_attempts`, after which it is `failed`; an
   admitted row is not decided again when retried.
3. The outcomes of a chunk of rows are written in one transaction; one that fails
   because the database dropped the connection is written again when nothing committed,
   which the database is asked when it was the COMMIT that failed (outcomes.py).

An exception in our own code while handling one row (hostile data in a profile, a
bug) is that row's alone: it is retried with backoff like a transient failure, then
parked with its error and stack (`journeyman failures`); the other rows go on.

Delivery is therefore at least once, with an idempotency key: a process that dies
between a channel's success and the chunk's write, or a database away for longer than
the write's pauses (3.2 s), leaves the rows leased; when the lease runs out they are
sent again with the same keys (email adapters derive the Message-ID from it, webhooks
send it as a header), so a receiver can drop the duplicate. In the normal, retry and
slow paths nothing is sent twice, nor when the database drops its connections for a
moment (at any statement of the write, its COMMIT included); a send that outlasts its
own adapter's bound (a paused process) may be, once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from engine.core.times import iso
from engine.ports import (
    BatchChannel,
    Channel,
    Clock,
    Decision,
    DeliveryError,
    OutboxEntry,
    Store,
)
from engine.runtime.errortext import error_text, logged_text, stack_text
from engine.runtime.holds import Failed, Failing
from engine.runtime.lease import ClaimLease, SendBounds, batch_results
from engine.runtime.logids import log_ids
from engine.runtime.metrics import Metrics
from engine.runtime.outcomes import Chunk, write_outcomes
from engine.runtime.policy import PolicyGate, with_waiting
from engine.runtime.rendering import ADDRESS_TRAITS
from engine.runtime.retry import RetryPolicy
from engine.runtime.suppression import (
    HARD_BOUNCE,
    SOFT_BOUNCE,
    ProviderEvent,
    record_delivery_problem,
)
from engine.values import CHANNEL_UNAVAILABLE, FORGOTTEN, RELEASED

log = logging.getLogger("journeyman.dispatch")


SEND_CHUNK = 20  # messages per send_batch call
# Sends an admission claims while the API is busy (`Store.writers_lately`), instead of
# `batch`: on SQLite the admission holds the write lock, and a request waits for it.
# 20 cut the API's p99 a little more during a storm of 100,000 timers (34 ms against
# 38) but took its sends 131 s instead of 88 (docs/benchmarks.md).
BUSY_API_CLAIM = 50


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    held: int = 0  # not tried: their channel had just failed in the same batch
    parked: int = 0
    lost: int = 0  # not tried: the claim's lease could not be kept (engine/runtime/lease.py)
    extended: int = 0  # leases pushed on before a send they would not have covered
    released: int = 0  # not tried: the process stops; due again now, for the other workers


class Dispatcher:
    def __init__(self, store: Store, channels: Mapping[str, Channel], clock: Clock, *,
                 retry: RetryPolicy | None = None, batch: int = 100,
                 lease: timedelta = timedelta(minutes=5), gate: PolicyGate | None = None,
                 decision_log: bool = True) -> None:
        self.store = store
        self.decision_log = decision_log  # also record each send that went out
        self.gate = gate
        self.channels = dict(channels)
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self.batch = batch
        self.lease = lease
        self.stats = DispatchStats()
        self.metrics: Metrics | None = None
        # Set when the process stops (SIGTERM: engine/service.py): a run ends after the
        # claim it is delivering, not after the whole backlog. A worker with thousands of
        # sends due behind a slow provider outlived systemd's and compose's 60 s stop
        # timeout, and the SIGKILL left its claim leased and sent it again (2026-12-07).
        self.stopping: threading.Event | None = None
        # isinstance() against a runtime-checkable Protocol inspects every attribute
        # (~30 us); asked once per adapter, not once per send.
        self._batching: dict[int, tuple[Channel, bool]] = {}
        self._bounds = SendBounds()
        self.pause: Callable[[float], None] = time.sleep  # between a failed write's tries

    def _count(self, entry: OutboxEntry, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.sends.labels(entry.channel, outcome).inc()

    def run(self) -> datetime | None:
        """Deliver every send due now; returns when the outbox next has work (a loop's
        next run, engine/service.py). A run that found nothing due answers with the look
        it began with (until 2026-12-06 the loop read `next_outbox_at` once more)."""
        _, looked = self._dispatch()
        return self.store.next_outbox_at() if looked is None else looked[0]

    def dispatch_due(self) -> int:
        """Deliver every send due now; returns how many rows were tried."""
        return self._dispatch()[0]

    def _dispatch(self) -> tuple[int, tuple[datetime | None] | None]:
        """The rows tried, and the look at the outbox if nothing was due (None is an
        answer of its own: nothing pending)."""
        tried = 0
        # A look first, by a read: a run that finds nothing due (another worker's
        # dispatcher took the sends it was woken for, the safety tick) then costs no
        # write transaction. On SQLite an admission waits for and holds the one write
        # turn: in journey_bench.py's race 11-15 of each lane worker's 32 admissions
        # found nothing, while the events' batches waited for the turn.
        due = self.store.next_outbox_at()
        if due is None or due > self.clock.now():
            return 0, (due,)
        while not self._stopping() and (admission := self._admit()) is not None:
            chunk, deliver = admission
            tried += chunk.claimed
            self._deliver(deliver, chunk)
            if chunk.short:
                # Its claim found fewer rows than it asked for: it took every row due
                # that no other dispatcher holds, so no claim that finds nothing. With N
                # workers each dispatcher woke for every queued send, and that empty
                # claim was a transaction per wake-up (on SQLite one that took the write
                # lock). What is due later, or held elsewhere, is the loop's next run
                # (`next_outbox_at`).
                break
        return tried, None

    def _stopping(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()

    # --- admission: one transaction -----------------------------------------------------

    def _admit(self) -> tuple[Chunk, list[OutboxEntry]] | None:
        """Claim due sends (each claimed profile with all its due sends) and decide each,
        highest priority first, in one transaction; returns the admitted ones to deliver
        (None when nothing is due). Caps count what the store admitted before and what
        this admission admits, send by send, so they hold within a batch and, the claim
        locking the profiles, across processes."""
        with self.store.transaction(stamped=True):  # no profile's state
            now = self.clock.now()
            # While the API is busy, a request that comes meanwhile waits for the whole
            # admission (claimed sends are decided, not put back): a short one.
            limit = (min(self.batch, BUSY_API_CLAIM) if self.store.writers_lately()
                     else self.batch)
            entries = self.store.claim_outbox(now, limit, self.lease)
            if not entries:
                return None
            short = self.store.claim_was_short()
            ids = {e.profile_id for e in entries}
            waiting = self.store.waiting_consents(ids)  # a withdrawal not handled yet
            chunk = Chunk(self.store.enrollment_outlines({e.enrollment_id for e in entries}),
                          {pid: with_waiting(p, waiting.get(pid, ()))
                           for pid, p in self.store.load_profiles(ids).items()},
                          claimed=len(entries), short=short)
            chunk.suppressed = set(self.store.suppressed({e.to for e in entries if e.to}))
            self._load_admitted(entries, now, chunk)
            deliver: list[OutboxEntry] = []
            for entry in self._in_turn(entries):
                try:
                    if self._admit_one(entry, now, chunk):
                        deliver.append(entry)
                except Exception as exc:  # our own code, on this row's data: this row alone
                    self._broken(entry, exc, chunk)
            self._record_outcomes(chunk)
            chunk.forget()  # the claim commits with them, or nothing is sent
            chunk.lease = ClaimLease(self.store, self.lease, now + self.lease,
                                     [entry.key for entry in deliver])
        return chunk, deliver

    def _in_turn(self, entries: list[OutboxEntry]) -> list[OutboxEntry]:
        """The order sends compete for a cap in: each profile's (caps are per profile)
        higher journey priority first, then in the order they were queued (stable, so a
        replay decides the same); profiles in the order they were claimed."""
        gate = self.gate
        if gate is None:
            return entries
        by_profile: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            by_profile.setdefault(entry.profile_id, []).append(entry)
        return [entry for group in by_profile.values() for entry in sorted(
            group, key=lambda e: (-gate.priority(e.journey), e.created_at))]

    def _load_admitted(self, entries: list[OutboxEntry], now: datetime, chunk: Chunk) -> None:
        if self.gate is None or not self.gate.longest_cap:
            return
        admitted = self.store.admitted_since({e.profile_id for e in entries},
                                             now - self.gate.longest_cap)
        for profile_id, sends in admitted.items():
            for channel, at in sends:
                chunk.admitted.setdefault((profile_id, channel), []).append(at)
        for times in chunk.admitted.values():
            times.sort()

    def _admit_one(self, entry: OutboxEntry, now: datetime, chunk: Chunk) -> bool:
        """Decide one send; True to deliver it. Anything else is settled here (skipped as
        no longer wanted, deferred or skipped by the policy, no address, no adapter)."""
        unwanted = self._unwanted(entry, chunk)
        if unwanted is not None:
            reason, details = unwanted
            self._skip(entry, reason, details, now, chunk)
            return False
        if self.gate is not None and not self._allowed(entry, now, chunk):
            return False
        if entry.channel in ADDRESS_TRAITS and not entry.to:  # a channel that needs one
            self._skip(entry, "no_address", {}, now, chunk)
            return False
        if entry.to == FORGOTTEN:  # someone's send to a person forgotten since it was queued
            self._skip(entry, "no_address", {"address": FORGOTTEN}, now, chunk)
            return False
        if entry.to and entry.to in chunk.suppressed:
            self._skip(entry, "suppressed", {"address": entry.to}, now, chunk)
            return False
        if entry.channel not in self.channels:
            self._fail(entry, f"no channel adapter for {entry.channel!r}", "no_channel", chunk)
            return False
        if entry.admitted_at is None:
            chunk.admissions.append((entry.key, now))
            chunk.admitted.setdefault((entry.profile_id, entry.channel), []).append(now)
        return True

    # --- delivery: outside any transaction ----------------------------------------------

    def _deliver(self, entries: list[OutboxEntry], chunk: Chunk) -> None:
        # What failed transiently in this claim: a channel, or one recipient of it
        # (engine/runtime/holds.py)
        failing = Failing()
        batched: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            try:
                if self._lost(entry, chunk):
                    continue
                if self._stopping():
                    self._hold(entry, chunk, released=True)
                    continue
                if held := failing.held(entry):
                    self._hold(entry, chunk, reason=held)
                    continue
                if self._bounced_meanwhile(entry, chunk):
                    continue
                channel = self.channels[entry.channel]
                if self._can_batch(channel):
                    batched.setdefault(entry.channel, []).append(entry)
                    continue
                if not self._keep_lease(chunk, channel, [entry]):
                    continue
                failing.note(entry.channel,
                             self._settle(entry, self._send_one(channel, entry), chunk))
            except Exception as exc:  # our own code, on this row's data: this row alone
                self._broken(entry, exc, chunk)
            if len(chunk.outcomes) >= SEND_CHUNK:
                self._write(chunk)
        for name, group in batched.items():
            self._send_batched(name, group, chunk, failing)
        self._write(chunk)

    def _can_batch(self, channel: Channel) -> bool:
        known = self._batching.get(id(channel))  # holding the adapter: its id stays its
        if known is None or known[0] is not channel:
            known = self._batching[id(channel)] = (channel, isinstance(channel, BatchChannel))
        return known[1]

    def _keep_lease(self, chunk: Chunk, channel: Channel,
                    rows: list[OutboxEntry]) -> list[OutboxEntry]:
        """Before sending these rows, the claim's lease outlasts it (lease.py): those ours."""
        assert chunk.lease is not None
        if chunk.lease.keep(self.clock.now(), self._bounds(channel, len(rows))):
            self.stats.extended += 1
        return [entry for entry in rows if not self._lost(entry, chunk)]

    def _lost(self, entry: OutboxEntry, chunk: Chunk) -> bool:
        """No longer the claim's (taken over, or not extended): not sent, nor written."""
        if chunk.lease is None or entry.key not in chunk.lease.lost:
            return False
        log.warning("send %s not sent: its claim no longer holds it (taken over after the "
                    "lease ran out, or not extended)", entry.key, extra=_ids(entry))
        self.stats.lost += 1
        self._count(entry, "lost")
        return True

    def _write(self, chunk: Chunk) -> None:
        """The chunk's outcomes, in one transaction. These sends have gone out: a write
        that fails leaves their rows leased, to go out again when the lease ends, so one
        that failed is written again when nothing committed, which the database is asked
        after a failed COMMIT (outcomes.py)."""
        if chunk.pending:
            write_outcomes(self.store, chunk, partial(self._record_outcomes, chunk),
                           self.pause)
            chunk.forget()

    def _record_outcomes(self, chunk: Chunk) -> None:
        """Write the chunk's outcomes so far, in the caller's transaction (the caller
        forgets them once it commits). A row has at most one of the outcomes after its
        admission."""
        self.store.mark_admitted_many(chunk.admissions)
        self.store.mark_sent_many(chunk.sent)
        self.store.mark_deferred_many(chunk.deferred)
        for outcome in chunk.outcomes:
            outcome()
        self.store.record_decisions(chunk.decisions)

    @staticmethod
    def _unwanted(entry: OutboxEntry,
                  chunk: Chunk) -> tuple[str, dict[str, Any]] | None:
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

    def _send_batched(self, name: str, group: list[OutboxEntry], chunk: Chunk,
                      failing: Failing) -> None:
        """Adapters with `send_batch` (email) get the rows in small chunks, so building
        one message overlaps sending the previous; the chunk bounds how many could be
        re-sent after a crash (at-least-once, same idempotency keys)."""
        channel = self.channels[name]
        assert isinstance(channel, BatchChannel)
        for start in range(0, len(group), SEND_CHUNK):
            if self._stopping():
                self._hold_rest(group[start:], chunk, released=True)
                return
            rows = self._keep_lease(chunk, channel, group[start:start + SEND_CHUNK])
            part = []
            for entry in rows:
                if held := failing.held(entry):
                    self._hold(entry, chunk, reason=held)
                elif not self._bounced_meanwhile(entry, chunk):
                    part.append(entry)
            if not part:
                self._write(chunk)
                continue
            now = self.clock.now()
            results = batch_results(channel, [entry.message(now) for entry in part])
            for entry, error in zip(part, results, strict=True):
                failing.note(name, self._settle(entry, error, chunk))
            self._write(chunk)
            if failing.channel_down(name):
                self._hold_rest(group[start + SEND_CHUNK:], chunk)
                return

    def _hold_rest(self, rows: list[OutboxEntry], chunk: Chunk, *,
                   released: bool = False) -> None:
        for entry in rows:
            if not self._lost(entry, chunk):
                self._hold(entry, chunk, released=released)

    def _bounced_meanwhile(self, entry: OutboxEntry, chunk: Chunk) -> bool:
        """An earlier send of this delivery hard-bounced at the same address (admission
        saw it unsuppressed): skipped as `suppressed`, not sent."""
        if entry.to is None or entry.to not in chunk.suppressed:
            return False
        self._skip(entry, "suppressed", {"address": entry.to}, self.clock.now(), chunk)
        return True

    def _settle(self, entry: OutboxEntry, error: Exception | None,
                chunk: Chunk) -> Failed | None:
        """Mark the row after a send; what failed transiently, if it did: the channel,
        or only this recipient (`DeliveryError.recipient`)."""
        if error is None:
            at = self.clock.now()
            chunk.sent.append((entry.key, at))
            if self.decision_log:
                chunk.decisions.append(Decision(
                    at, entry.profile_id, entry.journey, entry.step, "sent",
                    f"{entry.channel}: {entry.rendered.template}",
                    {"channel": entry.channel, "template": entry.rendered.template,
                     "key": entry.key, "attempts": entry.attempts}))
            self.stats.sent += 1
            self._count(entry, "sent")
            return None
        if isinstance(error, DeliveryError) and error.permanent:
            bounced = error.bounce and entry.to is not None
            self._fail(entry, _kept(error), "permanent_failure", chunk, logged=str(error))
            if bounced:
                assert entry.to is not None
                chunk.suppressed.add(entry.to)  # later rows of this claim too
                chunk.outcomes.append(partial(
                    record_delivery_problem, self.store,
                    ProviderEvent(HARD_BOUNCE, entry.to, entry.key, str(error)[:1000]),
                    source=f"channel:{entry.channel}", now=self.clock.now()))
            return None
        if isinstance(error, DeliveryError):
            text, logged = _kept(error), str(error)
        else:  # an adapter's bug or a network error
            text = logged = f"{type(error).__name__}: {error}"
        if isinstance(error, DeliveryError) and error.bounce and entry.to is not None:
            # A soft bounce (a 4xx to RCPT: mailbox full, greylisted): counted, retried.
            chunk.outcomes.append(partial(
                record_delivery_problem, self.store,
                ProviderEvent(SOFT_BOUNCE, entry.to, entry.key, text[:1000]),
                source=f"channel:{entry.channel}", now=self.clock.now()))
        self._retry(entry, text, chunk, logged)
        if isinstance(error, DeliveryError) and error.recipient:
            return entry.channel, entry.to
        return entry.channel, None

    def _hold(self, entry: OutboxEntry, chunk: Chunk, *, released: bool = False,
              reason: str = CHANNEL_UNAVAILABLE) -> None:
        """A channel that just failed (down, timing out) is not tried again for the rest
        of the batch: its rows wait for the backoff unattempted, so a batch cannot take
        longer than its lease while a server swallows connections (`reason`; a recipient
        that failed, `recipient_unavailable`, holds only its own rows). `released`: the process
        stops (SIGTERM), the row is due again now, unattempted, for the other workers (a
        claim delivered to its end behind a slow provider outlived the 60 s a stop gets
        before its SIGKILL, which left the claim leased and its sends unwritten)."""
        now = self.clock.now()
        if released:
            chunk.deferred.append((entry.key, now, RELEASED))
            self.stats.released += 1
        else:
            chunk.deferred.append((entry.key, now + self.retry.delay(entry.key, 1), reason))
            self.stats.held += 1
        self._count(entry, "released" if released else "held")

    def _allowed(self, entry: OutboxEntry, now: datetime, chunk: Chunk) -> bool:
        """Apply the policy; a deferral or skip is recorded here. Frequency caps count
        the sends admitted before this admission and in it so far; a send admitted
        already (now retried) has been counted and is not capped again."""
        assert self.gate is not None

        def admitted_since(profile_id: str, channel: str, since: datetime) -> list[datetime]:
            if entry.admitted_at is not None:
                return []
            return [at for at in chunk.admitted.get((profile_id, channel), ()) if at > since]

        verdict = self.gate.decide(entry, chunk.profiles.get(entry.profile_id), now,
                                   admitted_since)
        if verdict.action == "send":
            return True
        details = dict(verdict.details)
        if verdict.action == "defer":
            assert verdict.until is not None
            chunk.deferred.append((entry.key, verdict.until, verdict.reason))
            details["until"] = verdict.until.isoformat()
            self.stats.deferred += 1
            self._count(entry, "deferred")
            self._decide(entry, "deferred", verdict.reason, details, now=now, chunk=chunk)
        else:
            self._skip(entry, verdict.reason, details, now, chunk)
        return False

    def _skip(self, entry: OutboxEntry, reason: str, details: Mapping[str, Any],
              now: datetime, chunk: Chunk) -> None:
        chunk.outcome(entry.key, partial(self.store.mark_skipped, entry.key, reason))
        self.stats.skipped += 1
        self._count(entry, "skipped")
        self._decide(entry, "skipped", reason, details, now=now, chunk=chunk)

    def _decide(self, entry: OutboxEntry, what: str, reason: str, details: Mapping[str, Any],
                *, now: datetime, chunk: Chunk) -> None:
        chunk.decisions.append(Decision(now, entry.profile_id, entry.journey, entry.step, what,
                                        reason, {"channel": entry.channel, **details}))

    def _retry(self, entry: OutboxEntry, error: str, chunk: Chunk,
               logged: str | None = None) -> None:
        """`error` is kept with the row; `logged` (default `error`) is what the log says:
        a provider's words (`DeliveryError.detail`) are kept, not logged."""
        logged = error if logged is None else logged
        if entry.attempts >= self.retry.max_attempts:
            gave_up = f"gave up after {entry.attempts} attempts: "
            self._fail(entry, gave_up + error, "retries_exhausted", chunk,
                       logged=gave_up + logged)
            return
        when = self.clock.now() + self.retry.delay(entry.key, entry.attempts)
        log.warning("send %s failed (attempt %d), retrying at %s: %s", entry.key,
                    entry.attempts, when.isoformat(), logged, extra=_ids(entry))
        chunk.outcome(entry.key, partial(self.store.mark_retry, entry.key, when, error),
                      at=when)
        self.stats.retried += 1
        self._count(entry, "retried")

    def _fail(self, entry: OutboxEntry, error: str, reason: str, chunk: Chunk, *,
              logged: str | None = None) -> None:
        now = self.clock.now()
        log.error("send %s failed for good: %s", entry.key, error if logged is None else logged,
                  extra=_ids(entry))
        chunk.outcome(entry.key, partial(self.store.mark_failed, entry.key, now, error))
        self._decide(entry, "failed", reason, {"error": error}, now=now, chunk=chunk)
        self.stats.failed += 1
        self._count(entry, "failed")

    def _broken(self, entry: OutboxEntry, exc: Exception, chunk: Chunk) -> None:
        """Our own code failed on this row: retry it with backoff, then park it."""
        error = error_text(exc)
        now = self.clock.now()
        if entry.attempts >= self.retry.max_attempts:
            stack = stack_text(exc)
            log.error("send %s parked after %d attempts: %s", entry.key, entry.attempts,
                      logged_text(exc), extra=_ids(entry))
            chunk.outcome(entry.key, partial(
                self.store.park, "send", entry.key, profile_id=entry.profile_id,
                journey=entry.journey, step=entry.step, error=error, stack=stack,
                attempts=entry.attempts, at=now))
            self.stats.parked += 1
            self._count(entry, "parked")
            return
        self._retry(entry, error, chunk, logged=logged_text(exc))


def _kept(error: DeliveryError) -> str:
    """What the row keeps of a channel's error: its message and the provider's detail."""
    return f"{error}: {error.detail}" if error.detail else str(error)


def _ids(entry: OutboxEntry) -> dict[str, str]:
    """A log line's ids of a send (engine/runtime/logids.py)."""
    return log_ids("send", entry.profile_id, entry.journey, entry.step, entry.key)
