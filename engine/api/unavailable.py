"""A request that fails on a transient database error answers `503` with
`Retry-After`, as JSON like every other error, not a bare `500`.

Transient is the store's word (`Store.is_transient`): a lost connection (PostgreSQL
restarted, its backends terminated; the first statement on a connection whose server
went away within its last second idle fails, ADR 0011), a lock or a deadlock, a
statement timeout. The request is safe to send again (an event stored by a COMMIT
that failed to answer is recognised by its messageId and not counted twice): Segment's
and RudderStack's libraries retry a 5xx, and `Retry-After` tells any other client when.
Logged as one warning line, without a traceback: an alert on ERROR lines then hears only
of real failures; `/readyz` and `journeyman_transient_errors_total` say the database is
away.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.ports import Store
from engine.runtime.transients import known_transient

log = logging.getLogger("journeyman.api")

RETRY_AFTER_S = 1
REASON = "the database is unavailable for a moment: send the request again"


class TransientErrorsAnswer503:
    """ASGI middleware (outside the routes' own error handlers)."""

    def __init__(self, app: ASGIApp, store: Store) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started or not known_transient(self.store.is_transient, exc):
                raise
            log.warning("%s %s: a transient database error (%s); answered 503",
                        scope.get("method", ""), scope.get("path", ""), type(exc).__name__)
            response = JSONResponse({"success": False, "reason": REASON}, status_code=503,
                                    headers={"Retry-After": str(RETRY_AFTER_S)})
            await response(scope, receive, send)
