"""`split`: deterministic A/B/n assignment per (profile, journey, step), with a holdout.

The bucket is a hash, not a random draw, so a replay or a second worker puts the same
profile in the same variant, and the core stays free of randomness.
"""

from __future__ import annotations

import hashlib

from engine.core.steps.base import Go, Outcome, StepRun
from journeys.steps import SplitStep


def bucket(profile_id: str, journey: str, step: str) -> float:
    """A stable number in [0, 100)."""
    digest = hashlib.sha256(f"{profile_id}\x1f{journey}\x1f{step}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 / 10_000


def choose(profile_id: str, journey: str, step: SplitStep) -> str | None:
    """The variant name, or None for the holdout."""
    point = bucket(profile_id, journey, step.id)
    holdout = step.split.holdout
    if point < holdout:
        return None
    scaled = (point - holdout) / (100 - holdout) * 100
    cumulative = 0.0
    for variant in step.split.variants:
        cumulative += variant.weight
        if scaled < cumulative:
            return variant.name
    return step.split.variants[-1].name


def run(run: StepRun, step: SplitStep) -> Outcome:
    variant = choose(run.profile.id, run.journey.id, step)
    run.variants[step.id] = variant or "holdout"
    if run.explain:
        run.note(step.id, "split", f"variant {variant}" if variant else "holdout",
                 variant=variant or "holdout",
                 bucket=round(bucket(run.profile.id, run.journey.id, step.id), 4),
                 holdout=step.split.holdout,
                 weights={v.name: v.weight for v in step.split.variants})
    if variant is None:
        return Go("holdout", exit_reason="holdout")
    return Go(f"variant_{variant}")
