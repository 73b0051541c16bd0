"""Admin endpoints (an admin key): the profile view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine.api.auth import ApiError, require_admin
from engine.ports import KeyStore

ProfileView = Callable[[str], dict[str, Any] | None]


def add_admin_routes(app: FastAPI, store: KeyStore, profiles: ProfileView | None) -> None:
    @app.get("/v1/profiles/{user_id}", summary="A profile (admin key)")
    async def profile(user_id: str, request: Request) -> JSONResponse:
        require_admin(request, store)
        found = profiles(user_id) if profiles else None
        if found is None:
            raise ApiError(404, f"no profile {user_id!r}")
        return JSONResponse(found)
