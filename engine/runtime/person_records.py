"""Decisions about a person that belong to no journey: each consent change that came
through the API (with its source), and each merge refused between two known people
(engine/runtime/identity.py). The export, `journeyman decisions` and the dashboard's
timeline show them (not `why`: not a kind of its contract); they are erased with the
person."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.core.model import Profile
from engine.ports import Decision
from engine.runtime.unit import UnitOfWork


def _shown(value: Any) -> str:
    """A consent value as the YAML and JSON people write it: true, false, unset."""
    if value is None or isinstance(value, bool):
        return {True: "true", False: "false", None: "unset"}[value]
    return "other"


def record_consent(unit: UnitOfWork, before: Profile | None, after: Profile,
                    event: Mapping[str, Any], now: datetime) -> None:
    """A record of each consent change that came through the API: channel, value,
    when, and its source (the API key's name, or `unsubscribe` for a link). Shown in
    the export and `journeyman decisions`; erased with the person. (Events fed in other ways --
    the testing kit, simulate, replay -- carry no source and leave no record.)"""
    old = (before.traits.get("consent") if before is not None else None) or {}
    new = after.traits.get("consent") or {}
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return
    source = str(event.get("source"))
    for channel in sorted(set(new) | set(old)):
        if new.get(channel) != old.get(channel):
            unit.record_decision(Decision(
                now, after.id, "", str(channel), "consent",
                f"consent.{channel}: {_shown(new.get(channel))}",
                {"channel": str(channel), "value": new.get(channel),
                 "previous": old.get(channel), "source": source}))

def record_refusal(unit: UnitOfWork, mine: str, other: str, kind: str,
                    now: datetime) -> None:
    """Two known profiles shared an identifier and were kept apart (identity.py):
    a decision on each, naming neither the other profile nor the identifier's value."""
    for pid, reason in ((mine, f"not merged: {kind} shared with another known person; "
                               "it now points here"),
                        (other, f"not merged: {kind} shared with another known person; "
                                "history kept here")):
        unit.record_decision(Decision(now, pid, "", "", "not_merged", reason,
                                      {"identifier": kind}))
