"""Computed traits: kept up to date on every event, read as `profile.computed.<name>`.

Stored traits (`orders_count`, `total_spent`, first/last order, referrals, ...) change
only with events; time-dependent ones (`days_since_last_order`, `birthday_today`, the
RFM recency score, `lifecycle_stage`) are derived at evaluation time from `now`, so a
profile that does nothing still ages. Thresholds and stage definitions come from
`computed_traits.yaml` in the journeys folder (defaults below, same shape).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.core.model import Profile
from engine.core.times import local_zone, parse_timestamp
from journeys.computed import NPS_EVENT, VISIT_EVENT
from rules import parse_condition
from rules.errors import JourneymanError
from rules.ruleset import to_closure

DEFAULT_CONFIG: dict[str, Any] = {
    "order_events": ["Order Completed"],
    "referral_events": ["Referral Reward Earned"],
    "rfm": {
        # recency: days since the last order; frequency: orders; monetary: total spent
        "recency": {"short": 30, "medium": 90},          # <=30 short, <=90 medium, else long
        "frequency": {"often": 5, "regular": 2},          # >=5 often, >=2 regular, else casual
        "monetary": {"spender": 500, "average": 100},     # >=500 spender, >=100 average, else saver
    },
    # Five-stage model (seed 000): the first stage whose condition holds wins, top down.
    "lifecycle_stages": [
        {"stage": "advocate", "when": {"any": [
            {"profile.computed.referrals_count": {"gte": 1}},
            {"profile.computed.last_nps_score": {"gte": 9}}]}},
        {"stage": "loyal", "when": {"profile.computed.orders_count": {"gte": 2}}},
        {"stage": "identified", "when": {"profile.computed.identified": {"eq": True}}},
        {"stage": "repeat_visitor", "when": {"profile.computed.visits": {"gte": 2}}},
        {"stage": "first_time_visitor", "when": {}},
    ],
}

STORED = ("orders_count", "total_spent", "first_order_at", "last_order_at", "referrals_count",
          "last_nps_score", "visits", "identified", "average_order_value", "last_seen_at")


class ComputedTraitError(JourneymanError):
    """A computed trait would not be a finite number (an overflow): an error of that
    profile only (the event is retried, then parked), never stored."""


def finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ComputedTraitError(f"computed trait {name} overflowed ({value})")
    return value


class ComputedTraits:
    """Applies events to stored computed traits and derives the time-dependent ones."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        merged = dict(DEFAULT_CONFIG)
        merged.update(config or {})
        # A partial `rfm:` override keeps the default of every band it does not name
        # (the loader validates the file; this keeps a hand-made config safe too).
        given = config.get("rfm") if config else None
        merged["rfm"] = {part: {**bands, **((given or {}).get(part) or {})}
                         for part, bands in DEFAULT_CONFIG["rfm"].items()}
        self.config = merged
        self.order_events = set(merged["order_events"])
        self.referral_events = set(merged["referral_events"])
        # Each stage's condition as the `python` backend's closure (rules/ruleset.py;
        # the property test keeps it in agreement with the reference evaluator): a view
        # is made for every event and timer, and looks at the stages in order.
        self.stages = [(item["stage"], to_closure(parse_condition(item.get("when") or {})))
                       for item in merged["lifecycle_stages"]]

    def apply(self, profile: Profile, event: Mapping[str, Any]) -> Profile:
        """The profile after `event`: traits merged (identify), stored computed traits updated."""
        traits = dict(profile.traits)
        computed = {k: v for k, v in profile.computed.items() if k in STORED}
        kind, name = event.get("type"), event.get("event")
        when = event.get("timestamp")
        if kind == "identify":
            new = dict(event.get("traits") or {})
            if isinstance(new.get("consent"), Mapping) and isinstance(
                    traits.get("consent"), Mapping):
                # consent is per channel: naming one channel leaves the others as they were
                new["consent"] = {**traits["consent"], **new["consent"]}
            traits.update(new)
        if event.get("userId") or traits.get("email"):
            computed["identified"] = True
        if kind in ("page", "screen") or (kind == "track" and name == VISIT_EVENT):
            computed["visits"] = int(computed.get("visits", 0)) + 1
        computed["last_seen_at"] = when
        props = event.get("properties") or {}
        if kind == "track" and name in self.order_events:
            amount = props.get("revenue", props.get("total", 0))
            value = float(amount) if isinstance(amount, int | float) and not isinstance(
                amount, bool) else 0.0
            computed["orders_count"] = int(computed.get("orders_count", 0)) + 1
            computed["total_spent"] = finite(
                "total_spent", round(float(computed.get("total_spent", 0)) + value, 2))
            computed.setdefault("first_order_at", when)
            computed["last_order_at"] = when
            computed["average_order_value"] = round(
                computed["total_spent"] / computed["orders_count"], 2)
        if kind == "track" and name in self.referral_events:
            computed["referrals_count"] = int(computed.get("referrals_count", 0)) + 1
        if kind == "track" and name == NPS_EVENT and isinstance(props.get("score"), int):
            computed["last_nps_score"] = props["score"]
        return Profile(profile.id, traits, computed)

    def view(self, profile: Profile, now: datetime, default_tz: str = "UTC") -> Profile:
        """The profile with every computed trait, as of `now`."""
        c = dict(profile.computed)
        c.setdefault("orders_count", 0)
        c.setdefault("total_spent", 0.0)
        c.setdefault("referrals_count", 0)
        c.setdefault("visits", 1)
        c.setdefault("identified", False)
        last = parse_timestamp(c.get("last_order_at"))
        c["days_since_last_order"] = (now - last).days if last else None
        rfm = self.config["rfm"]
        if last is not None:
            days = c["days_since_last_order"]
            c["rfm_recency_name"] = ("short" if days <= rfm["recency"]["short"] else
                                     "medium" if days <= rfm["recency"]["medium"] else "long")
            c["rfm_recency"] = {"short": 3, "medium": 2, "long": 1}[c["rfm_recency_name"]]
        orders, spent = c["orders_count"], c["total_spent"]
        c["rfm_frequency_name"] = ("often" if orders >= rfm["frequency"]["often"] else
                                   "regular" if orders >= rfm["frequency"]["regular"] else "casual")
        c["rfm_frequency"] = {"often": 3, "regular": 2, "casual": 1}[c["rfm_frequency_name"]]
        c["rfm_monetary_name"] = ("spender" if spent >= rfm["monetary"]["spender"] else
                                  "average" if spent >= rfm["monetary"]["average"] else "saver")
        c["rfm_monetary"] = {"spender": 3, "average": 2, "saver": 1}[c["rfm_monetary_name"]]
        c["birthday_today"] = _birthday_today(profile.traits, now, default_tz)
        # The stages' conditions read the traits as they are (evaluate only reads): no
        # copies, no intermediate Profile (a view is made for every event and timer).
        facts = {"profile": {"id": profile.id, "traits": profile.traits, "computed": c}}
        c["lifecycle_stage"] = next(
            (stage for stage, holds in self.stages if holds(facts, now)),
            "first_time_visitor")
        return Profile(profile.id, profile.traits, c)


def _birthday_today(traits: Mapping[str, Any], now: datetime, default_tz: str) -> bool:
    birthday = traits.get("birthday")
    if not isinstance(birthday, str) or len(birthday) < 10:
        return False
    today = now.astimezone(local_zone(traits, default_tz)).date()
    month_day = birthday[5:10]
    if month_day == "02-29" and not _leap(today.year):
        month_day = "02-28"  # a leap-day birthday is celebrated on Feb 28 in other years
    return today.strftime("%m-%d") == month_day


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


__all__ = ["DEFAULT_CONFIG", "ComputedTraitError", "ComputedTraits", "finite"]
