"""The unsubscribe pages behind the signed links in every message (RFC 8058 one-click for
email; the same link in an SMS or push body; the links themselves are made in
engine/runtime/unsubscribe.py)."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from engine.api import openapi
from engine.api.ingest import Accept
from engine.ports import Engagement, IdentityStore, Store, Suppression
from engine.runtime.identity import person_of, profile_of_person
from engine.runtime.transients import known_transient
from engine.runtime.unsubscribe import ADDRESS, ANONYMOUS, Person, UnsubscribeLinks

log = logging.getLogger("journeyman.api")

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def _page(title: str, text: str, form: str = "", status: int = 200,
          headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), text=html.escape(text),
                                    form=form), status_code=status, headers=headers)


ONE_CLICK_FORM = ('<form method="post"><input type="hidden" name="List-Unsubscribe" '
                  'value="One-Click"><button type="submit">Unsubscribe</button></form>')


def _unsubscribed(channel: str) -> HTMLResponse:
    return _page("Unsubscribed", f"You will not get {channel} messages from us any more.")


def _not_valid() -> HTMLResponse:
    return _page("Link not valid", "This unsubscribe link is not valid.", status=404)


def unsubscribe_event(store: IdentityStore, person: Person,
                      channel: str) -> dict[str, Any] | None:
    """The identify that unsubscribes `person` today, or None when the store holds no
    profile for them (nothing to change, and no ghost profile made for a link). The
    person is resolved through the identities now, so a link sent to a profile since
    merged into another unsubscribes that one; the event names the profile by one of its
    identities, so the worker, resolving it again in order, lands on the same profile."""
    profile_id = profile_of_person(store, person)
    if profile_id is None:
        return None
    today = person_of(store, profile_id)
    who = {"anonymousId": today.value} if today.kind == ANONYMOUS else {"userId": today.value}
    return {"type": "identify", **who, "traits": {"consent": {channel: False}},
            "context": {"source": "unsubscribe"}}


def count_opt_out(store: Store, person: Person, channel: str, now: datetime) -> None:
    """Count the opt-out against the last message the person was sent on the channel
    (last touch, as goals are attributed: docs/engagement.md)."""
    profile_id = profile_of_person(store, person)
    if profile_id is None:
        return
    sent = [r for r in store.outbox_records(profile_id, status="sent")
            if r.entry.channel == channel and r.sent_at is not None and r.sent_at <= now]
    if sent:
        entry = max(sent, key=lambda r: r.sent_at or now).entry
        store.record_engagement(Engagement("unsubscribe", entry.key, entry.profile_id,
                                           entry.journey, entry.step, now))


def suppress_address(store: Store, address: Person, channel: str, now: datetime) -> None:
    """The opt-out of a link that names an address, not a person (a send to someone
    else's address: engine/runtime/unsubscribe.py): the address goes on the suppression
    list as the link holds it, its hash; no one's consent changes. The first time, the
    opt-out is counted against the message the link came in (the send's own row: its
    profile is the sender's, as for a bounce of that message), with the reason
    `recipient_address`: the recipient's address opted out, not that profile."""
    added = store.suppress(Suppression(address.value, "unsubscribed", now, "unsubscribe_link",
                                       {"channel": channel}))
    record = store.sent_message(address.message) if added and address.message else None
    if record is not None and record.entry.channel == channel:
        entry = record.entry
        store.record_engagement(Engagement("unsubscribe", entry.key, entry.profile_id,
                                           entry.journey, entry.step, now,
                                           reason="recipient_address"))


def add_unsubscribe_routes(app: FastAPI, links: UnsubscribeLinks, accept: Accept,
                           store: Store, now: Callable[[], datetime]) -> None:
    """`GET /u/{token}` shows a page with a button; `POST /u/{token}` (the button, or a
    mail client's RFC 8058 one-click POST) unsubscribes. No login: the token is signed."""

    def verified(token: str) -> tuple[Person, str] | None:
        # A genuine token is base64url and a dot: anything else (say /u/abc.%C3%A9) is
        # not a link of ours, and must not reach the signature check (which takes ASCII).
        if not token.isascii():
            return None
        return links.verify(token, now())

    @app.get("/u/{token}", response_class=HTMLResponse,
             **openapi.unsubscribe_route("The unsubscribe page of a link in an email"))
    async def unsubscribe_page(token: str) -> HTMLResponse:
        found = verified(token)
        if found is None:
            return _not_valid()
        return _page("Unsubscribe", f"Stop receiving {found[1]} messages from us?",
                     ONE_CLICK_FORM)

    @app.post("/u/{token}", response_class=HTMLResponse,
              **openapi.unsubscribe_route("Unsubscribe (the page's button, or RFC 8058 "
                                          "one-click)"))
    async def unsubscribe_now(token: str) -> HTMLResponse:
        found = verified(token)
        if found is None:
            return _not_valid()
        person, channel = found
        try:
            if person.kind == ADDRESS:
                await run_in_threadpool(suppress_address, store, person, channel, now())
                return _unsubscribed(channel)
            event = await run_in_threadpool(unsubscribe_event, store, person, channel)
            if event is not None:
                await run_in_threadpool(count_opt_out, store, person, channel, now())
                # An identify through the inbox, like any accepted call, so the change
                # is handled in order with the profile's other events; a new messageId
                # each time, so unsubscribing again after re-subscribing works.
                await accept([event], None, "unsubscribe")
        except Exception as exc:
            if not known_transient(store.is_transient, exc):
                raise
            # A person at the page's button, not a client that reads JSON (the API's
            # 503 answer): a page saying so, as a 503 a mail client may retry.
            log.warning("an unsubscribe from %s was not recorded (%s); answered 503",
                        channel, type(exc).__name__)
            return _page("Please try again", "We could not record your request just now: "
                         "nothing changed. Please press the button again in a minute.",
                         ONE_CLICK_FORM, status=503, headers={"Retry-After": "60"})
        return _unsubscribed(channel)
