"""The marketers' dashboard, served by `journeyman serve` at `/` (docs/dashboard.md):
the login and session (`auth.py`), the pages and `GET /v1/journeys/{id}/stats`
(`routes.py`), the numbers and the statistics of splits (`stats.py`), Jinja2
`templates/` and `static/` files (Mermaid's own copy among them)."""

from engine.api.dashboard.routes import Dashboard, add_dashboard_routes

__all__ = ["Dashboard", "add_dashboard_routes"]
