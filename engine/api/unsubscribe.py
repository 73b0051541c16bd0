"""The unsubscribe pages behind the signed links in every email (RFC 8058 one-click;
the links themselves are made in engine/runtime/unsubscribe.py)."""

from __future__ import annotations

import html

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from engine.api import openapi
from engine.api.ingest import Accept
from engine.runtime.unsubscribe import UnsubscribeLinks

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def _page(title: str, text: str, form: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=html.escape(title), text=html.escape(text),
                                    form=form), status_code=status)


def add_unsubscribe_routes(app: FastAPI, links: UnsubscribeLinks, accept: Accept) -> None:
    """`GET /u/{token}` shows a page with a button; `POST /u/{token}` (the button, or a
    mail client's RFC 8058 one-click POST) unsubscribes. No login: the token is signed."""

    async def unsubscribe(profile_id: str, channel: str) -> None:
        # An identify through the inbox, like any accepted call, so the change is
        # handled in order with the profile's other events; a new messageId each time,
        # so unsubscribing again after re-subscribing works.
        await accept([{"type": "identify", "userId": profile_id,
                       "traits": {"consent": {channel: False}},
                       "context": {"source": "unsubscribe"}}], None, "unsubscribe")

    def verified(token: str) -> tuple[str, str] | None:
        # A genuine token is base64url and a dot: anything else (say /u/abc.%C3%A9) is
        # not a link of ours, and must not reach the signature check (which takes ASCII).
        if not token.isascii():
            return None
        return links.verify(token)

    @app.get("/u/{token}", response_class=HTMLResponse,
             **openapi.unsubscribe_route("The unsubscribe page of a link in an email"))
    async def unsubscribe_page(token: str) -> HTMLResponse:
        found = verified(token)
        if found is None:
            return _page("Link not valid", "This unsubscribe link is not valid.", status=404)
        form = ('<form method="post"><input type="hidden" name="List-Unsubscribe" '
                'value="One-Click"><button type="submit">Unsubscribe</button></form>')
        return _page("Unsubscribe", f"Stop receiving {found[1]} messages from us?", form)

    @app.post("/u/{token}", response_class=HTMLResponse,
              **openapi.unsubscribe_route("Unsubscribe (the page's button, or RFC 8058 "
                                          "one-click)"))
    async def unsubscribe_now(token: str) -> HTMLResponse:
        found = verified(token)
        if found is None:
            return _page("Link not valid", "This unsubscribe link is not valid.", status=404)
        profile_id, channel = found
        await unsubscribe(profile_id, channel)
        return _page("Unsubscribed", f"You will not get {channel} messages from us any more.")
