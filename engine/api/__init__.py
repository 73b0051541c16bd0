"""The HTTP API (FastAPI): Segment-compatible ingest (`ingest.py`), hostile request
bodies read under caps (`body.py`), who is calling (`auth.py`), what a key may send
(`quota.py`: scopes and rates), admin endpoints (`admin.py`), the unsubscribe pages
(`unsubscribe.py`), the OpenAPI document (`openapi.py`), assembled by `create_app`
(`app.py`)."""

from engine.api.app import create_app
from engine.api.auth import ApiError, KeyCache
from engine.api.ingest import MAX_BATCH_BYTES, MAX_EVENT_BYTES

__all__ = ["MAX_BATCH_BYTES", "MAX_EVENT_BYTES", "ApiError", "KeyCache", "create_app"]
