"""A journey's numbers, as the journey page and `GET /v1/journeys/{id}/stats` show
them, and the statistics of a split: the Wilson score interval of each variant's
conversion and Pearson's two-proportion z-test of each variant against the first.

The z-test is the pooled one: z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)) with p the
pooled proportion; z squared is Pearson's chi-square of the 2x2 table without continuity
correction, and the p-value is two-sided. tests/api/test_dashboard_stats.py checks both
against published examples (Agresti's aspirin table: X^2 = 25.01; Newcombe 1998: the
Wilson interval of 81/263 is 0.2553 to 0.3662).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.core.times import iso
from engine.store.sql.analytics import AnalyticsQueries, JourneyCounts
from engine.store.sql.reasons import own_part_removed
from journeys.compiler import CompiledJourney
from journeys.steps import SplitStep, WaitForStep, kind_of
from rules import did_you_mean

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 0) for n = 0."""
    if n <= 0:
        return 0.0, 0.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # p = 0 (p = 1) puts the bound at exactly 0 (1); floating point left 5.55e-17 there
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return low, high


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """(z, two-sided p-value) of the pooled two-proportion z-test; None when it is not
    defined (an empty group, or every or no one converted in both)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    if variance <= 0:
        return None
    z = (x1 / n1 - x2 / n2) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def journey_stats(store: AnalyticsQueries, journey: CompiledJourney, since: datetime,
                  until: datetime) -> dict[str, Any]:
    """The journey's numbers over [since, until), as one JSON-ready document."""
    model = journey.model
    steps = [step.id for step in model.steps]
    controls = {step.id: step.split.variants[0].name for step in model.steps
                if isinstance(step, SplitStep)}  # the control: the first variant written
    splits = list(controls)
    counts = store.journey_counts(journey.id, since, until, steps, splits)
    low, high = wilson_interval(counts.converted, counts.entered)
    return {
        "journey": journey.id,
        "title": model.title,
        "version": model.version,
        "status": journey_status(journey, store),
        "since": iso(since),
        "until": iso(until),
        "entered": counts.entered,
        "converted": counts.converted,
        "conversion": _rate(counts.converted, counts.entered),
        "conversion_ci95": [low, high] if counts.entered else None,
        "ended": counts.ended,
        "in_flight": sum(counts.on_step.values()),
        "steps": [_step(step.id, kind_of(step), counts) for step in model.steps],
        "splits": {step: _split(counts, step, controls[step]) for step in splits},
        "kpis": journey_kpis(store, journey.id, since, until,
                             conversion=_rate(counts.converted, counts.entered)),
        "series": [{"day": day, "entered": c.entered, "passed": c.passed,
                    "sends": c.sends} for day, c in counts.series.items()],
        "versions": journey_versions(journey, store),
    }


def _step(step: str, kind: str, counts: JourneyCounts) -> dict[str, Any]:
    sends = counts.sends.get(step, {})
    decisions = _grouped([(what, reason, n) for s, what, reason, n in counts.decisions
                          if s == step])
    return {
        "id": step,
        "kind": kind,
        "now": counts.on_step.get(step, 0),
        "passed": counts.passed.get(step, 0),
        "sends": dict(sorted(sends.items())),
        # sends whose template failed to render: no outbox row, so in no count of `sends`
        "not_rendered": sum(d["count"] for d in decisions
                            if d["what"] == "skipped" and d["reason"] == "template_error"),
        "decisions": decisions,
    }


