"""Prometheus metrics of one process (`GET /metrics` on `serve`, and on `worker
--http-port`).

Counters and histograms are counted where the work happens (ingest, the worker, the
dispatcher); the levels of the queues and journeys (inbox, timers pending and overdue,
outbox by status, enrollments and sends per journey) are read from the store when
scraped, at most every `cache_seconds`, so a scrape costs a few grouped queries and
many scrapers cost no more than one.

Every name starts with `journeyman_`. Labels carry ids (journey, channel, status, kind),
never a person's data.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.ports import Store

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self, store: Store | None = None, *, cache_seconds: float = 5.0,
                 now: Callable[[], Any] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_ingested = Counter("journeyman_events_ingested",
                                       "Events accepted by the API (new, not duplicates).",
                                       ["source"], registry=r)
        self.events_handled = Counter("journeyman_events_handled",
                                      "Inbox events handled by this process.", registry=r)
        self.timers_fired = Counter("journeyman_timers_fired",
                                    "Timers fired by this process.", registry=r)
        self.failures = Counter("journeyman_failures",
                                "Events, timers and sends that failed an attempt.",
                                ["kind"], registry=r)
        self.parked = Counter("journeyman_parked", "Items parked after too many failures.",
                              ["kind"], registry=r)
        self.transient_errors = Counter(
            "journeyman_transient_errors",
            "Transactions rolled back by a transient database error (locked, deadlock, "
            "connection lost), by kind of work; tried again after a growing wait.",
            ["kind"], registry=r)
        self.batches_redone = Counter(
            "journeyman_batches_redone",
            "SQLite: batches handled outside the write lock whose state someone wrote "
            "meanwhile, handled again inside it.", registry=r)
        self.sends = Counter("journeyman_sends", "Outbox rows settled by this process.",
                             ["channel", "outcome"], registry=r)
        self.engagements = Counter("journeyman_engagements",
                                   "Tracked clicks and opens; `by` is person or scanner "
                                   "(filtered by the scanner rule, docs/engagement.md).",
                                   ["kind", "by"], registry=r)
        self.batch_size = Histogram("journeyman_batch_size", "Items per batch.", ["kind"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.handling_lag = Histogram(
            "journeyman_handling_lag_seconds",
            "From an event's arrival at the API to the end of its handling.",
            buckets=LAG_BUCKETS, registry=r)
        if store is not None:
            r.register(_StoreLevels(store, cache_seconds, now))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreLevels(Collector):
    """The queues' and journeys' levels, read from the store at scrape time (cached)."""

    def __init__(self, store: Store, cache_seconds: float,
                 now: Callable[[], Any] | None) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.now = now
        self._lock = threading.Lock()
        self._cached: tuple[float, list[GaugeMetricFamily]] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.cache_seconds:
                self._cached = (time.monotonic(), self._read())
            yield from self._cached[1]

    def _read(self) -> list[GaugeMetricFamily]:
        levels = self.store.levels(self.now() if self.now is not None else None)
        inbox = GaugeMetricFamily("journeyman_inbox_events", "Inbox events by status.",
                                  labels=["status"])
        for status, n in sorted(levels.inbox.items()):
            inbox.add_metric([status], n)
        timers = GaugeMetricFamily("journeyman_timers_pending", "Timers waiting to fire.",
                                   value=levels.timers_pending)
        overdue = GaugeMetricFamily("journeyman_timers_overdue",
                                    "Timers due more than a minute ago and not fired yet.",
                                    value=levels.timers_overdue)
        outbox = GaugeMetricFamily("journeyman_outbox_rows", "Outbox rows by status.",
                                   labels=["status"])
        for status, n in sorted(levels.outbox.items()):
            outbox.add_metric([status], n)
        enrollments = GaugeMetricFamily("journeyman_journey_enrollments",
                                        "Enrollments by journey and status.",
                                        labels=["journey", "status"])
        for (journey, status), n in sorted(levels.enrollments.items()):
            enrollments.add_metric([journey, status], n)
        sends = GaugeMetricFamily("journeyman_journey_sends", "Outbox rows by journey and status.",
                                  labels=["journey", "status"])
        for (journey, status), n in sorted(levels.sends.items()):
            sends.add_metric([journey, status], n)
        return [inbox, timers, overdue, outbox, enrollments, sends]
