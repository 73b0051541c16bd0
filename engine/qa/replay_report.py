"""The report of a replay: per journey and per step, counted from the throwaway store
the replay ran in (enrollments, goals, the outbox and the decision log), with each
journey's declared KPIs (engine/runtime/kpis.py; no clicks or opens in a replay).

The `--json` shape is a contract (shared/qa-contract.md §3, docs/testing.md): fields
may be added, never renamed or removed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.core.times import iso
from engine.runtime.kpis import journey_stats
from engine.testing import InMemoryEngine
from journeys.loaded import Library

# Always present in `skipped_by_reason` (zero or not), so a pipeline can read them.
# `quiet_hours` counts the sends quiet hours held back: they were deferred, not dropped.
KNOWN_REASONS = ("no_consent", "frequency_cap", "quiet_hours")


@dataclass
class StepCounts:
    entered: int = 0
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0

    def as_json(self) -> dict[str, int]:
        return {"entered": self.entered, "sent": self.sent, "skipped": self.skipped,
                "deferred": self.deferred, "failed": self.failed}


@dataclass
class JourneyCounts:
    enrolled: int = 0
    completed: int = 0
    exited: int = 0
    active: int = 0
    goals: int = 0
    steps: dict[str, StepCounts] = field(default_factory=dict)
    skipped_by_reason: Counter[str] = field(default_factory=Counter)
    deferred_by_reason: Counter[str] = field(default_factory=Counter)
    exit_reasons: Counter[str] = field(default_factory=Counter)
    variants: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    kpis: dict[str, Any] = field(default_factory=dict)  # the journey's declared `kpis:`

    @property
    def conversion(self) -> float:
        return round(self.goals / self.enrolled, 4) if self.enrolled else 0.0

    def as_json(self) -> dict[str, Any]:
        reasons = {reason: self.skipped_by_reason.get(reason, 0) for reason in KNOWN_REASONS}
        reasons.update(self.skipped_by_reason)
        return {"enrolled": self.enrolled, "completed": self.completed, "exited": self.exited,
                "active": self.active, "goals": self.goals, "conversion": self.conversion,
                "steps": {sid: counts.as_json() for sid, counts in self.steps.items()},
                "skipped_by_reason": reasons,
                "deferred_by_reason": dict(self.deferred_by_reason),
                "exit_reasons": dict(self.exit_reasons),
                "variants": self.variants,
                "kpis": self.kpis}


@dataclass
class ReplayReport:
    events: int
    profiles: int
    first: datetime
    last: datetime
    journeys: dict[str, JourneyCounts]
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    backend: str = ""
    ended_at: datetime | None = None
    unreadable: int = 0  # lines of the log (rows of --db) not replayed: not events at all
    unreadable_lines: list[str] = field(default_factory=list)  # why, the first 1,000
    # --db rows without a timestamp, replayed at the time the store received them
    received_at_used: int = 0
    # `--why USER`: that person's decisions (engine.runtime.why.Why), None for a stranger;
    # not in as_json (the command adds them, asked for)
    why: list[Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"events": self.events, "profiles": self.profiles, "from": iso(self.first),
                "to": iso(self.last),
                "ended_at": iso(self.ended_at) if self.ended_at else None,
                "rejected": sum(self.rejected.values()),
                "rejected_by_reason": self.rejected,
                "seconds": round(self.seconds, 3),
                "events_per_second": round(self.events / self.seconds, 1) if self.seconds
                else None,
                "backend": self.backend,
                "unreadable": self.unreadable,
                "unreadable_lines": self.unreadable_lines,
                "received_at_used": self.received_at_used,
                "journeys": {jid: counts.as_json() for jid, counts in self.journeys.items()}}


def build_report(eng: InMemoryEngine, library: Library, *, events: int, first: datetime,
                 last: datetime) -> ReplayReport:
    store = eng.store
    journeys = {jid: JourneyCounts(steps={s.id: StepCounts() for s in j.model.steps})
                for jid, j in library.journeys.items()}
    for enrollment in store.enrollment_rows.values():
        counts = journeys.get(enrollment.journey)
        if counts is None:
            continue
        counts.enrolled += 1
        # Completed: ran off the end, or reached an `exit: completed` step, as
        # `journeyman stats` counts it (engine/runtime/kpis.py); otherwise it left early.
        if enrollment.status == "active":
            counts.active += 1
        elif enrollment.status == "completed" or enrollment.exit_reason == "completed":
            counts.completed += 1
        else:
            counts.exited += 1
        if enrollment.exit_reason:
            counts.exit_reasons[enrollment.exit_reason] += 1
        for step_id, visits in enrollment.visits.items():
            if step_id in counts.steps:
                counts.steps[step_id].entered += visits
        for split_id, variant in enrollment.variants.items():
            cell = counts.variants.setdefault(split_id, {}).setdefault(
                variant, {"entered": 0, "goals": 0})
            cell["entered"] += 1
            cell["goals"] += enrollment.goal_reached_at is not None
    for goal in store.goals:
        if goal.journey in journeys:
            journeys[goal.journey].goals += 1
    for record in store.outbox.values():
        counts = journeys.get(record.entry.journey)
        step = counts.steps.get(record.entry.step) if counts else None
        if step is not None:
            step.sent += record.status == "sent"
            step.failed += record.status == "failed"
    for decision in store.decisions:
        counts = journeys.get(decision.journey)
        step = counts.steps.get(decision.step) if counts else None
        if counts is None or step is None:
            continue
        if decision.what == "skipped":
            step.skipped += 1
            counts.skipped_by_reason[decision.reason] += 1
        elif decision.what == "deferred":
            step.deferred += 1
            counts.deferred_by_reason[decision.reason] += 1
            if decision.reason == "quiet_hours":
                counts.skipped_by_reason["quiet_hours"] += 1
    for jid, counts in journeys.items():  # as `journeyman stats` computes them
        model = library.journeys[jid].model
        if model.kpis:
            counts.kpis = journey_stats(store, model)["kpis"]
    return ReplayReport(events, len(store.profiles), first, last, journeys)


def _count(n: int, noun: str) -> str:
    """`1 goal`, `2 goals`, `1,500 events`: the count and its noun, singular for one."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _number(value: Any) -> str:
    """A KPI as people read it: `21,193.5`, `0.4941`, never `2.119e+04` (two replays'
    reports are compared by eye); about four significant digits, at most two decimals
    past the units."""
    if value is None:
        return "-"
    if not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    digits = math.floor(math.log10(abs(value))) + 1  # before the point (<= 0 below 1)
    text = f"{value:,.{max(2, 4 - digits)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_report(report: ReplayReport) -> Iterator[str]:
    """The human report: a block per journey, a line per step."""
    rate = f", {report.events / report.seconds:,.0f} events/s" if report.seconds else ""
    refused = sum(report.rejected.values())
    # the events replayed: those read in the window less those refused (`events` in
    # --json counts every one read in the window)
    events = (f"{report.events - refused:,} of {_count(report.events, 'event')}" if refused
              else _count(report.events, "event"))
    people = _count(report.profiles, "profile")
    yield (f"replayed {events} of {people}, "
           f"{iso(report.first)} to {iso(report.last)} ({report.seconds:.1f}s{rate})")
    if report.unreadable:
        yield f"  {report.unreadable:,} unreadable, not replayed (each on stderr, with why)"
    if report.received_at_used:
        yield (f"  {report.received_at_used:,} event row(s) without a timestamp replayed at "
               "the time the store received them")
    if refused:
        yield f"  {_count(refused, 'event')} rejected, as the API would have:"
        for reason, count in sorted(report.rejected.items(), key=lambda kv: -kv[1])[:5]:
            yield f"    {count:>6}  {reason}"
    for jid, counts in report.journeys.items():
        yield ""
        yield (f"{jid}: {counts.enrolled:,} enrolled, {counts.completed:,} completed, "
               f"{counts.exited:,} exited, {counts.active:,} still in, "
               f"{_count(counts.goals, 'goal')} ({counts.conversion:.1%})")
        if not counts.enrolled:
            continue
        yield f"  {'step':<22}{'entered':>9}{'sent':>9}{'skipped':>9}{'deferred':>9}"
        for sid, step in counts.steps.items():
            yield (f"  {sid:<22}{step.entered:>9,}{step.sent:>9,}{step.skipped:>9,}"
                   f"{step.deferred:>9,}" + (f"  ({step.failed} failed)" if step.failed else ""))
        if counts.kpis:
            yield "  KPIs: " + ", ".join(f"{k} {_number(v)}" for k, v in counts.kpis.items())
        # quiet hours' deferrals are in `skipped_by_reason` (the contract's shape) but
        # those sends went out later: they are told apart from the sends never made
        dropped = {k: v for k, v in counts.skipped_by_reason.items()
                   if v and k not in counts.deferred_by_reason}
        if dropped:
            yield "  not sent: " + ", ".join(f"{k} {v:,}" for k, v in sorted(dropped.items()))
        later = {k: v for k, v in counts.deferred_by_reason.items() if v}
        if later:
            yield "  deferred (sent later): " + ", ".join(
                f"{k} {v:,}" for k, v in sorted(later.items()))
        for split, variants in counts.variants.items():
            parts = [f"{name} {cell['entered']:,} entered, {_count(cell['goals'], 'goal')}"
                     + (f" ({cell['goals'] / cell['entered']:.1%})" if cell["entered"] else "")
                     for name, cell in sorted(variants.items())]
            yield f"  split {split}: " + "; ".join(parts)
