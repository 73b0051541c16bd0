"""Admin endpoints (an admin key): the profile view, why (every decision the engine
made for the person, engine/runtime/why.py), a person's export and erasure
(docs/privacy.md), a journey's KPIs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from engine.api import openapi
from engine.api.auth import ApiError, require_admin
from engine.ports import Store
from engine.runtime.events import MAX_ID_CHARS
from engine.runtime.privacy import export_document, find_person, forget
from engine.runtime.why import DecisionSource, why

ProfileView = Callable[[str], dict[str, Any] | None]
JourneyStats = Callable[[str], dict[str, Any] | None]


def _usable(user_id: str) -> bool:
    # No id holds a NUL or is longer than the id columns (ingest refuses them), and
    # PostgreSQL would refuse to even look such a value up.
    return "\x00" not in user_id and len(user_id) <= MAX_ID_CHARS


def add_admin_routes(app: FastAPI, store: Store, profiles: ProfileView | None,
                     decisions: DecisionSource | None = None,
                     stats: JourneyStats | None = None) -> None:
    @app.get("/v1/profiles/{user_id}", summary="A profile (admin key)",
             **openapi.admin_route())
    async def profile(user_id: str, request: Request) -> JSONResponse:
        require_admin(request, store)
        found = profiles(user_id) if profiles and _usable(user_id) else None
        if found is None:
            raise ApiError(404, f"no profile {user_id[:80]!r}")
        return JSONResponse(found)

    @app.get("/v1/profiles/{user_id}/why", summary="Why: every decision made for a person "
             "(admin key)", **openapi.why_route())
    async def profile_why(user_id: str, request: Request,
                          journey: str | None = None) -> JSONResponse:
        require_admin(request, store)
        found = (why(decisions, user_id, journey=journey)
                 if decisions is not None and _usable(user_id) else None)
        if found is None:
            raise ApiError(404, f"no profile {user_id[:80]!r}")
        return JSONResponse([entry.as_json() for entry in found])

    def _person(user_id: str) -> str:
        pid = find_person(store, user_id) if _usable(user_id) else None
        if pid is None:
            raise ApiError(404, f"no profile {user_id[:80]!r}")
        return pid

    @app.get("/v1/profiles/{user_id}/export", summary="Everything held about a person "
             "(admin key)", **openapi.export_route())
    async def export(user_id: str, request: Request) -> JSONResponse:
        require_admin(request, store)
        pid = await run_in_threadpool(_person, user_id)
        return JSONResponse(await run_in_threadpool(export_document, store, pid))

    @app.delete("/v1/profiles/{user_id}", summary="Erase a person (admin key)",
                **openapi.forget_route())
    async def erase(user_id: str, request: Request) -> JSONResponse:
        require_admin(request, store)
        pid = await run_in_threadpool(_person, user_id)
        deleted = await run_in_threadpool(forget, store, pid)
        return JSONResponse({"deleted": deleted})

    if stats is not None:
        @app.get("/v1/journeys/{journey}/kpis", summary="A journey's KPIs (admin key)",
                 **openapi.stats_route())
        async def journey_stats(journey: str, request: Request) -> JSONResponse:
            require_admin(request, store)
            found = await run_in_threadpool(stats, journey) if journey.isascii() else None
            if found is None:
                raise ApiError(404, f"no journey {journey[:80]!r}")
            return JSONResponse(found)
