"""Admin endpoints (an admin key): the profile view, why (every decision the engine
made for the person, engine/runtime/why.py), a person's export and erasure
(docs/privacy.md), a journey's KPIs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from engine.api import openapi
from engine.api.auth import ApiError, require_admin
from engine.ports import Store
from engine.runtime.events import MAX_ID_CHARS
from engine.runtime.identity import NAMING_KINDS
from engine.runtime.privacy import (
    export_document,
    find_person,
    forget,
    other_people_named,
    people_named,
)
from engine.runtime.why import DecisionSource, also_named, why, why_records
from rules.errors import did_you_mean

ProfileView = Callable[[str], dict[str, Any] | None]
# why's answer header when the id names more than one person: the kinds of id it also is
# (an empty list of decisions says so too; ?by= says which person is meant)
ALSO_NAMED = "Journeyman-Also-Named"
JourneyStats = Callable[[str], dict[str, Any] | None]


def _usable(user_id: str) -> bool:
    # No id holds a NUL or is longer than the id columns (ingest refuses them), and
    # PostgreSQL would refuse to even look such a value up.
    return "\x00" not in user_id and len(user_id) <= MAX_ID_CHARS


# `?by=`: the kind of id the path names (engine/runtime/identity.py NAMING_KINDS); an
# enum in the OpenAPI document, checked here (a 400 like every other bad request)
IdKind = Annotated[str | None, Query(json_schema_extra={"enum": list(NAMING_KINDS)})]


def _kind(by: str | None) -> str | None:
    if by is not None and by not in NAMING_KINDS:
        raise ApiError(400, f"by must be one of {', '.join(NAMING_KINDS)}")
    return by


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
    async def profile_why(user_id: str, request: Request, journey: str | None = None,
                          by: IdKind = None) -> JSONResponse:
        require_admin(request, store)
        kind = _kind(by)
        found = (why(decisions, user_id, journey=journey, by=kind)
                 if decisions is not None and _usable(user_id) else None)
        if found is None or decisions is None:
            raise ApiError(404, f"no profile {user_id[:80]!r}")
        if journey is not None and not found:  # a typo, not "no decisions" (as the CLI)
            known = {v.journey for v in await run_in_threadpool(store.deployed_versions)}
            if journey not in known:
                raise ApiError(404, f"no journey {journey[:80]!r} deployed"
                               + did_you_mean(journey, known))
        # as `journeyman why` says on stderr: the id names others too, the first is told
        others = also_named(decisions, user_id, kind)
        return JSONResponse(why_records(found, others), headers=(
            {ALSO_NAMED: ", ".join(others)} if others else None))

    def _person(user_id: str, by: str | None, erasing: bool = False) -> str:
        if erasing and by is None and _usable(user_id):
            others = other_people_named(store, user_id)
            if others is not None:  # erase no one by a guess
                raise ApiError(409, f"{others[:300]}; say which with ?by=")
        pid = find_person(store, user_id, by) if _usable(user_id) else None
        if pid is None:
            raise ApiError(404, f"no profile {user_id[:80]!r}")
        return pid

    @app.get("/v1/profiles/{user_id}/export", summary="Everything held about a person "
             "(admin key)", **openapi.export_route())
    async def export(user_id: str, request: Request, by: IdKind = None) -> JSONResponse:
        require_admin(request, store)
        kind = _kind(by)
        pid = await run_in_threadpool(_person, user_id, kind)
        document = await run_in_threadpool(export_document, store, pid)
        # as `journeyman profiles export` says on stderr: the id names others too (the
        # userId's person is exported), by the kinds of id it is for them
        others = ([k for k, p in (await run_in_threadpool(people_named, store, user_id)
                                  ).items() if p != pid] if kind is None else [])
        return JSONResponse(document, headers={ALSO_NAMED: ", ".join(others)} if others
                            else None)

    @app.delete("/v1/profiles/{user_id}", summary="Erase a person (admin key)",
                **openapi.forget_route())
    async def erase(user_id: str, request: Request, by: IdKind = None) -> JSONResponse:
        require_admin(request, store)
        pid = await run_in_threadpool(_person, user_id, _kind(by), True)
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
