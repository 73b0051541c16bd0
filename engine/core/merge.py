"""The merge decision: what is left when one profile is folded into another by identity
resolution (engine/runtime/identity.py). Pure, and the one rule both stores apply
(engine/store/memory.py and engine/store/sql/identities.py):

- traits: the profile merged *into* wins a conflict; the absorbed profile's traits
  fill the gaps;
- stored computed traits add up (counts, totals) and span both (first and last order);
- every enrollment moves to the surviving profile; in a journey where both had an
  active enrollment, the one that entered first stays and the other exits with reason
  `merged` (no Exit record), so nobody runs a journey twice because of a merge. On a
  tie in entry time the surviving profile's own enrollment stays. The loser's timers
  stay and fire as no-ops (its enrollment has exited).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from engine.core.model import Enrollment, EntryStats, Profile
from engine.core.profiles import finite
from engine.core.times import parse_timestamp
from journeys.graph import EXITED

MERGED = "merged"


def merged_profile(into: str, kept: Profile | None, absorbed: Profile | None) -> Profile | None:
    """The surviving profile `into` after absorbing `absorbed` (None: nothing to merge)."""
    if absorbed is None:
        return kept
    kept_traits = kept.traits if kept is not None else {}
    kept_computed = kept.computed if kept is not None else {}
    return Profile(into, {**absorbed.traits, **kept_traits},
                   merge_computed(absorbed.computed, kept_computed))


def merge_losers(kept: Iterable[Enrollment], absorbed: Iterable[Enrollment]) -> list[Enrollment]:
    """The active enrollments that must exit because of the merge (see the module doc)."""
    by_journey: dict[str, list[tuple[datetime, int, Enrollment]]] = {}
    for rank, group in ((0, kept), (1, absorbed)):
        for enrollment in group:
            if enrollment.active:
                by_journey.setdefault(enrollment.journey, []).append(
                    (enrollment.entered_at, rank, enrollment))
    losers: list[Enrollment] = []
    for rows in by_journey.values():
        rows.sort(key=lambda row: (row[0], row[1]))
        losers += [row[2] for row in rows[1:]]
    return losers


def merged_entries(kept: EntryStats, absorbed: EntryStats) -> EntryStats:
    """Entry stats of a journey both profiles entered: the entries add up, the later
    entry is the last one."""
    never = datetime.min.replace(tzinfo=UTC)
    later = max(kept, absorbed, key=lambda s: s.last_entered_at or never)
    return EntryStats(kept.entries + absorbed.entries, later.last_enrollment_id,
                      later.last_entered_at)


def exited_by_merge(enrollment: Enrollment, now: datetime) -> Enrollment:
    return replace(enrollment, status="exited", state=EXITED, exit_reason=MERGED,
                   updated_at=now, ended_at=now)


def merge_computed(older: Mapping[str, Any], newer: Mapping[str, Any]) -> dict[str, Any]:
    """Stored computed traits of two profiles being merged: counts add up, dates span both."""
    out = {**older, **newer}
    for name in ("orders_count", "referrals_count", "visits"):
        out[name] = int(older.get(name, 0)) + int(newer.get(name, 0))
    out["total_spent"] = finite("total_spent", round(float(older.get("total_spent", 0)) +
                                                     float(newer.get("total_spent", 0)), 2))
    firsts = [v for v in (older.get("first_order_at"), newer.get("first_order_at")) if v]
    lasts = [v for v in (older.get("last_order_at"), newer.get("last_order_at")) if v]
    if firsts:
        out["first_order_at"] = min(firsts, key=lambda v: parse_timestamp(v) or v)
    if lasts:
        out["last_order_at"] = max(lasts, key=lambda v: parse_timestamp(v) or v)
    if out["orders_count"]:
        out["average_order_value"] = round(out["total_spent"] / out["orders_count"], 2)
    out["identified"] = bool(older.get("identified")) or bool(newer.get("identified"))
    return out
