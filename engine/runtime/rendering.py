"""`render_send`: exactly what a send step delivers, rendered when the step runs (so the
message shows the profile as it was then) and queued in the outbox in the same unit.
`journeyman preview` renders through it too."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from engine.core.model import Profile, Send
from engine.ports import OutboxEntry
from engine.runtime.unsubscribe import PROFILE, Person, UnsubscribeLinks
from journeys.compiler import CompiledJourney


def render_send(journey: CompiledJourney, send: Send, profile: Profile,
                links: UnsubscribeLinks, now: datetime, *,
                person: Person | None = None) -> OutboxEntry:
    """Exactly what a send step delivers: the template rendered with the unsubscribe
    link in scope (for `person`, engine/runtime/identity.py `person_of`; default: the
    profile id), the RFC 8058 headers on email, the address from the profile.
    Raises TemplateRenderError. (`journeyman preview` uses it too.)"""
    to = send.to or _address(profile, send.channel)
    whom = person or Person(PROFILE, send.profile_id)
    context = {**send.context, "unsubscribe_url": links.url(whom, send.channel)}
    rendered = journey.templates.render(send.template, context)
    if send.channel == "email":  # RFC 8058 one-click unsubscribe
        rendered = replace(rendered, headers={
            **rendered.headers, **links.headers(whom, send.channel)})
    return OutboxEntry(send.key, send.enrollment_id, send.profile_id, send.journey, send.step,
                       send.channel, to, rendered, now)


def _address(profile: Profile, channel: str) -> str | None:
    trait = {"email": "email", "sms": "phone", "push": "device_token"}.get(channel)
    value = profile.traits.get(trait) if trait else None
    return str(value) if value is not None else None
