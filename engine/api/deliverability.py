"""`POST /v1/deliverability` (admin key): bounces and complaints from an email provider's
webhook, in one generic shape (docs/engagement.md maps the common providers' payloads to
it). Hard bounces and complaints suppress the address for every journey."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.api import openapi
from engine.api.auth import ApiError, require_admin
from engine.api.body import parse_json, read_body
from engine.ports import Store
from engine.runtime.suppression import (
    COMPLAINT,
    HARD_BOUNCE,
    SOFT_BOUNCE,
    ProviderEvent,
    record_delivery_problem,
)

MAX_BODY = 512 * 1024
MAX_EVENTS = 1000
TEXT = "^[^\\x00]*$"
ADDRESS = "^[^@\\x00-\\x20\\x7f]+@[^@\\x00-\\x20\\x7f]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


class DeliverabilityEvent(_Strict):
    """One bounce or complaint."""

    type: Literal["bounce", "complaint"] = Field(description="What the provider reports.")
    email: str = Field(min_length=3, max_length=320, pattern=ADDRESS,
                       description="The address that bounced or complained.")
    bounce_type: Literal["hard", "soft"] = Field(
        default="hard", description="For a bounce: hard (permanent; suppresses the address) "
                                    "or soft (temporary; counted only).")
    message: str | None = Field(default=None, max_length=512, pattern=TEXT,
                                description="The journeyman send key of the message, when "
                                            "known: the bounce counts against it.")
    reason: str | None = Field(default=None, max_length=1000, pattern=TEXT,
                               description="The provider's words (a diagnostic code, say).")


class DeliverabilityCall(_Strict):
    """Provider events, in the generic shape."""

    events: list[DeliverabilityEvent] = Field(max_length=MAX_EVENTS)


class DeliverabilityAnswer(BaseModel):
    success: Literal[True] = True
    recorded: int = Field(description="Events taken.")
    suppressed: int = Field(description="Addresses newly put on the suppression list.")


def add_deliverability_routes(app: FastAPI, store: Store,
                              now: Callable[[], datetime]) -> None:
    @app.post("/v1/deliverability", **openapi.deliverability_route(DeliverabilityCall,
                                                                    DeliverabilityAnswer))
    async def deliverability(request: Request) -> JSONResponse:
        info = require_admin(request, store)
        body = parse_json(await read_body(request, MAX_BODY))
        try:
            call = DeliverabilityCall.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ApiError(400, f"{where}: {first['msg']}") from None
        events = [ProviderEvent(
            COMPLAINT if e.type == "complaint" else
            HARD_BOUNCE if e.bounce_type == "hard" else SOFT_BOUNCE,
            e.email, e.message, e.reason) for e in call.events]

        def record() -> int:
            at = now()
            with store.transaction(stamped=True):  # engagements and suppressions
                return sum(record_delivery_problem(store, event, source=f"api:{info.name}",
                                                   now=at) for event in events)

        suppressed = await run_in_threadpool(record)
        return JSONResponse({"success": True, "recorded": len(events),
                             "suppressed": suppressed})
