"""The global policy at the moment of delivery: consent, quiet hours, frequency caps.

The dispatcher asks `PolicyGate.decide` before each send (engine/runtime/dispatch.py):

- **consent**: for a channel in `consent_required`, the trait `consent.<channel>` must be
  true. False (opted out, unsubscribed) or missing (unknown) skips the send.
- **quiet hours**, in the profile's own time zone (`timezone` trait, else the policy's):
  a send due inside them waits until they end (DST-correct local time), it is not dropped.
- **frequency caps** per channel across all journeys, counted from the sends the store
  has *admitted* (engine/runtime/dispatch.py decides a profile's competing sends in one
  transaction, highest journey `priority` first, so caps hold across workers and within
  a batch): a send over the cap is dropped (`on_cap: drop`, the default: a marketing
  message a week late is often worse than none) or delayed until the oldest counted
  send leaves the window (`on_cap: delay`).

A journey's own `policy:` overrides the global one: `quiet_hours: false` turns quiet
hours off, `frequency_caps` replaces the caps of the channels it names,
`ignore_frequency_caps: true` turns caps off, `consent_required` replaces the list,
`on_cap` chooses delay or drop for all its sends.
Every skip and deferral is recorded in the decision log by the dispatcher.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal

from engine.core.model import Profile
from engine.core.times import local_zone, next_local_time
from engine.ports import OutboxEntry
from journeys.model import Cap, Policy, PolicyOverride, QuietHours

# (profile, channel, since) -> the admission times of the sends counted against a cap
# after `since`, oldest first
SentSince = Callable[[str, str, datetime], list[datetime]]


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Literal["send", "defer", "skip"]
    reason: str = ""
    until: datetime | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


SEND = Verdict("send")


@dataclass(frozen=True, slots=True)
class Rules:
    """The policy one journey's sends are under, after its override."""

    quiet_hours: QuietHours | None
    caps: Mapping[str, Cap]
    consent_required: tuple[str, ...]
    on_cap: str | None = None  # the journey's choice, over each cap's own


def consent_state(traits: Mapping[str, Any], channel: str) -> str:
    """`opted_in`, `opted_out` or `unknown`, from the trait `consent.<channel>`."""
    consent = traits.get("consent")
    value = consent.get(channel) if isinstance(consent, Mapping) else None
    if value is True:
        return "opted_in"
    return "opted_out" if value is False else "unknown"


def with_waiting(profile: Profile, waiting: Iterable[Mapping[str, Any]]) -> Profile:
    """`profile` as the policy sees it while `waiting` (its events not handled yet,
    oldest first) wait: a consent their identifies leave withdrawn is withdrawn now, one
    they give is not given before it is handled. A person's events are handled in order,
    and an unsubscribe waiting behind an event that failed (parked until an operator
    acts) did not stop the sends queued meanwhile (docs/privacy.md)."""
    consent = profile.traits.get("consent")
    now = dict(consent) if isinstance(consent, Mapping) else {}
    later: Any = now
    for event in waiting:
        traits = event.get("traits") if event.get("type") == "identify" else None
        if isinstance(traits, Mapping) and "consent" in traits:
            new = traits["consent"]  # as engine/core/profiles.py merges it
            later = ({**later, **new} if isinstance(new, Mapping) and isinstance(later, Mapping)
                     else new)
    after = later if isinstance(later, Mapping) else {}
    withdrawn = {ch: False for ch, v in now.items() if v is True and after.get(ch) is not True}
    if not withdrawn:
        return profile
    return replace(profile, traits={**profile.traits, "consent": {**now, **withdrawn}})


def in_quiet_hours(local: time, quiet: QuietHours) -> bool:
    start, end = time.fromisoformat(quiet.start), time.fromisoformat(quiet.end)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # over midnight, e.g. 21:00-08:00


class PolicyGate:
    def __init__(self, policy: Policy,
                 overrides: Mapping[str, PolicyOverride | None] | None = None,
                 priorities: Mapping[str, int] | None = None) -> None:
        self.policy = policy
        self._rules = {jid: self._merge(o) for jid, o in (overrides or {}).items()}
        self._default = self._merge(None)
        self._priorities = dict(priorities or {})

    def priority(self, journey: str) -> int:
        """The journey's `priority` (0 by default): higher goes first for a cap."""
        return self._priorities.get(journey, 0)

    @property
    def longest_cap(self) -> timedelta:
        """The longest cap window of any journey: how far back admissions matter."""
        windows = [cap.per for rules in (self._default, *self._rules.values())
                   for cap in rules.caps.values()]
        return max(windows, default=timedelta(0))

    def _merge(self, override: PolicyOverride | None) -> Rules:
        base = self.policy
        if override is None:
            return Rules(base.quiet_hours, dict(base.frequency_caps),
                         tuple(base.consent_required))
        quiet: QuietHours | None = base.quiet_hours
        if override.quiet_hours is False:
            quiet = None
        elif override.quiet_hours is not None:
            quiet = override.quiet_hours
        caps = {} if override.ignore_frequency_caps else {
            **base.frequency_caps, **(override.frequency_caps or {})}
        consent = (override.consent_required if override.consent_required is not None
                   else base.consent_required)
        return Rules(quiet, caps, tuple(consent), override.on_cap)

    def rules(self, journey: str) -> Rules:
        return self._rules.get(journey, self._default)

    def decide(self, entry: OutboxEntry, profile: Profile | None, now: datetime,
               sent_since: SentSince) -> Verdict:
        rules = self.rules(entry.journey)
        traits = profile.traits if profile is not None else {}
        if entry.channel in rules.consent_required:
            state = consent_state(traits, entry.channel)
            if state != "opted_in":
                return Verdict("skip", "no_consent", details={"consent": state})
        if rules.quiet_hours is not None:
            tz = local_zone(traits, self.policy.timezone)
            local = now.astimezone(tz)
            if in_quiet_hours(local.time(), rules.quiet_hours):
                until = next_local_time(now, rules.quiet_hours.end, tz)
                return Verdict("defer", "quiet_hours", until,
                               {"timezone": str(tz), "local_time": local.strftime("%H:%M")})
        codes = self.policy.sms_country_codes
        if entry.channel == "sms" and codes and not any(
                (entry.to or "").startswith("+" + code) for code in codes):
            return Verdict("skip", "sms_country_not_allowed",
                           details={"allowed": list(codes)})
        cap = rules.caps.get(entry.channel)
        if cap is not None:
            counted = sent_since(entry.profile_id, entry.channel, now - cap.per)
            if len(counted) >= cap.max:
                return self._capped(cap, rules.on_cap or cap.on_cap, counted, entry)
        return SEND

    def _capped(self, cap: Cap, on_cap: str, counted: list[datetime],
                entry: OutboxEntry) -> Verdict:
        """Over the cap: drop it, or delay it until the oldest send that keeps the cap
        full leaves the window (then it competes again, by priority)."""
        details: dict[str, Any] = {
            "max": cap.max, "per_seconds": cap.per.total_seconds(), "sent": len(counted),
            "on_cap": on_cap, "priority": self.priority(entry.journey)}
        if on_cap == "delay" and cap.max > 0:
            until = counted[len(counted) - cap.max] + cap.per
            return Verdict("defer", "frequency_cap", until, details)
        return Verdict("skip", "frequency_cap", details=details)
