"""The OpenAPI document (`/openapi.json`): what every endpoint takes and every answer it
can give, so that schema-driven tools and generated clients work.

The routes read their bodies themselves (hostile input is checked under caps before it is
parsed, `body.py`), so FastAPI sees no body parameters: the request bodies are described
here, as JSON Schema built from the one table of event fields the server validates with
(`engine.runtime.events.FIELDS`), and added to the document's components by `install`.
What JSON Schema cannot say (a request of at most 500 KB, an event of at most 32 KB,
nesting at most 64 deep, finite numbers) is in the descriptions.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from engine.api.body import MAX_BATCH_BYTES
from engine.runtime.events import (
    EVENT_TYPES,
    FIELDS,
    ID,
    ID_INT_RANGE,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    NAME,
    OBJECT,
    TIMESTAMP,
    YEARS,
)

MAX_EVENT_KB, MAX_REQUEST_KB = MAX_EVENT_BYTES // 1024, MAX_BATCH_BYTES // 1024

# --- answers -----------------------------------------------------------------------------


class Success(BaseModel):
    """Every accepted call's answer."""

    success: Literal[True] = True


class Failure(BaseModel):
    """Every error's answer: nothing of the request was stored."""

    success: Literal[False] = False
    reason: str = Field(description="What is wrong, in words meant for the developer.")


class Identity(BaseModel):
    kind: str = Field(description="user_id, anonymous_id, profile (an id the engine "
                      "chose: docs/privacy.md), or a trait named by --identify-by")
    value: str


class EnrollmentView(BaseModel):
    journey: str
    version: int
    step: str
    status: str
    entered_at: str = Field(description="ISO 8601, UTC")
    exit_reason: str | None


class ProfileView(BaseModel):
    """A profile as the admin endpoint shows it."""

    id: str
    traits: dict[str, Any]
    computed: dict[str, Any] = Field(description="computed traits (orders_count, rfm_*, ...)")
    identities: list[Identity]
    enrollments: list[EnrollmentView]


class WhyEntry(BaseModel):
    """One decision the engine made for a person (`journeyman why --json`)."""

    at: str = Field(description="ISO 8601, UTC")
    profile: str
    journey: str
    step: str | None
    kind: str = Field(description="entered, not_entered, waiting, resumed, branch, split, "
                                  "sent, skipped, deferred, failed, goal or exited")
    reason: str
    details: dict[str, Any] = Field(description="the values that decided it")
    also_named: dict[str, str] = Field(
        description="the other people the id names when ?by= does not say which (a userId "
                    "and an anonymousId of the same text), by kind: their profile; {} when "
                    "it names one (header Journeyman-Also-Named: the kinds)")


class PersonExport(BaseModel):
    """Everything held about a person (`journeyman profiles export`)."""

    id: str = Field(description="their profile's id; for a person whose only rows are "
                                "events not handled yet, the key of the queue they wait "
                                "in (docs/privacy.md)")
    profile_ids: list[str]
    traits: dict[str, Any]
    computed: dict[str, Any]
    identities: list[Identity]
    events: list[dict[str, Any]]
    enrollments: list[dict[str, Any]]
    sends: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    not_handled: list[dict[str, Any]] = Field(
        description="events accepted but not handled yet: their inbox rows (`status` "
                    "pending, or parked after failing every attempt)")
    tables: dict[str, list[dict[str, Any]]]


class Forgotten(BaseModel):
    deleted: dict[str, int] = Field(description="rows deleted per table")


class Health(BaseModel):
    ok: Literal[True] = True


_ANSWERS: dict[int, str] = {
    400: "Malformed: not JSON (or not gzip/deflate as declared), nested too deeply, a "
         "number that is not finite, a lone surrogate, or an event that breaks a rule "
         "(the reason says which). Nothing of the request is stored.",
    401: "No key, or an unknown or revoked one.",
    403: "The key is known but may not do this: an admin key is needed, or (ingest) the "
         "key lacks the scope an event needs (alias, consent.* traits, email/phone "
         "traits). Nothing of the request is stored.",
    429: "The key is over its rate (events per second); retry after `Retry-After` "
         "seconds. Nothing of the request is stored.",
    404: "Not found.",
    409: "The id names two people (a userId and an anonymousId of the same text): nothing "
         "is erased until `?by=user_id|anonymous_id|profile` says which.",
    413: f"The body is larger than {MAX_REQUEST_KB} KB ({MAX_BATCH_BYTES} bytes), as sent or "
         "once inflated. Nothing is stored; the connection is closed.",
    503: "The database is away for a moment (a lost connection, a lock, a statement "
         "timeout): send the request again after `Retry-After` seconds. An event stored "
         "before the error is recognised by its messageId and not counted twice.",
}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer", "minimum": 1}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Failure, "description": _ANSWERS[code],
                   **({"headers": _RETRY_AFTER} if code in (429, 503) else {})}
            for code in codes}


