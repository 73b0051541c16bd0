"""The tracked-link redirect (`GET /c/{token}`) and the open pixel (`GET /o/{token}`)
behind the links in every tracked email (engine/runtime/tracking.py makes them).

A click answers 302 to the URL the signed token names, at once; an altered or unknown
token answers 404 and redirects nowhere, so `/c/` is no open redirect. A person's click
becomes an `Email Clicked` event for them; a scanner's is counted, not acted on. The
token alone decides the answer: a click that cannot be recorded (the database locked or
away) still redirects, and the pixel is still an image; the loss is logged. A link
replayed in a loop is answered every time but recorded at most RECORD_LIMIT times per
RECORD_WINDOW (engine/runtime/tracking.py `Recorder`): each request wrote a row."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from engine.api import openapi
from engine.api.auth import ApiError
from engine.ports import Store
from engine.runtime.metrics import Metrics
from engine.runtime.tracking import PIXEL, Outcome, Recorder, TrackingLinks
from engine.runtime.transients import known_transient

log = logging.getLogger("journeyman.api")

NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def location(url: str) -> str:
    """`url` as a `Location` header can carry it: every character but printable ASCII
    percent-encoded as UTF-8 (a browser reads `%C5%81` as `Ł`). A link's URL is what was
    rendered, a trait's value in it included (`https://shop.example/?n=Łukasz`); as it
    was, a character beyond Latin-1 answered 500 and a control character (`&#10;` in an
    href) no answer at all, and the person was redirected nowhere."""
    return "".join(c if "!" <= c <= "~" else quote(c, safe="") for c in url)


def add_tracking_routes(app: FastAPI, store: Store, links: TrackingLinks,
                        now: Callable[[], datetime], new_id: Callable[[], str], *,
                        scanner_window: timedelta,
                        on_accepted: Callable[[], None] | None = None,
                        metrics: Metrics | None = None) -> None:
    recorder = Recorder(store, now, new_id, scanner_window=scanner_window)

    async def recorded(kind: str, record: Callable[..., Outcome], key: str,
                       *args: object, **kwargs: object) -> Outcome | None:
        """The recording's outcome, or None when it failed: a person who clicked a link
        in an email is sent on (a 503 page asking a browser to send the request again,
        or a 500, helps nobody), and an open's image is still an image."""
        try:
            return await run_in_threadpool(record, key, *args, **kwargs)
        except Exception as exc:
            transient = known_transient(store.is_transient, exc)
            log.log(logging.WARNING if transient else logging.ERROR,
                    "a tracked %s of message %s was not recorded: %s", kind, key,
                    type(exc).__name__, exc_info=not transient)
            return None

    def counted(kind: str, outcome: Outcome | None) -> None:
        if outcome is None:
            return
        if outcome.limited and metrics is not None:
            metrics.engagements_unrecorded.labels(kind).inc()
        if outcome.engagement is not None and metrics is not None:
            human = outcome.engagement.human
            metrics.engagements.labels(kind, "person" if human else "scanner").inc()
        if outcome.queued and on_accepted is not None:
            on_accepted()

    async def click(token: str, request: Request) -> Response:
        found = links.verify_click(token, now())
        if found is None:
            raise ApiError(404, "this link is not valid")
        key, position, url = found
        counted("click", await recorded("click", recorder.click, key, position, url,
                                        method=request.method,
                                        user_agent=request.headers.get("user-agent")))
        return Response(status_code=302, headers={"Location": location(url), **NO_STORE})

    # HEAD too: some scanners only look (their "clicks" are counted as a scanner's).
    for method in ("GET", "HEAD"):
        app.add_api_route("/c/{token}", click, methods=[method],
                          operation_id=f"click_{method.lower()}", **openapi.click_route())

    @app.get("/o/{token}", **openapi.pixel_route())
    async def pixel(token: str, request: Request) -> Response:
        key = links.verify_open(token, now())
        if key is not None:
            counted("open", await recorded("open", recorder.open, key,
                                           user_agent=request.headers.get("user-agent")))
        # An invalid token still gets the image: a broken picture in someone's mail
        # helps nobody, and the answer says nothing about which tokens are genuine.
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
