"""`journeyman preview`: render exactly what a send step would deliver to a profile.

The step runs through the same code as in production: the `send` step handler builds
the Send (with its template context: profile, enrolling event, enrollment, journey),
and `engine.runtime.rendering.render_send` renders it, adds the unsubscribe link and headers and
picks the address. Only the enrollment is made up: a new one, entered now by `event`.
What the policy would do with it at that moment (skip it for want of consent, hold it
for quiet hours) is said too, by the gate the dispatcher asks (frequency caps left out:
a preview has no sends before it).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.core import new_enrollment
from engine.core.model import Profile, Send
from engine.core.steps import send as send_step
from engine.core.steps.base import StepRun
from engine.core.times import iso
from engine.ports import OutboxEntry, SystemClock
from engine.runtime.events import E164
from engine.runtime.policy import SEND, PolicyGate, Verdict
from engine.runtime.rendering import ADDRESS_TRAITS, render_send
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.service import wire
from engine.store.memory import InMemoryStore
from journeys.loader import load_path
from journeys.steps import SendStep
from rules import did_you_mean
from rules.errors import JourneymanError


class PreviewError(JourneymanError):
    """No such journey or step, or the step is not a send."""


@dataclass(frozen=True, slots=True)
class Preview:
    entry: OutboxEntry
    policy: Verdict = SEND  # what the policy would do with it (caps left out)
    # links sent as written, not tracked: their host is neither written in the template
    # nor listed in the policy's `tracking: hosts:` (journeys/template_links.py)
    untracked_links: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        r, v = self.entry.rendered, self.policy
        return {"journey": self.entry.journey, "step": self.entry.step,
                "channel": self.entry.channel, "to": self.entry.to, "template": r.template,
                "subject": r.subject, "text": r.text, "html": r.html, "body": r.body,
                "payload": r.payload, "headers": r.headers,
                "policy": {"action": v.action, "reason": v.reason or None,
                           "until": iso(v.until) if v.until else None,
                           "details": dict(v.details)},
                "warnings": self.warnings, "untracked_links": list(self.untracked_links)}

    @property
    def warnings(self) -> list[str]:
        """What would stop the message on its way although it renders: no address (the
        dispatcher skips it as `no_address`), or one its channel cannot send to; and the
        links that will not be tracked because their host comes from data."""
        return [*address_warnings(self.entry.channel, self.entry.to),
                *(untracked_warning(url) for url in self.untracked_links)]

    def lines(self) -> list[str]:
        r, e, v = self.entry.rendered, self.entry, self.policy
        out = [f"journey: {e.journey}   step: {e.step}   channel: {e.channel}   "
               f"template: {r.template}", f"to: {e.to or '(no address)'}"]
        out += [f"warning: {w}" for w in self.warnings]
        if v.action == "skip":
            consent = v.details.get("consent")
            out.append(f"policy: skipped ({v.reason})" + (
                f": consent.{e.channel} is {consent}" if consent else "")
                + "; this profile would get nothing")
        elif v.action == "defer":
            out.append(f"policy: deferred ({v.reason}) until "
                       f"{iso(v.until) if v.until else '?'}")
        out += [f"{name}: {value}" for name, value in r.headers.items()]
        if r.subject is not None:
            out.append(f"subject: {r.subject}")
        out.append("")
        out.append(r.summary)
        return out


# An e-mail address as far as a preview can tell: something, one @, a domain, no spaces
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def address_warnings(channel: str, to: str | None) -> list[str]:
    """Why a send's address would not reach anyone: none for a channel that needs one
    (engine/runtime/dispatch.py skips it as `no_address`), an e-mail address without
    its @ (`5`), a phone number not in the E.164 form the SMS channel sends to."""
    if not to:
        return ([f"no address: the profile has no {ADDRESS_TRAITS[channel]} trait; the "
                 "engine would skip this send (no_address)"]
                if channel in ADDRESS_TRAITS else [])
    shown = to if len(to) <= 80 else to[:77] + "..."
    if channel == "email" and not _EMAIL.fullmatch(to):
        return [f"{shown!r} is not an e-mail address (the profile's email trait); the mail "
                "server would refuse it"]
    if channel == "sms" and not E164.fullmatch(to):
        return [f"{shown!r} is not a phone number in E.164 form (like +34600000000: '+', "
                "the country code and the number, no spaces); the SMS provider would "
                "refuse it"]
    return []


def untracked_warning(url: str) -> str:
    shown = url if len(url) <= 80 else url[:77] + "..."
    return (f"link {shown!r} is not tracked: its host is neither written in the template "
            "nor listed in the policy's tracking: hosts: (it comes from data; a tracked "
            "redirect to it would be an open redirect); it is sent as written "
            "(docs/engagement.md)")


def preview(journeys: str | Path, journey_id: str, step_id: str, profile: dict[str, Any], *,
            now: datetime, event: dict[str, Any] | None = None,
            base_url: str = "https://journeyman.invalid") -> Preview:
    library = load_path(journeys)
    if journey_id not in library.journeys:
        raise PreviewError(f"no journey {journey_id!r}"
                           + did_you_mean(journey_id, library.journeys) + " (have: "
                           f"{', '.join(sorted(library.journeys))})")
    # A throwaway secret: a preview's unsubscribe link shows the shape, valid nowhere.
    links = UnsubscribeLinks(secrets.token_urlsafe(32), base_url)
    wiring = wire(library, store=InMemoryStore(), clock=SystemClock(), channels={},
                  unsubscribe=links)
    journey = wiring.compiled[journey_id]
    step = next((s for s in journey.model.steps if s.id == step_id), None)
    if not isinstance(step, SendStep):
        sends = [s.id for s in journey.model.steps if isinstance(s, SendStep)]
        what = "is not a send step" if step is not None else "does not exist"
        raise PreviewError(f"step {step_id!r} of {journey_id} {what} (send steps: "
                           f"{', '.join(sends) or 'none'})")
    stored = Profile(str(profile.get("id", "preview")), dict(profile.get("traits") or {}),
                     dict(profile.get("computed") or {}))
    view = wiring.computed.view(stored, now, library.policy.timezone)
    entry_event = event or {"type": "track", "event": journey.model.entry.event or
                            f"{journey_id} entry", "userId": stored.id, "properties": {},
                            "timestamp": iso(now)}
    enrollment = new_enrollment(journey, view, entry_event, 0, now)
    run = StepRun(journey, enrollment, view, now)
    send_step.run(run, step)
    [command] = [c for c in run.commands if isinstance(c, Send)]
    # Tracked as the engine tracks (its links signed with the throwaway secret too).
    refused: dict[str, None] = {}
    entry = render_send(journey, command, view, links, now,
                        tracking=wiring.runner.tracking, policy=library.policy,
                        refused=refused)
    gate = PolicyGate(library.policy, {journey_id: journey.model.policy})
    return Preview(entry, gate.decide(entry, stored, now, lambda *_: []), tuple(refused))