SECURITY: list[dict[str, list[str]]] = [{"keyAsBasicUser": []}, {"keyAsBearer": []}]
SECURITY_SCHEMES = {
    "keyAsBasicUser": {"type": "http", "scheme": "basic",
                       "description": "HTTP Basic with the key as the user name and an "
                                      "empty password (what Segment's libraries send)."},
    "keyAsBearer": {"type": "http", "scheme": "bearer",
                    "description": "The key as a Bearer token."},
}

# --- request bodies ----------------------------------------------------------------------

# The characters Python's str.strip() removes, which the server's "blank" means, as a
# regular-expression class: Python's \s has \x1c-\x1f, ECMA's and Rust's do not.
BLANK_CHARACTERS = "\\s\\x1c-\\x1f"
NO_NUL = "^[^\\x00]*$"
NOT_BLANK = f"^[^\\x00]*[^\\x00{BLANK_CHARACTERS}][^\\x00]*$"
YEAR_WINDOW = "^(19|2[0-9])[0-9]{2}-"
assert YEARS == (1900, 2999), "YEAR_WINDOW spells the years out"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_INTEGER_ID = {"type": "integer", "minimum": ID_INT_RANGE[0], "maximum": ID_INT_RANGE[1]}
_VALUES: dict[str, dict[str, Any]] = {
    "JsonValue": {
        "description": "Any JSON value whose strings hold no NUL character and no lone "
                       f"surrogate, whose numbers are finite, nested at most {MAX_DEPTH} "
                       "deep in its event.",
        "anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"},
                  {"type": "boolean"}, {"type": "null"},
                  {"type": "array", "items": _ref("JsonValue")}, _ref("JsonObject")]},
    "JsonObject": {"type": "object", "additionalProperties": _ref("JsonValue"),
                   "propertyNames": {"pattern": NO_NUL}},
    ID: {"description": f"A string of at most {MAX_ID_CHARS} characters (a blank one "
                        "counts as none) or a 64-bit integer.",
         "anyOf": [{"type": "string", "maxLength": MAX_ID_CHARS, "pattern": NO_NUL},
                   _INTEGER_ID, {"type": "null"}]},
    "KnownId": {"anyOf": [{"type": "string", "maxLength": MAX_ID_CHARS, "pattern": NOT_BLANK},
                          _INTEGER_ID]},
    NAME: {"anyOf": [{"type": "string", "pattern": NO_NUL}, {"type": "null"}]},
    OBJECT: {"anyOf": [_ref("JsonObject"), {"type": "null"}]},  # ObjectOrNull
    TIMESTAMP: {"description": f"ISO 8601 (RFC 3339) date and time, the year as written "
                               f"{YEARS[0]}-{YEARS[1]}; without an offset it is UTC.",
                "anyOf": [{"type": "string", "format": "date-time", "pattern": YEAR_WINDOW},
                          {"type": "null"}]},
    "Context": {"anyOf": [{"type": "object", "additionalProperties": _ref("JsonValue"),
                           "propertyNames": {"pattern": NO_NUL},
                           "properties": {"traits": _ref("ObjectOrNull")}},
                          {"type": "null"}]},
}
_SCHEMA_NAMES = {ID: "Id", NAME: "NameOrNull", OBJECT: "ObjectOrNull", TIMESTAMP: "Timestamp"}


def _value_ref(kind: str) -> dict[str, str]:
    return _ref(_SCHEMA_NAMES.get(kind, kind))


def _event(kind: str, *, in_batch: bool) -> dict[str, Any]:
    """The JSON Schema of one `kind` call's body (or of one event in a batch)."""
    properties: dict[str, Any] = {}
    for field in FIELDS:
        if kind in field.calls:
            schema = _ref("Context") if field.name == "context" else _value_ref(field.kind)
            properties[field.name] = {**schema, "description": field.about}
    required: list[str] = []
    if kind == "track":
        properties["event"] = {**{"type": "string", "pattern": NOT_BLANK},
                               "description": properties["event"]["description"]}
        required.append("event")
    if in_batch:
        properties["type"] = {"const": kind, "description": "The call (default: track)."}
        if kind != "track":
            required.append("type")
    else:
        properties["writeKey"] = {"type": ["string", "null"], "pattern": NO_NUL,
                                  "description": "The write key, when it is not in the "
                                                 "Authorization header."}
    def known(name: str) -> dict[str, Any]:
        return {"required": [name], "properties": {name: _ref("KnownId")}}

    # an alias names its userId and the id before it: a previousId, or else its
    # anonymousId (engine/runtime/events.py `normalize`); other calls one of two ids
    ids = ({"allOf": [known("userId"), {"anyOf": [known("previousId"),
                                                   known("anonymousId")]}]}
           if kind == "alias" else {"anyOf": [known("userId"), known("anonymousId")]})
    return {
        "type": "object",
        "description": f"A Segment {kind} call. At most {MAX_EVENT_KB} KB as JSON. Other "
                       "fields are allowed (and not used).",
        "properties": properties,
        "required": required,
        "additionalProperties": _ref("JsonValue"),
        "propertyNames": {"pattern": NO_NUL},
        **ids,
    }


