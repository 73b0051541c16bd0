"""`why`: every decision the engine made for one person, oldest first, as records
(`journeyman why --json`, `GET /v1/profiles/{id}/why`) or as a readable story.

The records come from the decision log (the `decisions` table): the runtime records
entries and refusals (engine/runtime/runner.py), the core its waits, resumes,
branches, splits, goals and exits (`Note` commands, engine/core/), the dispatcher what
became of each send (sent, skipped, deferred, failed; engine/runtime/dispatch.py), and
`journeyman apply` each enrollment a `migrate:` map moved to a newer version's step (a
`waiting` at the new step, `moved by apply: ...`, `StepMove.decision` in engine/values.py).

A person is found by user id or anonymous id; the decisions recorded under every id
that now points at them are included, so a profile merged into another keeps its past.
Only the contract's kinds are told (qa-contract.md section 4): a person's own records
of no journey (consent changes, merges refused; engine/runtime/person_records.py) are
in the export and `journeyman decisions`. `step` is None for the engine's own states
(a goal reached after the enrollment ended is recorded at `__exited__`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from engine.core.model import CRON_STEP
from engine.core.times import iso, span
from engine.ports import Decision
from engine.runtime.identity import profile_named, profiles_named
from engine.runtime.unsubscribe import PROFILE
from journeys.graph import COMPLETED, EXITED, START

# The kinds of the contract (qa-contract.md, section 4), the only ones `why` tells.
KINDS = ("entered", "not_entered", "waiting", "resumed", "branch", "split", "sent", "skipped",
         "deferred", "failed", "goal", "exited")
# The engine's own states, never a step of a journey: `step` is null there (a goal
# reached after the enrollment ended is recorded at `__exited__` or `__completed__`).
PLACEHOLDERS = frozenset({START, COMPLETED, EXITED, CRON_STEP})
# A late timer's record and what the firing did are one instant now; in older logs, two
# reads of the clock in one firing, milliseconds apart (a minute is far more than that).
FIRING = timedelta(minutes=1)


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


def profile_of(store: DecisionSource, user: str, by: str | None = None) -> str | None:
    """The profile a user id or anonymous id (an id of kind `by`, when given) stands
    for (itself when unknown, as a profile's id; None when `by` names another kind of
    id than a profile's: `--by user_id 8` is not anonymous visitor 8)."""
    return profile_named(store, user, by) or (user if by in (None, PROFILE) else None)


def also_named(store: DecisionSource, user: str, by: str | None = None) -> dict[str, str]:
    """The other people `user` names, by the kind of id it is for each (their profile),
    when `by` does not say which: a userId and an anonymousId of the same text may be
    two people (engine/runtime/identity.py), and `why` tells the first only."""
    if by is not None:
        return {}
    named = profiles_named(store, user)
    told = next(iter(named.values()), None)
    return {kind: pid for kind, pid in named.items() if pid != told}


def why_records(entries: list[Why], others: dict[str, str]) -> list[dict[str, Any]]:
    """The records `why --json` and `GET /v1/profiles/{id}/why` answer: each decision,
    with `also_named`: the other people the id names (`also_named`; {} when it names
    one person, or `by` said which)."""
    return [{**entry.as_json(), "also_named": dict(others)} for entry in entries]


def why(store: DecisionSource, user: str, *, journey: str | None = None,
        by: str | None = None) -> list[Why] | None:
    """The decisions made for `user` (in `journey` only, when given; `by`: the kind of
    id `user` is, engine/runtime/identity.py NAMING_KINDS), oldest first; None when
    the store knows nothing of that person."""
    pid = profile_of(store, user, by)
    if pid is None:
        return None
    # A profile merged into this one is a `profile` identifier of it, and its decisions
    # are still filed under its id (engine/runtime/identity.py).
    ids = [pid, *sorted({value for kind, value in store.identities_of(pid)
                         if kind == PROFILE} - {pid})]
    decisions: list[Decision] = []
    for profile_id in ids:
        decisions += store.recorded_decisions(profile_id)
    if not decisions and store.get_profile(pid) is None:
        return None
    if journey is not None:
        decisions = [d for d in decisions if d.journey == journey]
    decisions.sort(key=lambda d: d.at)  # stable: the order of recording within an instant
    # Only the contract's kinds: a person's own records (consent changes, merges refused)
    # are in the export and `journeyman decisions`, not decisions of a journey.
    return [_entry(d) for d in _fold_lateness(decisions) if d.what in KINDS]


def _entry(d: Decision) -> Why:
    step = None if not d.step or d.step in PLACEHOLDERS else d.step
    return Why(iso(d.at), d.profile_id, d.journey, step, d.what, d.reason, dict(d.details))


def _fold_lateness(decisions: list[Decision]) -> list[Decision]:
    """A timer that fired late is recorded apart (`fired_late`, for operators); `why`
    tells it with what it caused: the resume of its wait (the next record at that
    profile, journey and step, within `FIRING`; the runtime stamps both with one
    instant, older logs may not), else a resume of its own where it fired; a
    schedule's, with the entry it made (none made: not told). Oldest first: sorted by
    instant, not by text (an ISO time with a fraction of a second sorts before the same
    second without one)."""
    told: list[Decision | None] = []
    held: dict[tuple[str, str, str], tuple[int, Decision]] = {}  # lateness: its slot, itself
    for d in decisions:
        if d.what == "fired_late":
            held[(d.profile_id, d.journey, d.step)] = (len(told), d)
            told.append(None if d.step == CRON_STEP else _late_resume(d))
            continue
        found = held.pop((d.profile_id, d.journey, d.step), None)
        if found is None and d.journey:
            found = held.pop((d.profile_id, d.journey, CRON_STEP), None)
        if found is not None and _caused(found[1], d):
            told[found[0]] = None
            told.append(replace(d, reason=f"{d.reason} ({_late(found[1])})",
                                details={**d.details, **found[1].details, "late": True}))
        else:
            told.append(d)
    return sorted((d for d in told if d is not None), key=lambda d: d.at)


def _caused(late: Decision, d: Decision) -> bool:
    """Whether `d` is what the late timer did: the resume of its wait, or a schedule's
    entry (or refusal), recorded in the same firing (a moment later at most)."""
    kinds = ("entered", "not_entered") if late.step == CRON_STEP else ("resumed",)
    return d.what in kinds and d.at - late.at <= FIRING


def _late(d: Decision) -> str:
    seconds = float(d.details.get("late_seconds", 0))
    return f"the timer fired {timedelta(seconds=round(seconds))} late"


def _late_resume(d: Decision) -> Decision:
    return replace(d, what="resumed", reason=f"timer_overdue: {_late(d)}",
                   details={**d.details, "late": True})


# --- the story ---------------------------------------------------------------------------

def story(user: str, entries: list[Why], journey: str | None = None) -> str:
    """The decisions as a readable timeline, one journey after another."""
    if not entries and journey is not None:
        return f"{user}: no decisions in {journey} (no event of theirs matched its entry)\n"
    if not entries:
        return f"{user}: no decisions recorded (no event of theirs matched a journey)\n"
    journeys: dict[str, list[Why]] = {}
    for entry in entries:
        journeys.setdefault(entry.journey, []).append(entry)
    lines = [f"{user}: {len(entries)} decision(s) in {len(journeys)} journey(s), oldest "
             "first, times in UTC"]
    for name, items in journeys.items():
        lines += ["", name]
        for e in items:
            when = e.at.replace("T", " ").removesuffix("Z").partition(".")[0]  # to the second
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
    if entry.kind == "waiting" and d.get("moved_by") == "apply" and "until" in d:
        return f" (its timer still due {d['until']})"
    return ""


__all__ = ["KINDS", "PLACEHOLDERS", "DecisionSource", "Why", "also_named", "profile_of", "story",
           "why", "why_records"]
