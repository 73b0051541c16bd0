"""`create_app`: the HTTP API over a store (Segment ingest, admin endpoints, the
unsubscribe pages, `/health`). `now` and `new_id` are the edge's clock and ids."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.api.admin import ProfileView, add_admin_routes
from engine.api.auth import ApiError
from engine.api.ingest import add_ingest_routes
from engine.api.ops import Readiness, add_ops_routes
from engine.api.unsubscribe import add_unsubscribe_routes
from engine.ports import Store
from engine.runtime.metrics import Metrics
from engine.runtime.unsubscribe import UnsubscribeLinks


def create_app(store: Store, now: Callable[[], datetime], *,
               new_id: Callable[[], str], profiles: ProfileView | None = None,
               unsubscribe: UnsubscribeLinks | None = None,
               on_accepted: Callable[[], None] | None = None,
               ready: Readiness | None = None, metrics: Metrics | None = None) -> FastAPI:
    """`on_accepted` is called after events were stored (the service wakes its event
    loop with it); `ready` and `metrics` back `/readyz` and `/metrics`."""
    app = FastAPI(title="journeyman event API", version="1",
                  description="Segment-compatible tracking API of journeyman.")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"success": False, "reason": exc.reason}, status_code=exc.status)

    accept = add_ingest_routes(app, store, now, new_id, on_accepted=on_accepted,
                               metrics=metrics)
    add_ops_routes(app, ready or (lambda: None), metrics)
    add_admin_routes(app, store, profiles)
    if unsubscribe is not None:
        add_unsubscribe_routes(app, unsubscribe, accept, store, now)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app
