"""The dashboard's pages (server-rendered Jinja2, a little JavaScript, Mermaid drawn in
the page from the copy in `static/`), the login, and `GET /v1/journeys/{id}/stats`.

Every page needs a session (else 302 to /login), except with `--dashboard-open`, which
lets clients on this machine read without one. Every table on a page can be downloaded
as CSV: the same URL with `csv=<table name>`. The only form that changes something,
retrying a parked failure, needs the editor role and the session's CSRF token.
"""

from __future__ import annotations

import csv
import hmac
import io
import json
import math
import re
import secrets
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from engine.api import openapi
from engine.api.auth import ApiError, require_admin
from engine.api.dashboard.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sessions,
    Viewer,
    is_loopback,
    verify_password,
)
from engine.api.dashboard.stats import (
    KPI_NAMES,
    heard_by,
    journey_kpis,
    journey_stats,
    journey_status,
    kpi_text,
    kpi_value,
    listeners,
    number,
    to_the_minute,
)
from engine.api.dashboard.timeline import step_of, timeline
from engine.core.times import iso
from engine.ports import Store
from engine.runtime.events import MAX_ID_CHARS
from engine.runtime.identity import profile_named
from engine.runtime.privacy import people_named
from journeys.compiler import CompiledJourney, mermaid
from rules.errors import did_you_mean

HERE = Path(__file__).parent
STATIC = {"mermaid.min.js": "text/javascript", "dashboard.js": "text/javascript",
          "live.js": "text/javascript",
          "dashboard.css": "text/css"}
MAX_DAYS = 3650
MAX_FORM_BYTES = 8192
# After LOCKOUT_FAILURES failed logins for a name or from an address within
# LOCKOUT_WINDOW, logins for that name or from that address are refused until the
# oldest of them is LOCKOUT_WINDOW old.
LOCKOUT_FAILURES = 5
# The login form's CSRF token, before there is a session: a random value in a cookie of
# its own and in the form, which must agree (a double-submit cookie). A page of another
# site can post a form here but can neither read nor set this cookie.
LOGIN_COOKIE = "jm_login"
LOGIN_FORM_SECONDS = 3600
LOCKOUT_WINDOW = timedelta(minutes=15)
LIVE_ROWS = 50  # the live stream's newest events and sends
LIVE_SECONDS = 3  # how often /live asks /live.json
STATUS_ACTIONS = {"pause": "paused", "resume": "active"}  # as `journeyman journeys ...`
LIST_KPIS = ("conversion", "ctr", "attributable_revenue", "opt_outs")
Table = tuple[list[str], list[list[Any]]]  # header, rows
FORMULA_STARTS = frozenset("=+-@\t\r")  # a CSV cell's first characters a spreadsheet runs

ProfileView = Callable[[str], dict[str, Any] | None]


@dataclass
class Dashboard:
    """What the dashboard shows and how it lets people in."""

    store: Any  # the Store port and the SQL store's analytics (a SqlStore)
    compiled: Mapping[str, CompiledJourney]
    now: Callable[[], datetime]
    secret: str
    profiles: ProfileView | None = None
    open_local: bool = False  # --dashboard-open: read-only, no login, this machine only
    # The public URL is https: cookies are Secure even on a request that reached us over
    # plain HTTP (a TLS proxy on another host, whose X-Forwarded-Proto uvicorn ignores).
    secure_cookies: bool = False


