"""`render_send`: exactly what a send step delivers, rendered when the step runs (so the
message shows the profile as it was then) and queued in the outbox in the same unit.
`journeyman preview` renders through it too."""

from __future__ import annotations

from datetime import datetime

from engine.core.model import Profile, Send
from engine.ports import OutboxEntry
from engine.runtime.tracking import TrackingLinks, tracked_parts
from engine.runtime.unsubscribe import PROFILE, Person, UnsubscribeLinks, one_click_headers
from journeys.compiler import CompiledJourney
from journeys.header_text import one_line
from journeys.link_hosts import TrustedHosts
from journeys.model import Policy, Tracking
from journeys.template_links import template_hosts


def render_send(journey: CompiledJourney, send: Send, profile: Profile,
                links: UnsubscribeLinks, now: datetime, *,
                person: Person | None = None, tracking: TrackingLinks | None = None,
                policy: Policy | None = None,
                refused: dict[str, None] | None = None) -> OutboxEntry:
    """Exactly what a send step delivers: the template rendered with the unsubscribe
    link in scope (for `person`, engine/runtime/identity.py `person_of`; default: the
    profile id), the RFC 8058 headers on email, the address from the profile; with
    `tracking`, an email's links tracked and an open pixel added, unless turned off
    (engine/runtime/tracking.py); the links left untracked for their host go in
    `refused`. Raises TemplateRenderError. (`journeyman preview` uses it too.)"""
    to = send.to or _address(profile, send.channel)
    whom = person or Person(PROFILE, send.profile_id)
    unsubscribe = links.url(whom, send.channel)  # signed once: in the body and the headers
    context = {**send.context, "unsubscribe_url": unsubscribe}
    rendered = journey.templates.render(send.template, context)
    if send.channel == "email":
        to = one_line(to) if to is not None else None  # the To header: one line
        html, text = rendered.html, rendered.text
        settings = tracking_settings(journey, policy)
        template = journey.templates.templates.get(send.template)
        if tracking is not None and (template is None or template.track) and (
                settings.clicks or settings.opens):
            html, text = tracked_parts(html, text, send.key, tracking, clicks=settings.clicks,
                                       opens=settings.opens, keep=(f"{links.base_url}/u/",),
                                       hosts=trusted_hosts(journey, send.template, policy),
                                       refused=refused)
        rendered = rendered.with_parts(html=html, text=text, headers={  # RFC 8058 one-click
            **rendered.headers, **one_click_headers(unsubscribe)})
    return OutboxEntry(send.key, send.enrollment_id, send.profile_id, send.journey, send.step,
                       send.channel, to, rendered, now)


# The trait that holds a person's address on each channel that needs one; a send on one
# of these channels without an address is skipped as `no_address` (the dispatcher)
ADDRESS_TRAITS = {"email": "email", "sms": "phone", "push": "device_token"}


def _address(profile: Profile, channel: str) -> str | None:
    trait = ADDRESS_TRAITS.get(channel)
    value = profile.traits.get(trait) if trait else None
    return str(value) if value is not None else None


def tracking_settings(journey: CompiledJourney, policy: Policy | None) -> Tracking:
    """The journey's own `policy: tracking:`, else the global policy's."""
    return _own_tracking(journey) or (policy.tracking if policy is not None else Tracking())


def _own_tracking(journey: CompiledJourney) -> Tracking | None:
    return journey.model.policy.tracking if journey.model.policy is not None else None


def trusted_hosts(journey: CompiledJourney, template: str,
                  policy: Policy | None) -> TrustedHosts:
    """The hosts a link of `template`, sent by `journey`, may be tracked to: those the
    template writes, and `tracking: hosts:` of the policy and of the journey's own
    policy (both: a journey's `tracking:` that turns opens off should not untrack the
    shop's links)."""
    own = _own_tracking(journey)
    listed = (*(policy.tracking.hosts if policy is not None else ()),
              *(own.hosts if own is not None else ()))
    return TrustedHosts.listed(listed).adding(template_hosts(journey.templates, template))