def _schemas() -> dict[str, Any]:
    schemas = {_SCHEMA_NAMES.get(name, name): schema for name, schema in _VALUES.items()}
    for kind in EVENT_TYPES:
        schemas[f"{kind.capitalize()}Call"] = _event(kind, in_batch=False)
        schemas[f"{kind.capitalize()}InBatch"] = _event(kind, in_batch=True)
    schemas["BatchCall"] = {
        "type": "object",
        "description": f"Many calls in one request of at most {MAX_REQUEST_KB} KB; all of "
                       "them are stored, or none.",
        "properties": {
            "batch": {"type": "array",
                      "items": {"anyOf": [_ref(f"{k.capitalize()}InBatch") for k in EVENT_TYPES]}},
            "sentAt": {**_ref("Timestamp"), "description": "When the client sent the batch "
                                                             "(client clock), for every event "
                                                             "without its own."},
            "writeKey": {"type": ["string", "null"],
                         "description": "The write key, when it is not in the Authorization "
                                        "header."},
        },
        "required": ["batch"],
    }
    return schemas


def ingest_route(kind: str, *, short: bool = False) -> dict[str, Any]:
    """The keyword arguments that describe one ingest route to FastAPI (`short`: the
    short path, /v1/t for /v1/track, as Segment has them)."""
    schema = f"{kind.capitalize()}Call"
    return {
        "operation_id": f"{kind}_short" if short else kind,
        "summary": f"Segment {kind} call{f' (short for /v1/{kind})' if short else ''}",
        "description": (f"Segment-compatible `{kind}`. The body may be gzip or deflate "
                        f"(Content-Encoding); at most {MAX_REQUEST_KB} KB as sent and once "
                        "inflated. The key: HTTP Basic user name, Bearer token, or `writeKey` "
                        "in the body."),
        "responses": {200: {"model": Success, "description": "Accepted (or a duplicate "
                                                             "messageId, ignored)."},
                      **_errors(400, 401, 403, 413, 429, 503)},
        "openapi_extra": {
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref(schema)}}},
            "security": SECURITY,
        },
    }


def admin_route() -> dict[str, Any]:
    return {"responses": {200: {"model": ProfileView, "description": "The profile."},
                          **_errors(401, 403, 404)},
            "openapi_extra": {"security": SECURITY}}


def why_route() -> dict[str, Any]:
    return {"responses": {200: {"model": list[WhyEntry],
                                "description": "Every decision, oldest first."},
                          **_errors(400, 401, 403, 404)},
            "openapi_extra": {"security": SECURITY}}


def export_route() -> dict[str, Any]:
    return {"description": "One JSON document: traits, computed traits, identities, events, "
                           "enrollments, sends, decisions, and every stored row by table "
                           "(`tables`). Without ?by=, the userId's person; the header "
                           "Journeyman-Also-Named then names the kinds of id the text is "
                           "for other people, if any. See docs/privacy.md.",
            "responses": {200: {"model": PersonExport, "description": "The person's data."},
                          **_errors(400, 401, 403, 404)},
            "openapi_extra": {"security": SECURITY}}


def forget_route() -> dict[str, Any]:
    return {"description": "Erase every row that holds the person, under every profile "
                           "id they had, and replace their identifiers in other people's "
                           "rows with \"[forgotten]\" (`others_scrubbed`: how many rows); "
                           "on SQLite the file and its WAL are scrubbed "
                           "(`sqlite_scrubbed`: 1, or 0 while another process holds it).",
            "responses": {200: {"model": Forgotten, "description": "Rows deleted per table."},
                          **_errors(400, 401, 403, 404, 409)},
            "openapi_extra": {"security": SECURITY}}


