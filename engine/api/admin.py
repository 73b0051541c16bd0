"""Admin endpoints (an admin key): the profile view, a journey's KPIs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from engine.api import openapi
from engine.api.auth import ApiError, require_admin
from engine.ports import KeyStore
from engine.runtime.events import MAX_ID_CHARS

ProfileView = Callable[[str], dict[str, Any] | None]
JourneyStats = Callable[[str], dict[str, Any] | None]


def add_admin_routes(app: FastAPI, store: KeyStore, profiles: ProfileView | None,
                     stats: JourneyStats | None = None) -> None:
    @app.get("/v1/profiles/{user_id}", summary="A profile (admin key)",
             **openapi.admin_route())
    async def profile(user_id: str, request: Request) -> JSONResponse:
        require_admin(request, store)
        # No id holds a NUL or is longer than the id columns (ingest refuses them), and
        # PostgreSQL would refuse to even look such a value up.
        usable = "\x00" not in user_id and len(user_id) <= MAX_ID_CHARS
        found = profiles(user_id) if profiles and usable else None
        if found is None:
            raise ApiError(404, f"no profile {user_id[:80]!r}")
        return JSONResponse(found)

    if stats is not None:
        @app.get("/v1/journeys/{journey}/stats", summary="A journey's KPIs (admin key)",
                 **openapi.stats_route())
        async def journey_stats(journey: str, request: Request) -> JSONResponse:
            require_admin(request, store)
            found = await run_in_threadpool(stats, journey) if journey.isascii() else None
            if found is None:
                raise ApiError(404, f"no journey {journey[:80]!r}")
            return JSONResponse(found)
