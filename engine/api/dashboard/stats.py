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
from datetime import datetime
from typing import Any

from engine.core.times import iso
from engine.store.sql.analytics import AnalyticsQueries, JourneyCounts
from journeys.compiler import CompiledJourney
from journeys.steps import kind_of

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 0) for n = 0."""
    if n <= 0:
        return 0.0, 0.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


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
    splits = [step.id for step in model.steps if kind_of(step) == "split"]
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
        "splits": {step: _split(counts, step) for step in splits},
        "kpis": journey_kpis(store, journey.id, since, until),
        "versions": journey_versions(journey, store),
    }


def _step(step: str, kind: str, counts: JourneyCounts) -> dict[str, Any]:
    sends = counts.sends.get(step, {})
    return {
        "id": step,
        "kind": kind,
        "now": counts.on_step.get(step, 0),
        "passed": counts.passed.get(step, 0),
        "sends": dict(sorted(sends.items())),
        "decisions": [{"what": what, "reason": reason, "count": n}
                      for s, what, reason, n in counts.decisions if s == step],
    }


def _split(counts: JourneyCounts, step: str) -> dict[str, Any]:
    variants = counts.variants.get(step, [])
    rows: list[dict[str, Any]] = []
    control = next((v for v in variants if v.variant != "holdout"), None)
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
        rows.append(row)
    return {"control": control.variant if control else None,
            "test": "two-proportion z-test (pooled), two-sided, against the control",
            "variants": rows}


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


def journey_kpis(store: AnalyticsQueries, journey: str, since: datetime,
                 until: datetime) -> dict[str, Any]:
    """The journey's KPIs (CTR, conversion, attributable revenue, opt-outs, time to goal)
    with their trend. PLUG-IN (issue 15, `journeyman stats`): return its per-journey KPIs
    here (name -> value); the journey list and page show whatever this returns."""
    return {}