def add_dashboard_routes(app: FastAPI, dash: Dashboard) -> None:
    sessions = Sessions(dash.secret)
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]))
    env.filters["iso"] = lambda d: iso(d) if isinstance(d, datetime) else d
    env.filters["pct"] = lambda x: "-" if x is None else f"{100 * x:.1f}%"
    env.filters["num"] = number
    env.filters["minute"] = to_the_minute
    env.globals["kpi_value"] = kpi_value
    store = dash.store

    def secure(request: Request) -> bool:
        """Whether a cookie set in answer to `request` is sent over HTTPS only."""
        return dash.secure_cookies or request.url.scheme == "https"

    def viewer(request: Request) -> Viewer | None:
        found = sessions.read(request.cookies.get(SESSION_COOKIE), dash.now().timestamp())
        if found is not None:
            user = store.get_user(found[0])
            if user is not None:
                return Viewer(user.name, user.role, found[1])
        if dash.open_local and is_loopback(request.client.host if request.client else None):
            return Viewer("local", "viewer")
        return None

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urllib.parse.urlencode({"next": target}), 302)

    def page(request: Request, who: Viewer, template: str, title: str,
             tables: Mapping[str, Table], **context: Any) -> Response:
        wanted = request.query_params.get("csv")
        if wanted is not None:
            if wanted not in tables:
                return HTMLResponse("no such table", status_code=404)
            return _csv(wanted, tables[wanted])
        html = env.get_template(template).render(
            title=title, who=who, tables=tables, csrf=sessions.csrf_token(who.sid)
            if who.sid else "", query=request.url.query, **context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def error_page(who: Viewer, status: int, title: str, message: str) -> Response:
        """An error as a dashboard page (the header, the message, the way back)."""
        html = env.get_template("error.html").render(
            title=title, who=who, message=message, back="/", back_text="Back to the journeys",
            csrf=sessions.csrf_token(who.sid) if who.sid else "")
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def period(request: Request) -> tuple[int, datetime, datetime] | None:
        """`?days=N` (7 when not given) and its period; None for anything but a whole
        number from 1 to MAX_DAYS, as `GET /v1/journeys/{id}/stats` refuses it."""
        raw = request.query_params.get("days", "7").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
            return None
        days = int(raw)
        until = dash.now()
        return days, until - timedelta(days=days), until

    def bad_period(request: Request, who: Viewer) -> Response:
        return error_page(who, 400, "Bad period",
                          f"days={request.query_params.get('days', '')[:40]!r}: the "
                          f"period is a whole number of days from 1 to {MAX_DAYS}.")

    # --- login ------------------------------------------------------------------------

    def login_form(request: Request, *, error: str | None, next_page: str | None,
                   status_code: int = 200, headers: Mapping[str, str] | None = None
                   ) -> Response:
        """The login page, with a fresh form token in the form and in its cookie."""
        token = secrets.token_urlsafe(24)
        answer = HTMLResponse(env.get_template("login.html").render(
            title="Log in", who=None, error=error, next=_safe_next(next_page),
            login_token=token), status_code=status_code,
            headers={"Cache-Control": "no-store", **(headers or {})})
        answer.set_cookie(LOGIN_COOKIE, token, max_age=LOGIN_FORM_SECONDS, httponly=True,
                          samesite="strict", secure=secure(request), path="/login")
        return answer

    @app.get("/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return login_form(request, error=None, next_page=request.query_params.get("next"))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await _form(request)
        name, password = form.get("name", ""), form.get("password", "")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(),
                                                   form.get("login_token", "").encode()):
            return login_form(request, error="The login form expired or did not come from "
                              "this site: log in again.", next_page=form.get("next"),
                              status_code=403)
        ip = request.client.host if request.client else "?"
        now = dash.now()
        by_name, by_ip, oldest = store.login_failures(name[:255], ip,
                                                      now - LOCKOUT_WINDOW)
        if max(by_name, by_ip) >= LOCKOUT_FAILURES:
            wait = (oldest + LOCKOUT_WINDOW - now) if oldest else LOCKOUT_WINDOW
            minutes = max(1, math.ceil(wait.total_seconds() / 60))
            return login_form(
                request,
                error=f"Too many failed logins for this user or from this address "
                      f"({LOCKOUT_FAILURES} in {LOCKOUT_WINDOW.seconds // 60} minutes): "
                      f"logins are refused for now. Try again in {minutes} minute"
                      f"{'s' if minutes > 1 else ''}.",
                next_page=form.get("next"), status_code=429,
                headers={"Retry-After": str(minutes * 60)})
        user = store.get_user(name) if name and len(name) <= MAX_ID_CHARS else None
        if user is None or not verify_password(password, user.password_hash):
            store.record_login_failure(name[:255], ip, now)
            return login_form(request, error="unknown user or wrong password",
                              next_page=form.get("next"), status_code=401)
        store.clear_login_failures(user.name)
        answer = RedirectResponse(_safe_next(form.get("next")), 303)
        answer.delete_cookie(LOGIN_COOKIE, path="/login")
        answer.set_cookie(SESSION_COOKIE, sessions.issue(user.name, user.role,
                                                          dash.now().timestamp()),
                          max_age=SESSION_SECONDS, httponly=True, samesite="lax",
                          secure=secure(request), path="/")
        return answer

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        who = viewer(request)
        form = await _form(request)
        if who is None or not sessions.csrf_ok(who.sid, form.get("csrf")):
            return HTMLResponse("forbidden", status_code=403)
        answer = RedirectResponse("/login", 303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return HTMLResponse("not found", status_code=404)
        return FileResponse(HERE / "static" / name, media_type=STATIC[name],
                            headers={"Cache-Control": "max-age=3600"})

    # --- pages ------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def journeys_page(request: Request) -> Response:
        who = viewer(request)
        if who is None:
            return to_login(request)
        found = period(request)
        if found is None:
            return bad_period(request, who)
        days, since, until = found
        overview = store.journeys_overview(sorted(dash.compiled), since)
        rows = []
        for jid, journey in sorted(dash.compiled.items()):
            o = overview[jid]
            kpis = journey_kpis(store, jid, since, until)
            rows.append([jid, journey.model.title, journey_status(journey, store),
                         journey.model.version, o.in_flight, o.entries, o.sends,
                         "; ".join(kpi_text(k, kpis[k]) for k in LIST_KPIS)])
        tables = {"journeys": (["journey", "title", "status", "version", "in flight",
                                f"entries ({days} days)", f"sends ({days} days)",
                                f"KPIs ({days} days, change from the {days} before)"], rows)}
        return page(request, who, "journeys.html", "Journeys", tables, days=days)

    @app.get("/journeys/{journey_id}", include_in_schema=False)
    async def journey_page(journey_id: str, request: Request) -> Response:
        who = viewer(request)
        if who is None:
            return to_login(request)
        journey = dash.compiled.get(journey_id)
        if journey is None:
            return error_page(who, 404, "No such journey",
                              f"There is no journey {journey_id[:80]!r}"
                              + did_you_mean(journey_id, dash.compiled) + ".")
        found = period(request)
        if found is None:
            return bad_period(request, who)
        days, since, until = found
        stats = journey_stats(store, journey, since, until)
        tables: dict[str, Table] = {
            "steps": (["step", "kind", "now", "passed", "sent", "pending", "failed",
                       "skipped", "not rendered"],
                      [[s["id"], s["kind"], s["now"], s["passed"], s["sends"].get("sent", 0),
                        s["sends"].get("pending", 0), s["sends"].get("failed", 0),
                        s["sends"].get("skipped", 0), s["not_rendered"]]
                       for s in stats["steps"]]),
            "decisions": (["step", "what", "reason", "count"],
                          [[s["id"], d["what"], d["reason"], d["count"]]
                           for s in stats["steps"] for d in s["decisions"]]),
        }
        step_ids = [s["id"] for s in stats["steps"]]
        send_ids = [s["id"] for s in stats["steps"] if s["kind"] == "send"]
        tables["series"] = (
            ["day", "entered", *(f"passed {s}" for s in step_ids),
             *(f"sends {s}" for s in send_ids)],
            [[d["day"], d["entered"], *(d["passed"].get(s, 0) for s in step_ids),
              *(sum(d["sends"].get(s, {}).values()) for s in send_ids)]
             for d in stats["series"]])
        tables["kpis"] = (["KPI", "this period", "the period before", "change"],
                          [[k, stats["kpis"][k]["value"], stats["kpis"][k]["previous"],
                            stats["kpis"][k]["change"]] for k in KPI_NAMES])
        for step, split in stats["splits"].items():
            tables[f"split_{step}"] = (
                ["variant", "people", "converted", "conversion", "95% low", "95% high", "z",
                 "p-value", "reading"],
                [[v["variant"], v["people"], v["converted"], v["conversion"],
                  *(v["ci95"] or [None, None]), v["z"], v["p_value"], v["reading"]]
                 for v in split["variants"]])
        return page(request, who, "journey.html", journey.model.title, tables, stats=stats,
                    days=days, diagram=annotated_mermaid(journey, stats["steps"]),
                    done=request.query_params.get("done"))

    @app.post("/journeys/{journey_id}/{action}", include_in_schema=False)
    async def change_journey_status(journey_id: str, action: str,
                                    request: Request) -> Response:
        """Pause or resume a journey (editors): the store call `journeyman journeys
        pause/resume` makes."""
        who = viewer(request)
        if who is None:
            return to_login(request)
        form = await _form(request)
        if action not in STATUS_ACTIONS:
            return HTMLResponse("not found", status_code=404)
        if not who.can_edit:
            return HTMLResponse("this needs the editor role", status_code=403)
        if not sessions.csrf_ok(who.sid, form.get("csrf")):
            return HTMLResponse("missing or wrong CSRF token", status_code=403)
        if journey_id not in dash.compiled:
            return HTMLResponse("no such journey", status_code=404)
        if not store.set_journey_status(journey_id, STATUS_ACTIONS[action]):
            return HTMLResponse("this journey was never deployed with `journeyman apply`: "
                                "there is no status to change", status_code=409)
        return RedirectResponse(f"/journeys/{journey_id}?done={action}", 303)

    @app.get("/profiles", include_in_schema=False)
    async def profiles_page(request: Request) -> Response:
        who = viewer(request)
        if who is None:
            return to_login(request)
        wanted = request.query_params.get("q", "").strip()
        pid = _find_profile(store, wanted) if wanted else None
        if pid is None:
            waiting = _waiting_person(store, wanted) if wanted else None
            if waiting is not None:  # only events not handled yet: no profile so far
                return page(request, who, "profile.html", f"{wanted}: not handled yet",
                            {"not_handled": _not_handled(store, waiting)}, wanted=wanted,
                            profile=None, waiting=True)
            return page(request, who, "profile.html", "Profiles", {}, wanted=wanted,
                        profile=None)
        view = dash.profiles(pid) if dash.profiles else None
        profile = store.get_profile(pid)
        traits = dict(view["traits"]) if view else dict(profile.traits if profile else {})
        computed = dict(view["computed"]) if view else {}
        # an ended enrollment is in the engine's own state: show the step it left from
        left_from = {x.enrollment_id: x.step for x in store.recorded_exits(pid)}
        tables: dict[str, Table] = {
            "traits": (["trait", "value"], [[k, v] for k, v in sorted(traits.items())]),
            "computed": (["computed trait", "value"],
                         [[k, v] for k, v in sorted(computed.items())]),
            "identities": (["kind", "value"], [list(i) for i in store.identities_of(pid)]),
            "enrollments": (["journey", "version", "step", "status", "entered", "ended",
                             "exit reason", "variants"],
                            [[e.journey, e.version, left_from.get(e.id, step_of(e.state)),
                              e.status, iso(e.entered_at),
                              iso(e.ended_at) if e.ended_at else "", e.exit_reason or "",
                              ", ".join(f"{k}={v}" for k, v in e.variants.items())]
                             for e in store.profile_enrollments(pid)]),
            "timeline": (["at", "what", "journey", "step", "detail"], timeline(store, pid)),
        }
        return page(request, who, "profile.html", f"Profile {pid}", tables, wanted=wanted,
                    profile=pid, why=why_story(store, pid))

    listening = listeners(dash.compiled)

    def live_tables() -> dict[str, Table]:
        events, sends = store.recent_activity(LIVE_ROWS)
        events = [[*row, heard_by(str(row[3]), str(row[4]), listening)] for row in events]
        return {"events": (["id", "received", "source", "type", "event", "profile",
                            "journeys listening"], events),
                # the outbox's last_error: also why a send that went out later waited
                # (`quiet_hours` beside `sent` read as an error)
                "sends": (["id", "queued", "journey", "step", "channel", "status", "profile",
                           "sent", "last delay or error"], sends)}

    @app.get("/live", include_in_schema=False)
    async def live_page(request: Request) -> Response:
        who = viewer(request)
        if who is None:
            return to_login(request)
        return page(request, who, "live.html", "Live", live_tables(),
                    every=LIVE_SECONDS)

    @app.get("/live.json", include_in_schema=False)
    async def live_json(request: Request) -> Response:
        """What /live polls: the newest events and sends, as {table: {head, rows}}."""
        if viewer(request) is None:
            return JSONResponse({"error": "log in again"}, status_code=401)
        return JSONResponse({"at": iso(dash.now()),
                             **{name: {"head": head, "rows": rows}
                                for name, (head, rows) in live_tables().items()}},
                            headers={"Cache-Control": "no-store"})

    @app.get("/failures", include_in_schema=False)
    async def failures_page(request: Request) -> Response:
        who = viewer(request)
        if who is None:
            return to_login(request)
        rows = [[f.id, f.kind, f.ref, f.profile_id, f.journey, f.step, f.attempts,
                 iso(f.parked_at), f.error] for f in store.failures()]
        tables = {"failures": (["id", "kind", "ref", "profile", "journey", "step", "attempts",
                                "parked at", "error"], rows)}
        return page(request, who, "failures.html", "Parked failures", tables,
                    done=request.query_params.get("done"))

    @app.post("/failures/{failure_id}/retry", include_in_schema=False)
    async def retry_failure(failure_id: str, request: Request) -> Response:
        who = viewer(request)
        if who is None:
            return to_login(request)
        form = await _form(request)
        if not who.can_edit:
            return HTMLResponse("this needs the editor role", status_code=403)
        if not sessions.csrf_ok(who.sid, form.get("csrf")):
            return HTMLResponse("missing or wrong CSRF token", status_code=403)
        if not _whole(failure_id) or not store.retry_failure(int(failure_id), dash.now()):
            return HTMLResponse("no such parked failure", status_code=404)
        return RedirectResponse(f"/failures?done={failure_id}", 303)

    # --- the same numbers as JSON -----------------------------------------------------

    @app.get("/v1/journeys/{journey_id}/stats", summary="A journey's numbers (admin key)",
             **openapi.journey_stats_route(MAX_DAYS))
    async def journey_stats_json(journey_id: str, request: Request) -> JSONResponse:
        require_admin(request, store)
        raw = request.query_params.get("days", "7")
        if not _whole(raw) or not 1 <= int(raw) <= MAX_DAYS:
            raise ApiError(400, f"days must be a whole number from 1 to {MAX_DAYS}")
        journey = dash.compiled.get(journey_id)
        if journey is None:
            raise ApiError(404, f"no journey {journey_id[:80]!r}")
        until = dash.now()
        return JSONResponse(journey_stats(store, journey, until - timedelta(days=int(raw)),
                                          until))


STATE_LINE = re.compile(r'^(\s+state ")(.*)(" as )(\S+)$')


def annotated_mermaid(journey: CompiledJourney, steps: Sequence[Mapping[str, Any]]) -> str:
    """The journey's diagram, each step's box saying how many are on it now and how many
    passed it in the period."""
    by_id = {s["id"]: s for s in steps}
    lines = []
    for line in mermaid(journey).splitlines():
        match = STATE_LINE.match(line)
        if match and match.group(4) in by_id:
            s = by_id[match.group(4)]
            lines.append(f"{match.group(1)}{match.group(2)}<br/>now {s['now']} · passed "
                         f"{s['passed']}{match.group(3)}{match.group(4)}")
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def why_story(store: Store, profile_id: str) -> list[str] | None:
    """The profile's `why` story (engine/runtime/why.py, as `journeyman why` tells it),
    shown above the timeline; None when there is nothing to tell."""
    from engine.runtime.why import story, why

    entries = why(store, profile_id)
    if not entries:
        return None
    return story(profile_id, entries).splitlines()


def _find_profile(store: Any, wanted: str) -> str | None:
    """A profile by user id, anonymous id, e-mail, or its own id."""
    if "\x00" in wanted or len(wanted) > MAX_ID_CHARS:
        return None
    by_identity = profile_named(store, wanted) or store.profile_for("email", wanted)
    if by_identity:
        return str(by_identity)
    if store.get_profile(wanted) is not None:
        return wanted
    if "@" not in wanted:
        return None
    by_trait = store.profile_with_trait("email", wanted)
    return None if by_trait is None else str(by_trait)


def _waiting_person(store: Store, wanted: str) -> str | None:
    """The queue of a person whose only rows are events not handled yet (accepted and
    waiting for a worker, or parked after failing every attempt, before their profile
    was made), by the userId or anonymousId they name (engine/runtime/privacy.py
    `people_named`, as `journeyman profiles export` finds them)."""
    if "\x00" in wanted or len(wanted) > MAX_ID_CHARS:
        return None
    return next(iter(people_named(store, wanted).values()), None)


def _not_handled(store: Store, queue: str) -> Table:
    """The events waiting in `queue` (their inbox rows), oldest first."""
    rows = sorted(store.export_person(queue).get("inbox", []), key=lambda r: r["id"])
    return (["id", "type", "event", "status", "attempts", "received", "last error"],
            [[r["id"], _field(r["event"], "type"), _field(r["event"], "event"),
              r["status"], r["attempts"], _field(r["event"], "receivedAt"),
              r.get("last_error") or ""] for r in rows])


def _field(event: Any, name: str) -> str:
    """A field of an inbox row's event (a document; JSON text on a store that keeps it
    so)."""
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except ValueError:
            return ""
    value = event.get(name) if isinstance(event, Mapping) else None
    return "" if value is None else str(value)


def _whole(text: str) -> bool:
    """`text` is a whole number `int()` takes: ASCII digits (`"²".isdigit()` is true, and
    `int("²")` a ValueError, a 500), not more than 18 of them (past 4,300 `int()` refuses
    too)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no host: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form, read under a cap (no multipart: the dashboard's forms are tiny)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    try:
        pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)


def _csv(name: str, table: Table) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table[0])
    for row in table[1]:
        # A cell that a spreadsheet would run as a formula is quoted as text (OWASP's
        # list of first characters; an empty cell stays empty: `"" in "=+-@"` is true,
        # and every empty cell was written as a lone `'`).
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in FORMULA_STARTS else c
                         for c in row])
    return Response(buffer.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
