"""Each journey's KPIs, per step and per split variant (docs/engagement.md has every
definition): `journeyman stats`, `GET /v1/journeys/{id}/kpis`.

Read from the store (a report, never on the hot path): the journey's enrollments, its
outbox rows (what its send steps queued), the engagements of those messages (clicks,
opens, opt-outs, bounces) and its recorded goals. A goal is attributed by last touch:
to the last message of the same enrollment delivered at or before the goal.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.core.model import Enrollment, RecordGoal
from engine.core.times import iso
from engine.ports import Engagement, OutboxRecord, Store
from journeys.model import KPI_COUNTS, CustomKpi, Journey

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPENS_NOTE = ("an upper bound: mail privacy proxies (Apple Mail Privacy Protection, Gmail's "
              "image proxy) fetch the pixel of every message they receive, read or not; "
              "CTR is computed from clicks, never from opens")
ATTRIBUTION = "last_touch"


@dataclass
class Tally:
    """The counts of one group of messages and enrollments (a journey, a step, a
    variant); `rates()` derives the ratios."""

    enrollments: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)
    skipped: int = 0
    suppressed: int = 0
    failed: int = 0
    opened: set[str] = field(default_factory=set)
    opens: int = 0
    clicked: set[str] = field(default_factory=set)
    clicks: int = 0
    scanner_clicks: int = 0
    opted_out: set[str] = field(default_factory=set)
    bounced: set[str] = field(default_factory=set)
    soft_bounces: int = 0
    complained: set[str] = field(default_factory=set)
    converted: set[str] = field(default_factory=set)  # enrollments that reached the goal
    attributed: int = 0
    revenue: float = 0.0
    attributable_revenue: float = 0.0
    times_to_goal: list[float] = field(default_factory=list)
    has_entries: bool = True  # a step has messages, not enrollments of its own

    def counts(self) -> dict[str, Any]:
        entered = len(self.enrollments)
        found = {
            "entered": entered, "completed": len(self.completed),
            "drop_offs": entered - len(self.converted),
            "sends": len(self.messages), "delivered": len(self.delivered),
            "skipped": self.skipped, "suppressed": self.suppressed, "failed": self.failed,
            "opened": len(self.opened), "opens": self.opens, "clicked": len(self.clicked),
            "clicks": self.clicks, "scanner_clicks": self.scanner_clicks,
            "opt_outs": len(self.opted_out), "bounces": len(self.bounced),
            "soft_bounces": self.soft_bounces, "complaints": len(self.complained),
            "conversions": len(self.converted), "attributed_conversions": self.attributed,
            "revenue": round(self.revenue, 6),
            "attributable_revenue": round(self.attributable_revenue, 6),
        }
        if not self.has_entries:
            for name in ("entered", "completed", "drop_offs", "conversions", "revenue"):
                del found[name]
        return found

    def rates(self) -> dict[str, float | None]:
        delivered = len(self.delivered)
        found = {
            "open_rate": ratio(len(self.opened), delivered),
            "ctr": ratio(len(self.clicked), delivered),
            "click_to_open": ratio(len(self.clicked), len(self.opened)),
            "opt_out_rate": ratio(len(self.opted_out), delivered),
            "bounce_rate": ratio(len(self.bounced), delivered + self.failed),
        }
        if self.has_entries:
            entered = len(self.enrollments)
            found["conversion"] = ratio(len(self.converted), entered)
            found["completion_rate"] = ratio(len(self.completed), entered)
            found["median_time_to_goal"] = (round(statistics.median(self.times_to_goal), 3)
                                            if self.times_to_goal else None)
        else:
            found["conversion"] = ratio(self.attributed, delivered)
        return found

    def report(self) -> dict[str, Any]:
        return {"counts": self.counts(), "rates": self.rates()}


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None


def variant_groups(enrollment: Enrollment | None) -> list[tuple[str, str]]:
    """(split step, variant) pairs the enrollment went through."""
    return sorted(enrollment.variants.items()) if enrollment is not None else []


def journey_stats(store: Store, journey: Journey, *,
                  since: datetime | None = None) -> dict[str, Any]:
    """The journey's report: its counts and rates, its declared KPIs, and the same per
    step and per split variant."""
    jid = journey.journey
    start = since or EPOCH
    # Each read is the journey's rows only (SQL: WHERE journey = ..., on its indexes).
    enrollments = {e.id: e for e in store.entered_since(start, journey=jid)}
    records = [r for r in store.outbox_records(journey=jid)
               if r.entry.enrollment_id in enrollments]
    goals = [g for g in store.recorded_goals(journey=jid) if g.enrollment_id in enrollments]
    engagements = [e for e in store.engagements(jid) if e.at >= start]
    whole, steps, variants = _tally(enrollments, records, goals, engagements)
    report = whole.report()
    return {
        "journey": jid, "version": journey.version, "since": iso(since) if since else None,
        "attribution": ATTRIBUTION, "notes": {"open_rate": OPENS_NOTE},
        "kpis": declared_kpis(journey, report),
        **report,
        "steps": {step: tally.report() for step, tally in sorted(steps.items())},
        "variants": {split: {name: tally.report() for name, tally in sorted(group.items())}
                     for split, group in sorted(variants.items())},
    }


def _tally(enrollments: Mapping[str, Enrollment], records: Sequence[OutboxRecord],
           goals: Iterable[RecordGoal], engagements: Iterable[Engagement],
           ) -> tuple[Tally, dict[str, Tally], dict[str, dict[str, Tally]]]:
    whole = Tally()
    steps: dict[str, Tally] = {}
    variants: dict[str, dict[str, Tally]] = {}

    def groups(enrollment_id: str, step: str | None) -> list[Tally]:
        found = [whole]
        if step is not None:
            found.append(steps.setdefault(step, Tally(has_entries=False)))
        for split, name in variant_groups(enrollments.get(enrollment_id)):
            found.append(variants.setdefault(split, {}).setdefault(name, Tally()))
        return found

    for enrollment in enrollments.values():
        for tally in groups(enrollment.id, None):
            tally.enrollments.add(enrollment.id)
            if enrollment.status != "active" and enrollment.exit_reason == "completed":
                tally.completed.add(enrollment.id)

    by_key: dict[str, OutboxRecord] = {}
    sent: dict[str, list[OutboxRecord]] = {}  # enrollment -> its delivered messages
    for record in records:
        entry = record.entry
        by_key[entry.key] = record
        for tally in groups(entry.enrollment_id, entry.step):
            tally.messages.add(entry.key)
            if record.status == "sent":
                tally.delivered.add(entry.key)
            elif record.status == "skipped":
                tally.skipped += 1
                tally.suppressed += record.last_error == "suppressed"
            elif record.status == "failed":
                tally.failed += 1
        if record.status == "sent" and record.sent_at is not None:
            sent.setdefault(entry.enrollment_id, []).append(record)

    for engagement in engagements:
        message = by_key.get(engagement.message_key)
        if message is None:
            continue
        for tally in groups(message.entry.enrollment_id, message.entry.step):
            _count(tally, engagement)

    for goal in goals:
        enrollment = enrollments[goal.enrollment_id]
        value = goal.value or 0.0
        touch = _last_touch(sent.get(goal.enrollment_id, []), goal.at)
        for tally in groups(goal.enrollment_id, None):
            tally.converted.add(goal.enrollment_id)
            tally.revenue += value
            tally.times_to_goal.append((goal.at - enrollment.entered_at).total_seconds())
        if touch is not None:
            for tally in groups(goal.enrollment_id, touch.entry.step):
                tally.attributed += 1
                tally.attributable_revenue += value
    return whole, steps, variants


def _count(tally: Tally, engagement: Engagement) -> None:
    key = engagement.message_key
    if engagement.kind == "click":
        if engagement.human:
            tally.clicked.add(key)
            tally.clicks += 1
        else:
            tally.scanner_clicks += 1
    elif engagement.kind == "open":
        tally.opened.add(key)
        tally.opens += 1
    elif engagement.kind == "unsubscribe":
        tally.opted_out.add(key)
    elif engagement.kind == "bounce":
        tally.bounced.add(key)
    elif engagement.kind == "soft_bounce":
        tally.soft_bounces += 1
    elif engagement.kind == "complaint":
        tally.complained.add(key)


def _last_touch(delivered: Sequence[OutboxRecord], at: datetime) -> OutboxRecord | None:
    """The last message delivered at or before `at` (ties: the later queued)."""
    before = [r for r in delivered if r.sent_at is not None and r.sent_at <= at]
    return before[-1] if before else None


_BUILTIN_SOURCES = {
    "sends": ("counts", "sends"), "delivered": ("counts", "delivered"),
    "open_rate": ("rates", "open_rate"), "ctr": ("rates", "ctr"),
    "click_to_open": ("rates", "click_to_open"), "conversion": ("rates", "conversion"),
    "attributable_revenue": ("counts", "attributable_revenue"),
    "opt_out_rate": ("rates", "opt_out_rate"), "bounce_rate": ("rates", "bounce_rate"),
    "completion_rate": ("rates", "completion_rate"),
    "median_time_to_goal": ("rates", "median_time_to_goal"),
}


def declared_kpis(journey: Journey, report: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the KPIs the journey's `kpis:` names, in its order."""
    found: dict[str, Any] = {}
    for kpi in journey.kpis:
        if isinstance(kpi, CustomKpi):
            top, bottom = (report["counts"].get(name) for name in kpi.ratio)
            found[kpi.name] = ratio(top, bottom) if top is not None and bottom else None
        else:
            part, name = _BUILTIN_SOURCES[kpi]
            found[kpi] = report[part][name]
    return found


__all__ = ["ATTRIBUTION", "KPI_COUNTS", "OPENS_NOTE", "Tally", "journey_stats"]
