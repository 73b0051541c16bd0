"""The worker loop: claim a batch of inbox events, handle each in its own transaction,
fire due timers; repeat. Run several (`journeyman worker`) to scale out.

Crash safety comes from the store: an event's effects (enrollment rows, timers, outbox
rows) commit in the same transaction that acks its inbox row; a worker killed before
the commit leaves the row leased, and once the lease expires another worker handles it.
A timer is claimed and fired inside one transaction, so it fires once or not at all.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from engine.ports import Clock, Store
from engine.runtime.dispatch import Dispatcher
from engine.runtime.runner import Runner

log = logging.getLogger("journeyman.worker")


@dataclass
class Stats:
    events: int = 0
    timers: int = 0
    failures: int = 0


class Worker:
    def __init__(self, runner: Runner, store: Store, clock: Clock, *, name: str,
                 batch: int = 200, lease: timedelta = timedelta(seconds=60),
                 dispatcher: Dispatcher | None = None) -> None:
        self.runner = runner
        self.dispatcher = dispatcher
        self.store = store
        self.clock = clock
        self.name = name
        self.batch = batch
        self.lease = lease
        self.stats = Stats()
        # The runner is not thread-safe: events and timers take turns on it when the
        # event loop and the timer ticker run in different threads (engine/service.py).
        self._runner_lock = threading.Lock()

    def handle_events(self) -> int:
        items = self.store.claim_inbox(self.name, self.batch, self.lease, self.clock.now())
        for item in items:
            try:
                with self._runner_lock, self.store.transaction():
                    self.runner.handle(item.event)
                    self.store.ack_inbox([item.id])
                self.stats.events += 1
            except Exception:
                # Rolled back; the lease expires and the event is retried.
                self.stats.failures += 1
                log.exception("event %s failed; it will be retried", item.id)
        return len(items)

    def fire_timers(self) -> int:
        with self._runner_lock, self.store.transaction():
            fired = self.runner.fire_due_timers()
        self.stats.timers += fired
        return fired

    def dispatch(self) -> int:
        """Deliver due sends, if this worker was given a dispatcher (`journeyman serve`
        runs its dispatcher as a scheduled job of its own instead)."""
        return self.dispatcher.dispatch_due() if self.dispatcher is not None else 0

    def run_once(self) -> int:
        return self.handle_events() + self.fire_timers() + self.dispatch()

    def run(self, stop: threading.Event, idle: float = 0.1) -> None:
        while not stop.is_set():
            if self.run_once() == 0:
                stop.wait(idle)

