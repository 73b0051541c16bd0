"""`render_send`: exactly what a send step delivers, rendered when the step runs (so the
message shows the profile as it was then) and queued in the outbox in the same unit.
`journeyman preview` renders through it too."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from engine.core.model import Profile, Send
from engine.ports import OutboxEntry
from engine.runtime.tracking import TrackingLinks, rewrite
from engine.runtime.unsubscribe import PROFILE, Person, UnsubscribeLinks, one_click_headers
from journeys.compiler import CompiledJourney
from journeys.model import Policy, Tracking


def render_send(journey: CompiledJourney, send: Send, profile: Profile,
                links: UnsubscribeLinks, now: datetime, *,
                person: Person | None = None, tracking: TrackingLinks | None = None,
                policy: Policy | None = None) -> OutboxEntry:
    """Exactly what a send step delivers: the template rendered with the unsubscribe
    link in scope (for `person`, engine/runtime/identity.py `person_of`; default: the
    profile id), the RFC 8058 headers on email, the address from the profile; with
    `tracking`, an email's links tracked and an open pixel added, unless turned off
    (engine/runtime/tracking.py). Raises TemplateRenderError. (`journeyman preview`
    uses it too, without tracking.)"""
    to = send.to or _address(profile, send.channel)
    whom = person or Person(PROFILE, send.profile_id)
    unsubscribe = links.url(whom, send.channel)  # signed once: in the body and the headers
    context = {**send.context, "unsubscribe_url": unsubscribe}
    rendered = journey.templates.render(send.template, context)
    if send.channel == "email":  # RFC 8058 one-click unsubscribe
        rendered = replace(rendered, headers={
            **rendered.headers, **one_click_headers(unsubscribe)})
        settings = tracking_settings(journey, policy)
        template = journey.templates.templates.get(send.template)
        if tracking is not None and (template is None or template.track) and (
                settings.clicks or settings.opens):
            rendered = rewrite(rendered, send.key, tracking, clicks=settings.clicks,
                               opens=settings.opens, keep=(f"{links.base_url}/u/",))
    return OutboxEntry(send.key, send.enrollment_id, send.profile_id, send.journey, send.step,
                       send.channel, to, rendered, now)


def _address(profile: Profile, channel: str) -> str | None:
    trait = {"email": "email", "sms": "phone", "push": "device_token"}.get(channel)
    value = profile.traits.get(trait) if trait else None
    return str(value) if value is not None else None


def tracking_settings(journey: CompiledJourney, policy: Policy | None) -> Tracking:
    """The journey's own `policy: tracking:`, else the global policy's."""
    own = journey.model.policy.tracking if journey.model.policy is not None else None
    return own or (policy.tracking if policy is not None else Tracking())