def stats_route() -> dict[str, Any]:
    return {"responses": {200: {"description": "The journey's KPIs, per step and per split "
                                               "variant (docs/engagement.md).",
                                "content": {"application/json": {"schema": {
                                    "type": "object"}}}},
                          **_errors(401, 403, 404)},
            "openapi_extra": {"security": SECURITY}}
class StepStats(BaseModel):
    id: str
    kind: str
    now: int = Field(description="people on the step now")
    passed: int = Field(description="of the period's entries, how many reached the step")
    sends: dict[str, int] = Field(description="outbox rows of the period by status")
    decisions: list[dict[str, Any]] = Field(description="what / reason / count")


class DayStats(BaseModel):
    day: str = Field(description="the UTC day, YYYY-MM-DD")
    entered: int = Field(description="enrollments that entered that day")
    passed: dict[str, int] = Field(description="of them, per step, how many reached it")
    sends: dict[str, dict[str, int]] = Field(description="messages queued that day, per "
                                                         "step and status")


class Kpi(BaseModel):
    value: float | None = Field(description="over the period")
    previous: float | None = Field(description="over the same length of time before it")
    change: float | None = Field(description="value - previous")


class JourneyStats(BaseModel):
    """A journey's numbers over the last `days` days (the entries of the period are the
    cohort: entered, converted, passed)."""

    journey: str
    title: str
    version: int
    status: str
    since: str
    until: str
    entered: int
    converted: int
    conversion: float | None
    conversion_ci95: list[float] | None = Field(description="Wilson score interval, 95%")
    ended: dict[str, int]
    in_flight: int
    steps: list[StepStats]
    splits: dict[str, Any] = Field(description="per split step: each variant's people, "
                                               "conversion, 95% Wilson interval, and the "
                                               "pooled two-proportion z-test against the "
                                               "control (z, two-sided p-value)")
    series: list[DayStats] = Field(description="the period day by day (UTC)")
    kpis: dict[str, Kpi] = Field(description="conversion, ctr, open_rate, opt_outs, "
                                             "opt_out_rate, bounce_rate, goals, "
                                             "attributable_revenue, median_time_to_goal "
                                             "(seconds); docs/dashboard.md defines each")
    versions: list[dict[str, Any]]


def journey_stats_route(max_days: int) -> dict[str, Any]:
    return {"responses": {200: {"model": JourneyStats, "description": "The numbers."},
                          **_errors(400, 401, 403, 404)},
            "openapi_extra": {
                "security": SECURITY,
                "parameters": [{"name": "days", "in": "query", "required": False,
                                "description": "The period: the last N days (default 7).",
                                "schema": {"type": "integer", "minimum": 1,
                                           "maximum": max_days}}]}}


HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}


def unsubscribe_route(action: str) -> dict[str, Any]:
    return {"summary": action,
            "responses": {200: {"description": "The page.", "content": HTML_PAGE},
                          404: {"description": "The link is not valid: a page that says so.",
                                "content": HTML_PAGE}}}


def click_route() -> dict[str, Any]:
    return {"summary": "A tracked link: redirect to its URL (and record the click)",
            "responses": {302: {"description": "To the URL the signed token names.",
                                "headers": {"Location": {"schema": {"type": "string"}}}},
                          **_errors(404)}}


def pixel_route() -> dict[str, Any]:
    return {"summary": "The open pixel of a tracked email (records the open)",
            "responses": {200: {"description": "A 1x1 transparent GIF.",
                                "content": {"image/gif": {"schema": {
                                    "type": "string", "format": "binary"}}}}}}


def deliverability_route(call: type[BaseModel], answer: type[BaseModel]) -> dict[str, Any]:
    """`POST /v1/deliverability`: the body's schema is the pydantic model's."""
    schema = call.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        _EXTRA_SCHEMAS[name] = sub
    _EXTRA_SCHEMAS[call.__name__] = schema
    return {"summary": "Bounces and complaints from an email provider (admin key)",
            "description": "Hard bounces and complaints put the address on the suppression "
                           "list; soft bounces are counted. At most 512 KB.",
            "responses": {200: {"model": answer, "description": "Recorded."},
                          **_errors(400, 401, 403, 413, 503)},
            "openapi_extra": {
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref(call.__name__)}}},
                "security": SECURITY}}


_EXTRA_SCHEMAS: dict[str, Any] = {}  # request bodies described by pydantic models


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the document with the request bodies, the security
    schemes, and no 422 answer (no route of ours validates with FastAPI)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version,
                              description=app.description, routes=app.routes)
            components = doc.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            schemas.update(_schemas())
            schemas.update(_EXTRA_SCHEMAS)
            components["securitySchemes"] = SECURITY_SCHEMES
            for operations in doc["paths"].values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
