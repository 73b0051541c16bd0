"""CORS for the ingest routes alone: a web page may post events to the API with a
public key (`journeyman keys create --public`, docs/privacy.md), as Segment's
browser library posts to api.segment.io. A browser sends JSON with an
`Authorization` header only after a preflight `OPTIONS` that the server answers with
`Access-Control-Allow-*`; without it, every page's call was refused by the browser
(`OPTIONS /v1/track` was a 405).

Any origin may post (`*`): the key, not the page, says who may send, and a public key
is public by design. No credentials (cookies) are allowed, so the dashboard's session
is never sent along; the admin, dashboard and tracking routes answer no CORS at all.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Content-Encoding")
PREFLIGHT_CACHE_S = 600  # a browser asks again after ten minutes at most


class IngestCors:
    """ASGI middleware: Starlette's CORS handling, for the paths in `paths` only."""

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.cors = CORSMiddleware(app, allow_origins=["*"], allow_methods=["POST"],
                                   allow_headers=list(ALLOWED_HEADERS),
                                   allow_credentials=False, max_age=PREFLIGHT_CACHE_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) in self.paths:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path as the routes see it: behind a proxy's `root_path` (the ASGI path
    includes it), and without a trailing slash (`/v1/track/` is redirected to it)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root):]
    return path.rstrip("/") or "/"