def _grouped(rows: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """The decisions counted per (what, reason without the person's own), most first:
    the store grouped them so already (engine/store/sql/reasons.py); grouped again here
    with the same function, which leaves its own answers as they are."""
    counted: dict[tuple[str, str], int] = {}
    for what, reason, n in rows:
        key = (what, own_part_removed(what, reason))
        counted[key] = counted.get(key, 0) + n
    return [{"what": what, "reason": reason, "count": n}
            for (what, reason), n in sorted(counted.items(), key=lambda kv: -kv[1])]


def _split(counts: JourneyCounts, step: str, control_name: str) -> dict[str, Any]:
    """`control_name` is the split's first variant, as written: the control whether or
    not anyone took it yet (the page said `control: None` before anyone reached the
    split, and took the first variant counted for the control)."""
    variants = counts.variants.get(step, [])
    rows: list[dict[str, Any]] = []
    control = next((v for v in variants if v.variant == control_name), None)
    for v in variants:
        low, high = wilson_interval(v.converted, v.people)
        row: dict[str, Any] = {"variant": v.variant, "people": v.people,
                               "converted": v.converted,
                               "conversion": _rate(v.converted, v.people),
                               "ci95": [low, high] if v.people else None,
                               "z": None, "p_value": None}
        if control is not None and v is not control:
            test = two_proportion_z_test(v.converted, v.people, control.converted,
                                         control.people)
            if test is not None:
                row["z"], row["p_value"] = test
        row["reading"] = reading(row["z"], row["p_value"], v is control)
        rows.append(row)
    return {"control": control_name,
            "test": "two-proportion z-test (pooled), two-sided, against the control",
            "variants": rows}


def listeners(compiled: Mapping[str, CompiledJourney]) -> dict[str, list[str]]:
    """Each track event name the journeys name (entry, `wait_for`, `exit_when`, goal),
    with the journeys that name it: what /live says of each event received."""
    found: dict[str, set[str]] = {}
    for jid, journey in compiled.items():
        model = journey.model
        names = [model.entry.event, *(x.event for x in model.exit_when),
                 model.goal.event if model.goal else None,
                 *(s.wait_for.event for s in model.steps if isinstance(s, WaitForStep))]
        for name in names:
            if name:
                found.setdefault(name, set()).add(jid)
    return {name: sorted(jids) for name, jids in found.items()}


def heard_by(kind: str, name: str, listening: Mapping[str, list[str]]) -> str:
    """The journeys a received event is for, by name, or `none` with the nearest name a
    journey listens to (a tracking plan's `Review Submited` was accepted in silence)."""
    if kind != "track":
        return "-"
    if name in listening:
        return ", ".join(listening[name])
    return "none" + did_you_mean(name, listening)


def reading(z: float | None, p_value: float | None, is_control: bool) -> str:
    """A variant's result in words, at the 95% level the page's intervals use."""
    if is_control:
        return "the control"
    if z is None or p_value is None:
        return "-"
    if p_value >= 0.05:
        return "no clear difference yet (p >= 0.05)"
    return "converts better than the control" if z > 0 else "converts worse than the control"


# --- where the other issues' data plugs in -------------------------------------------------


def journey_status(journey: CompiledJourney, store: Any = None) -> str:
    """live, paused, archived or removed: the deployed journey's status in the store (`journeys
    pause/resume/archive`); live when it was never deployed with `apply`."""
    deployed = store.deployed_versions(journey.id) if store is not None else []
    status = deployed[-1].status if deployed else "active"
    return "live" if status == "active" else str(status)


def journey_versions(journey: CompiledJourney, store: Any = None) -> list[dict[str, Any]]:
    """The journey's deployed versions, oldest first (people finish on the version they
    entered; `journeyman plan` shows what the next one changes)."""
    deployed = store.deployed_versions(journey.id) if store is not None else []
    if not deployed:
        return [{"version": journey.model.version, "current": True, "deployed_at": None}]
    return [{"version": v.version, "current": v.version == journey.model.version,
             "deployed_at": iso(v.deployed_at), "file": v.file} for v in deployed]


KPI_NAMES = ("conversion", "ctr", "open_rate", "opt_outs", "opt_out_rate", "bounce_rate",
             "goals", "attributable_revenue", "median_time_to_goal")


def journey_kpis(store: AnalyticsQueries, journey: str, since: datetime,
                 until: datetime, *, conversion: float | None = None,
                 previous_conversion: float | None = None) -> dict[str, Any]:
    """The journey's KPIs over [since, until) and over the period of the same length
    before it, with the change: name -> {value, previous, change}. CTR, open, opt-out
    and bounce rates are per message delivered in the period (messages queued in it,
    engagements recorded in it; clicks by people only, opens an upper bound); goals,
    attributable revenue (last touch) and the median time to goal count the goals
    reached in the period; conversion is the cohort's (entered in the period), given
    by the caller when it has it, else read from the rollup."""
    before = since - (until - since)
    now = _kpis(store.journey_activity(journey, since, until))
    then = _kpis(store.journey_activity(journey, before, since))
    if conversion is None:
        conversion = store.cohort_conversion(journey, since, until)
    if previous_conversion is None:
        previous_conversion = store.cohort_conversion(journey, before, since)
    now["conversion"], then["conversion"] = conversion, previous_conversion
    return {name: {"value": now[name], "previous": then[name],
                   "change": None if now[name] is None or then[name] is None
                   else now[name] - then[name]} for name in KPI_NAMES}


def _kpis(found: dict[str, float]) -> dict[str, Any]:
    delivered = found.get("delivered", 0)
    return {
        "ctr": _rate(int(found.get("click", 0)), int(delivered)),
        "open_rate": _rate(int(found.get("open", 0)), int(delivered)),
        "opt_outs": int(found.get("unsubscribe", 0)),
        "opt_out_rate": _rate(int(found.get("unsubscribe", 0)), int(delivered)),
        "bounce_rate": _rate(int(found.get("bounce", 0)),
                             int(delivered) + int(found.get("failed", 0))),
        "goals": int(found.get("goals", 0)),
        "attributable_revenue": round(found.get("attributable_revenue", 0.0), 6),
        "median_time_to_goal": found.get("median_time_to_goal"),
    }


RATES = ("conversion", "ctr", "open_rate", "opt_out_rate", "bounce_rate")


def kpi_value(name: str, value: float | None) -> str:
    """A KPI's value for people: rates as percentages, times in seconds, minutes or
    hours."""
    if value is None:
        return "-"
    if name in RATES:
        return f"{100 * value:.1f}%"
    if name == "median_time_to_goal":
        return _time(value)
    return f"{value:g}"


def number(value: float | None) -> str:
    """A table's decimal number: three significant digits, or whole with thousands
    separators from 1,000 on (revenue `2,760`, seconds `379,440`: `.3g` wrote `2.76e+03`)."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def to_the_minute(stamp: str) -> str:
    """An ISO time of the JSON (`2026-11-30T21:05:47.539350Z`) as the page shows it:
    `2026-11-30 21:05 UTC`."""
    if len(stamp) < 16 or stamp[10] != "T":
        return stamp
    return f"{stamp[:10]} {stamp[11:16]} UTC"


def _time(seconds: float, sign: str = "") -> str:
    """A time in the unit that shows it: `45 s`, `2.5 min`, `3.2 h` (a goal reached in
    two minutes was `0.0 h`); `sign="+"` writes + or - before it, for a change."""
    size = abs(seconds)
    if size < 60:
        return f"{seconds:{sign}.0f} s"
    if size < 3600:
        return f"{seconds / 60:{sign}.1f} min"
    return f"{seconds / 3600:{sign}.1f} h"


def kpi_text(name: str, kpi: dict[str, Any]) -> str:
    """A KPI with its trend, as the journeys list shows it: `ctr 3.1% (+0.4 pts)`."""
    change = kpi["change"]
    if change is None:
        delta = ""
    elif name in RATES:
        delta = f" ({100 * change:+.1f} pts)"
    elif name == "median_time_to_goal":
        delta = f" ({_time(change, '+')})"
    else:
        delta = f" ({change:+g})"
    return f"{name} {kpi_value(name, kpi['value'])}{delta}"
