"""A round in parts: a batch of events or a chunk of timers done again one profile per
transaction, after the database refused the batch's writes, or after transient errors
in a row (engine/runtime/transients.py), so that a profile whose writes fail fails
alone and everybody else's work goes on."""

from __future__ import annotations

from collections.abc import Callable

from engine.runtime.batches import Outcome, Refused
from engine.runtime.transients import AWAY_AFTER, Transient

# One transaction's work run by the worker (`Worker._guarded`, for a part)
Guarded = Callable[[Callable[[], Outcome]], "Outcome | Refused | Transient"]
Part = Callable[[list[str]], Outcome]  # do a profile's keys (its events, its timers)
Fail = Callable[[list[str], str], Outcome]  # count their failed attempt, with the error


def round_in_parts(guarded: Guarded, parts: dict[str, list[str]], do: Part,
                   fail: Fail) -> Outcome:
    """Each profile's keys (`parts`) in a transaction of its own: a part the database
    refuses `fail`s (its first event, or its due timers, count a failed attempt). A
    part failing transiently is done once more after another part of the round
    committed, and counts a failed attempt only if it fails again (a lock released
    meanwhile fails nobody). If no part commits, the database is away: nothing is
    counted, and the round ends after a few parts."""
    total = Outcome()
    answered = False
    again: list[list[str]] = []
    for keys in parts.values():
        if not answered and len(again) >= AWAY_AFTER:
            break
        outcome = _part(guarded, keys, do, fail, charge_transient=False)
        if isinstance(outcome, Transient):
            again.append(keys)
            continue
        answered = True
        total.add(outcome)
    for keys in again if answered else ():
        outcome = _part(guarded, keys, do, fail, charge_transient=True)
        if isinstance(outcome, Outcome):
            total.add(outcome)
    return total


def _part(guarded: Guarded, keys: list[str], do: Part, fail: Fail, *,
          charge_transient: bool) -> Outcome | Transient:
    outcome = guarded(lambda: do(keys))
    if isinstance(outcome, Refused) or (charge_transient and isinstance(outcome, Transient)):
        error = outcome.error
        outcome = guarded(lambda: fail(keys, error))
    return Outcome() if isinstance(outcome, Refused) else outcome
