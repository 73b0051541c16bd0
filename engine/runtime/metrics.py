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

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.ports import Store
from engine.runtime.shared_call import SharedCall

log = logging.getLogger("journeyman.metrics")

K = TypeVar("K")
LEVELS_TIMEOUT_S = 5.0  # a scrape waits this long at most for the store's levels

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# The label values every process shows from its first scrape, at 0 until counted: a
# series that appears only at its first increment hides that increment from
# `increase()` and `rate()`, and an alert on it cannot tell "none yet" from "not
# scraped". Channels, journeys and sources are added where they are known.
FAILURE_KINDS = ("event", "timer")  # journeyman_failures_total, journeyman_parked_total
# journeyman_transient_errors_total: the worker's rounds and the service's loops
TRANSIENT_KINDS = ("events", "timers", "outbox", "retention")
BATCH_KINDS = ("events", "timers")
SEND_OUTCOMES = ("sent", "retried", "deferred", "held", "skipped", "failed", "parked", "lost",
                 "released")
ENGAGEMENTS = (("click", "person"), ("click", "scanner"), ("open", "person"),
               ("open", "scanner"))
INBOX_STATUSES = ("pending", "parked")
OUTBOX_STATUSES = ("pending", "sent", "skipped", "failed", "parked")
ENROLLMENT_STATUSES = ("active", "completed", "exited")


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
        self.engagements_unrecorded = Counter(
            "journeyman_engagements_unrecorded",
            "Tracked clicks and opens answered but not recorded: over the bound per link "
            "and hour (a replayed link; docs/engagement.md).", ["kind"], registry=r)
        self.untracked_links = Counter(
            "journeyman_untracked_links",
            "Links of rendered emails sent untracked: their host comes from data and is "
            "not trusted (docs/engagement.md).", registry=r)
        self.batch_size = Histogram("journeyman_batch_size", "Items per batch.", ["kind"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.handling_lag = Histogram(
            "journeyman_handling_lag_seconds",
            "From an event's arrival at the API to the end of its handling.",
            buckets=LAG_BUCKETS, registry=r)
        for kind in FAILURE_KINDS:
            self.failures.labels(kind)
            self.parked.labels(kind)
        for kind in TRANSIENT_KINDS:
            self.transient_errors.labels(kind)
        for kind in BATCH_KINDS:
            self.batch_size.labels(kind)
        for kind, by in ENGAGEMENTS:
            self.engagements.labels(kind, by)
        for kind in ("click", "open"):
            self.engagements_unrecorded.labels(kind)
        self._levels: _StoreLevels | None = None
        if store is not None:
            self._levels = _StoreLevels(store, cache_seconds, now)
            r.register(self._levels)

    def expect_channels(self, channels: Iterable[str]) -> None:
        """Show every outcome of these channels' sends from the first scrape."""
        for channel in channels:
            for outcome in SEND_OUTCOMES:
                self.sends.labels(channel, outcome)

    def expect_journeys(self, journeys: Iterable[str]) -> None:
        """Show these journeys' enrollments and sends by status from the first scrape
        (the store's levels name only what it holds)."""
        if self._levels is not None:
            self._levels.journeys.update(journeys)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StoreLevels(Collector):
    """The queues' and journeys' levels, read from the store at scrape time: one read at
    a time, kept `cache_seconds`, waited for at most LEVELS_TIMEOUT_S. When the store
    cannot be read (the database is away, or slow), the scrape still answers, with the
    process's own counters and `journeyman_store_levels_up 0` instead of the levels: it
    answered 500, and the counters that tell of the outage could not be read during it."""

    def __init__(self, store: Store, cache_seconds: float,
                 now: Callable[[], Any] | None) -> None:
        self.store = store
        self.now = now
        self.journeys: set[str] = set()  # shown at 0 when the store holds none of theirs
        self._levels = SharedCall(self._read, timeout=LEVELS_TIMEOUT_S, fresh=cache_seconds,
                                  name="metrics-levels")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families = self._levels()
        except Exception as exc:  # TimeoutError too: say so, and answer without them
            log.warning("/metrics: the store's levels could not be read (%s)",
                        type(exc.__cause__ or exc).__name__)
            families = []
        yield GaugeMetricFamily("journeyman_store_levels_up",
                                "1 when the levels below were read from the store, 0 when "
                                "it could not be read (the database is away or slow).",
                                value=1 if families else 0)
        yield from families

    def _read(self) -> list[GaugeMetricFamily]:
        levels = self.store.levels(self.now() if self.now is not None else None)
        inbox = GaugeMetricFamily("journeyman_inbox_events", "Inbox events by status.",
                                  labels=["status"])
        for status, n in sorted(_with_zeros(levels.inbox, INBOX_STATUSES).items()):
            inbox.add_metric([status], n)
        timers = GaugeMetricFamily("journeyman_timers_pending", "Timers waiting to fire.",
                                   value=levels.timers_pending)
        overdue = GaugeMetricFamily("journeyman_timers_overdue",
                                    "Timers due more than a minute ago and not fired yet.",
                                    value=levels.timers_overdue)
        outbox = GaugeMetricFamily("journeyman_outbox_rows", "Outbox rows by status.",
                                   labels=["status"])
        for status, n in sorted(_with_zeros(levels.outbox, OUTBOX_STATUSES).items()):
            outbox.add_metric([status], n)
        enrollments = GaugeMetricFamily("journeyman_journey_enrollments",
                                        "Enrollments by journey and status.",
                                        labels=["journey", "status"])
        every = {(journey, status) for journey in self.journeys
                 for status in ENROLLMENT_STATUSES}
        for (journey, status), n in sorted(_with_zeros(levels.enrollments, every).items()):
            enrollments.add_metric([journey, status], n)
        sends = GaugeMetricFamily("journeyman_journey_sends", "Outbox rows by journey and status.",
                                  labels=["journey", "status"])
        every_send = {(journey, status) for journey in self.journeys
                      for status in OUTBOX_STATUSES}
        for (journey, status), n in sorted(_with_zeros(levels.sends, every_send).items()):
            sends.add_metric([journey, status], n)
        return [inbox, timers, overdue, outbox, enrollments, sends]


def _with_zeros(counts: Mapping[K, int], expected: Iterable[K]) -> dict[K, int]:
    """`counts` with every expected key that it lacks at 0."""
    return dict.fromkeys(expected, 0) | dict(counts)
