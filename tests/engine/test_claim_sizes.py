"""The adaptive claim size (engine/runtime/claim_sizes.py): a lone event is handled at
once, batches grow under load and shrink when they overrun the budget."""

from __future__ import annotations

from engine.runtime.claim_sizes import MIN_BATCH, ClaimSizes

BUDGET, MOST = 0.1, 1000


def test_a_full_claim_doubles_and_a_short_one_stays() -> None:
    sizes = ClaimSizes()
    sizes.adapt("inbox", MIN_BATCH, 0.01, MIN_BATCH, budget=BUDGET, most=MOST)
    assert sizes["inbox"] == 2 * MIN_BATCH
    sizes.adapt("inbox", 5, 0.01, 5, budget=BUDGET, most=MOST)
    assert sizes["inbox"] == 2 * MIN_BATCH


def test_a_claim_that_kept_most_of_a_full_claim_grows() -> None:
    """PostgreSQL let go of a few rows (another worker holds their profiles)."""
    sizes = ClaimSizes()
    sizes.adapt("inbox", MIN_BATCH - 10, 0.01, MIN_BATCH - 10, budget=BUDGET, most=MOST,
                full=True)
    assert sizes["inbox"] == 2 * MIN_BATCH


def test_a_claim_that_kept_less_than_half_does_not_grow() -> None:
    sizes = ClaimSizes()
    sizes.adapt("inbox", 3, 0.01, 3, budget=BUDGET, most=MOST, full=True)
    assert sizes["inbox"] == MIN_BATCH


def test_an_overrun_or_an_unfinished_batch_shrinks_whatever_it_claimed() -> None:
    sizes = ClaimSizes()
    for _ in range(4):
        sizes.adapt("inbox", MIN_BATCH * 8, 0.01, MIN_BATCH * 8, budget=BUDGET, most=MOST)
    assert sizes["inbox"] == 16 * MIN_BATCH
    sizes.adapt("inbox", 300, 0.5, 512, budget=BUDGET, most=MOST, full=True)
    assert sizes["inbox"] == int(16 * MIN_BATCH * 0.7)
    sizes.adapt("inbox", 100, 0.05, 300, budget=BUDGET, most=MOST, full=True)
    assert sizes["inbox"] == 200
