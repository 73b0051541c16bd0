"""Split assignment is deterministic per profile/journey/step and follows the weights."""

from __future__ import annotations

from collections import Counter

from engine.core.steps.split import bucket, choose
from journeys.steps import SplitStep


def _split(holdout: float = 0) -> SplitStep:
    return SplitStep.model_validate({"id": "ab", "split": {"holdout": holdout, "variants": [
        {"name": "a", "weight": 70, "goto": "x"}, {"name": "b", "weight": 30, "goto": "y"}]}})


def test_the_same_profile_always_gets_the_same_variant() -> None:
    step = _split(10)
    assert {choose("u42", "j", step) for _ in range(5)} == {choose("u42", "j", step)}
    assert bucket("u42", "j", "ab") == bucket("u42", "j", "ab")
    assert bucket("u42", "j", "ab") != bucket("u42", "other", "ab")


def test_weights_and_holdout_are_respected_over_many_profiles() -> None:
    step = _split(10)
    counts = Counter(choose(f"user-{i}", "j", step) for i in range(20_000))
    assert abs(counts[None] / 20_000 - 0.10) < 0.01
    assert abs(counts["a"] / 20_000 - 0.63) < 0.015
    assert abs(counts["b"] / 20_000 - 0.27) < 0.015
