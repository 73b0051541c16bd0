"""Endpoints for operators and orchestrators: `/healthz` (the process is up),
`/readyz` (the database answers and its schema is current: send traffic here) and
`/metrics` (Prometheus text format, engine/runtime/metrics.py). On `serve` they sit
beside the API; `journeyman worker --http-port` serves them alone (`create_ops_app`).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from engine.runtime.metrics import Metrics
from engine.runtime.shared_call import SharedCall

Readiness = Callable[[], str | None]  # None when ready, else why not


READY_TIMEOUT_S = 2.0  # a probe's answer within this, whatever the database does
READY_FRESH_S = 1.0  # probes closer together than this share one look


def add_ops_routes(app: FastAPI, ready: Readiness, metrics: Metrics | None) -> None:
    # One look at the database at a time, however many probes wait (engine/runtime/
    # shared_call.py): stuck probes took the API's pooled connections and ingest failed.
    probe = SharedCall(ready, timeout=READY_TIMEOUT_S, fresh=READY_FRESH_S, name="readyz")

    @app.get("/healthz", summary="The process is up", tags=["operations"])
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/readyz", summary="The database answers and its schema is current",
             tags=["operations"], responses={503: {"description": "Not ready, with why"}})
    async def readyz() -> JSONResponse:
        try:
            reason = await run_in_threadpool(probe)
        except TimeoutError:
            reason = f"the database did not answer within {READY_TIMEOUT_S:g} s"
        except Exception as exc:  # the look itself failed: not ready, and why
            cause = exc.__cause__ or exc
            reason = (f"the database did not answer ({type(cause).__name__})"
                      if isinstance(cause, TimeoutError)  # a driver's or socket's own
                      else f"the readiness check failed ({type(cause).__name__})")
        if reason is not None:
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True})

    if metrics is not None:
        @app.get("/metrics", summary="Prometheus metrics", tags=["operations"],
                 response_class=Response)
        async def prometheus() -> Response:
            body = await run_in_threadpool(metrics.render)
            return Response(body, media_type=CONTENT_TYPE_LATEST)


def create_ops_app(ready: Readiness, metrics: Metrics | None) -> FastAPI:
    app = FastAPI(title="journeyman worker", version="1")
    add_ops_routes(app, ready, metrics)
    return app
