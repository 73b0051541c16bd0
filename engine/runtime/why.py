"""`why`: every decision the engine made for one person, oldest first, as records
(`journeyman why --json`, `GET /v1/profiles/{id}/why`) or as a readable story.

The records come from the decision log (the `decisions` table): the runtime records
entries and refusals (engine/runtime/runner.py), the core its waits, resumes,
branches, splits, goals and exits (`Note` commands, engine/core/), the dispatcher what
became of each send (sent, skipped, deferred, failed; engine/runtime/dispatch.py).

A person is found by user id or anonymous id; the decisions recorded under every id
that now points at them are included, so a profile merged into another keeps its past.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from engine.core.times import iso, span
from engine.ports import Decision

# The kinds of the contract (qa-contract.md, section 4); a record of another kind keeps
# its own name (the contract allows more).
KINDS = ("entered", "not_entered", "waiting", "resumed", "branch", "split", "sent", "skipped",
         "deferred", "failed", "goal", "exited")


class DecisionSource(Protocol):
    """What `why` reads from a store."""

    def profile_for(self, kind: str, value: str) -> str | None: ...
    def get_profile(self, profile_id: str) -> Any: ...
    def identities_of(self, profile_id: str) -> list[tuple[str, str]]: ...
    def recorded_decisions(self, profile_id: str | None = None) -> list[Decision]: ...


@dataclass(frozen=True, slots=True)
class Why:
    """One decision as `why` tells it."""

    at: str
    profile: str
    journey: str
    step: str | None
    kind: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, "profile": self.profile, "journey": self.journey,
                "step": self.step, "kind": self.kind, "reason": self.reason,
                "details": dict(self.details)}


def profile_of(store: DecisionSource, user: str) -> str:
    """The profile a user id or anonymous id stands for (itself when unknown)."""
    return store.profile_for("user_id", user) or store.profile_for("anonymous_id", user) or user


def why(store: DecisionSource, user: str, *, journey: str | None = None) -> list[Why] | None:
    """The decisions made for `user` (in `journey` only, when given), oldest first;
    None when the store knows nothing of that person."""
    pid = profile_of(store, user)
    # Profiles are made from user and anonymous ids: a profile merged into this one had
    # one of those as its id, and its decisions are still filed under it.
    ids = [pid, *sorted({value for kind, value in store.identities_of(pid)
                         if kind in ("user_id", "anonymous_id")} - {pid})]
    if user not in ids:
        ids.append(user)
    decisions: list[Decision] = []
    for profile_id in ids:
        decisions += store.recorded_decisions(profile_id)
    if not decisions and store.get_profile(pid) is None:
        return None
    if journey is not None:
        decisions = [d for d in decisions if d.journey == journey]
    decisions.sort(key=lambda d: d.at)  # stable: the order of recording within an instant
    return _fold_lateness([_entry(d) for d in decisions])


def _entry(d: Decision) -> Why:
    return Why(iso(d.at), d.profile_id, d.journey, d.step or None, d.what, d.reason,
               dict(d.details))


def _fold_lateness(entries: list[Why]) -> list[Why]:
    """A timer that fired late is recorded apart (`fired_late`, for operators); `why`
    tells it with the resume it caused, or as a resume of its own."""
    out: list[Why] = []
    late: dict[tuple[str, str | None, str], Why] = {}
    for entry in entries:
        key = (entry.journey, entry.step, entry.at)
        if entry.kind == "fired_late":
            late[key] = entry
            continue
        held = late.pop(key, None)
        if held is not None and entry.kind == "resumed":
            out.append(Why(entry.at, entry.profile, entry.journey, entry.step, entry.kind,
                           entry.reason + f" ({_late(held)})",
                           {**entry.details, **held.details, "late": True}))
            continue
        if held is not None:
            out.append(_late_resume(held))
        out.append(entry)
    out += [_late_resume(held) for held in late.values()]
    return out


def _late(entry: Why) -> str:
    seconds = float(entry.details.get("late_seconds", 0))
    return f"the timer fired {timedelta(seconds=round(seconds))} late"


def _late_resume(entry: Why) -> Why:
    return Why(entry.at, entry.profile, entry.journey, entry.step, "resumed",
               f"timer_overdue: {_late(entry)}", dict(entry.details))


# --- the story ---------------------------------------------------------------------------

PERSONAL = "(the person: consent, identity)"  # the heading of the records of no journey


def story(user: str, entries: list[Why], journey: str | None = None) -> str:
    """The decisions as a readable timeline, one journey after another."""
    if not entries and journey is not None:
        return (f"{user}: no decisions in {journey} (no event of theirs matched its entry, "
                "or no such journey)\n")
    if not entries:
        return f"{user}: no decisions recorded (no event of theirs matched a journey)\n"
    journeys: dict[str, list[Why]] = {}
    for entry in entries:
        journeys.setdefault(entry.journey, []).append(entry)
    # The records of no journey (consent changes, identifiers kept apart) are the
    # person's own: a block of their own, not counted as a journey
    counted = sum(1 for name in journeys if name)
    lines = [f"{user}: {len(entries)} decision(s) in {counted} journey(s), oldest first"]
    for name, items in journeys.items():
        lines += ["", name or PERSONAL]
        for e in items:
            when = e.at.replace("T", " ").removesuffix("Z")
            where = f"{e.step}: " if e.step else ""
            lines.append(f"  {when}  {e.kind:<11} {where}{e.reason}{_more(e)}")
    return "\n".join(lines) + "\n"


def _more(entry: Why) -> str:
    """What the reason alone does not say, for the kinds where it matters."""
    d = entry.details
    if entry.kind == "skipped" and entry.reason == "frequency_cap" and "max" in d:
        per = span(timedelta(seconds=float(d.get("per_seconds", 0))))
        return f" ({d.get('sent')} sent, at most {d['max']} per {per})"
    if entry.kind == "not_entered" and entry.reason == "already enrolled" and "step" in d:
        return f" (waiting at {d['step']})"
    if entry.kind == "skipped" and entry.reason == "no_consent" and "consent" in d:
        return f" (consent {d['consent']})"
    if entry.kind in ("skipped", "failed") and "error" in d:
        return f": {d['error']}"
    if entry.kind == "deferred" and "until" in d:
        local = (f", {d['local_time']} in {d['timezone']}"
                 if "local_time" in d and "timezone" in d else "")
        return f" until {d['until']}{local}"
    if entry.kind == "split" and "bucket" in d:
        return f" (bucket {d['bucket']})"
    return ""


__all__ = ["KINDS", "PERSONAL", "DecisionSource", "Why", "profile_of", "story", "why"]
