"""`create_app`: the HTTP API over a store (Segment ingest, admin endpoints, the
unsubscribe pages, `/health`). `now` and `new_id` are the edge's clock and ids.

Every error is `{"success": false, "reason": ...}` with a 4xx: our own (`ApiError`) and
the router's (an unknown path is 404, a wrong method 405); a transient database error
(a lost connection, a lock) is the same with a 503 and `Retry-After`
(engine/api/unavailable.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from engine.api import openapi
from engine.api.admin import JourneyStats, ProfileView, add_admin_routes
from engine.api.auth import ApiError
from engine.api.cors import IngestCors
from engine.api.dashboard import Dashboard, add_dashboard_routes
from engine.api.deliverability import add_deliverability_routes
from engine.api.ingest import INGEST_PATHS, add_ingest_routes
from engine.api.ops import Readiness, add_ops_routes
from engine.api.quota import RateLimitedError
from engine.api.tracking import add_tracking_routes
from engine.api.unavailable import TransientErrorsAnswer503
from engine.api.unsubscribe import add_unsubscribe_routes
from engine.ports import Store
from engine.runtime.metrics import Metrics
from engine.runtime.tracking import DEFAULT_SCANNER_WINDOW, TrackingLinks
from engine.runtime.unsubscribe import UnsubscribeLinks


def create_app(store: Store, now: Callable[[], datetime], *,
               new_id: Callable[[], str], profiles: ProfileView | None = None,
               unsubscribe: UnsubscribeLinks | None = None,
               on_accepted: Callable[[], None] | None = None,
               ready: Readiness | None = None, metrics: Metrics | None = None,
               tracking: TrackingLinks | None = None,
               scanner_window: timedelta = DEFAULT_SCANNER_WINDOW,
               stats: JourneyStats | None = None,
               dashboard: Dashboard | None = None) -> FastAPI:
    """`on_accepted` is called after events were stored (the service wakes its event
    loop with it); `ready` and `metrics` back `/readyz` and `/metrics`; `tracking`
    serves the tracked links and open pixels, `stats` a journey's KPIs (`GET
    /v1/journeys/{id}/kpis`); `dashboard`: the marketers' pages at `/` and `GET
    /v1/journeys/{id}/stats`."""
    app = FastAPI(title="journeyman event API", version="1",
                  description="Segment-compatible tracking API of journeyman. Every error "
                              "answer is `{\"success\": false, \"reason\": \"...\"}`.")

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        # An error raised before the body was read to its end closes the connection, so
        # the server does not go on reading (and dropping) what the client still sends.
        headers = {"Connection": "close"} if exc.close else {}
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(exc.retry_after)
        return JSONResponse({"success": False, "reason": exc.reason}, status_code=exc.status,
                            headers=headers or None)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405:
            # The router names the methods of the first route that matched the path;
            # a path served by several routes (GET and POST /u/{token}) has them all.
            headers = {**(headers or {}), "Allow": ", ".join(_methods(app, request))}
        return JSONResponse({"success": False, "reason": str(exc.detail)},
                            status_code=exc.status_code, headers=headers)

    accept = add_ingest_routes(app, store, now, new_id, on_accepted=on_accepted,
                               metrics=metrics)
    add_ops_routes(app, ready or (lambda: None), metrics)
    add_admin_routes(app, store, profiles, store, stats)
    add_deliverability_routes(app, store, now)
    if unsubscribe is not None:
        add_unsubscribe_routes(app, unsubscribe, accept, store, now)
    if tracking is not None:
        add_tracking_routes(app, store, tracking, now, new_id, scanner_window=scanner_window,
                            on_accepted=on_accepted, metrics=metrics)
    if dashboard is not None:
        add_dashboard_routes(app, dashboard)

    @app.get("/health", summary="Is the API up", response_model=openapi.Health)
    async def health() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(TransientErrorsAnswer503, store=store)
    app.add_middleware(IngestCors, paths=INGEST_PATHS)  # a web page's public key
    openapi.install(app)
    return app


def _methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of `app` serves at the request's path."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, BaseRoute) and route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)
