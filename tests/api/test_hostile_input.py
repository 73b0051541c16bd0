"""Hostile and malformed requests over real HTTP (uvicorn on a free port): each is a 4xx
with a JSON reason, never a 500, and nothing of it is stored. The first cases were 500s
before (issue 10); the hypothesis tests look for more."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.testing import InMemoryStore
from tests.api.test_api import Server

KEY = "test-key-web"
LINKS = UnsubscribeLinks("s3cret", "https://shop.example/jm")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    store = InMemoryStore()
    store.create_key("web")
    store.create_key("ops", admin=True)
    with Server(store, unsubscribe=LINKS) as srv:
        yield srv


@pytest.fixture(scope="module")
def anyone(server: Server) -> Iterator[httpx.Client]:
    """A client with the write key, kept open: the hypothesis tests make many requests."""
    with httpx.Client(base_url=server.url, auth=(KEY, ""), timeout=10) as client:
        yield client


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    server.store.inbox.clear()
    server.store.events.clear()
    with httpx.Client(base_url=server.url, auth=(KEY, ""), timeout=10) as client:
        yield client


def nothing_stored(server: Server) -> bool:
    return server.store.pending_events() == [] and not server.store.events


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert reason in body["reason"], body["reason"]


def track(**extra: Any) -> dict[str, Any]:
    return {"userId": "u1", "event": "Signed Up", **extra}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def props(json_text: str) -> str:
    """A track event as JSON text, `properties` given as JSON text."""
    return '{"userId": "u1", "event": "E", "properties": ' + json_text + "}"


# Raw JSON text (not all of it can be made with json.dumps): (body, reason).
MALFORMED = {
    "a 5,000-digit integer": (
        props('{"n": ' + "9" * 5000 + "}"),
        "a number is too large"),
    "a 400-digit integer (beyond a double)": (
        props('{"n": -' + "9" * 400 + "}"),
        "a number is too large"),
    "nesting deeper than 1,024 levels": (
        props('{"n": ' + nested(5000) + "}"),
        "nested too deeply"),
    "nesting deeper than 64 levels": (
        props('{"n": ' + nested(70) + "}"),
        "nested deeper than 64 levels"),
    "year 1 at +14:00 (before year 1 in UTC)": (
        json.dumps(track(timestamp="0001-01-01T00:00:00+14:00")), "is out of range"),
    "sentAt in year 9999 with a year-1 timestamp": (
        json.dumps(track(timestamp="0001-01-01T00:00:00Z", sentAt="9999-12-31T23:59:59Z")),
        "is out of range"),
    "sentAt a date alone (midnight: the skew correction off by up to a day)": (
        json.dumps(track(sentAt="2026-03-02")), "sentAt '2026-03-02' has no time of day"),
    "sentAt a date with a zone": (
        json.dumps(track(sentAt="2026-03-02+01:00")), "'2026-03-02+01:00' has no time of day"),
    "sentAt a week date": (
        json.dumps(track(sentAt="2026-W10-1Z")), "'2026-W10-1Z' has no time of day"),
    "sentAt not a time at all": (
        json.dumps(track(sentAt="garbage!!")), "bad sentAt 'garbage!!': use ISO 8601"),
    "sentAt past the years allowed": (
        json.dumps(track(sentAt="9999-12-31T23:59:59Z")), "sentAt '9999-12-31T23:59:59Z' is out"),
    "a lone surrogate in a string": (
        '{"userId": "u1", "event": "E", "properties": {"s": "a\\ud800b"}}', "lone surrogate"),
    "a lone surrogate in a key": (
        '{"userId": "u1", "event": "E", "properties": {"\\udfff": 1}}', "lone surrogate"),
    "NaN": ('{"userId": "u1", "event": "E", "properties": {"x": NaN}}', "finite"),
    "Infinity": ('{"userId": "u1", "event": "E", "properties": {"x": [Infinity]}}', "finite"),
    "-Infinity": ('{"userId": "u1", "event": "E", "properties": {"x": -Infinity}}', "finite"),
    "1e999 (parses to infinity)": (
        '{"userId": "u1", "event": "E", "properties": {"revenue": 1e999}}', "too large"),
    "a NUL character (PostgreSQL refuses it)": (
        '{"userId": "u1", "event": "E", "properties": {"s": "a\\u0000b"}}', "NUL character"),
    "a NUL character in a key": (
        '{"userId": "u1", "event": "E", "context": {"a\\u0000": 1}}', "NUL character"),
    "a userId longer than the id column": (
        json.dumps(track(userId="u" * 256)), "'userId' is longer than 255 characters"),
    "a messageId longer than the id column": (
        json.dumps(track(messageId="m" * 256)), "'messageId' is longer than 255"),
    "an integer userId beyond 64 bits": (
        json.dumps(track(userId=2**64)), "'userId' is an integer beyond 64 bits"),
    "a userId that is an object": (
        json.dumps(track(userId={"id": 1}, anonymousId="a1")), "'userId' must be a string"),
    "a timestamp that is not one": (json.dumps(track(timestamp=12)), "bad timestamp 12"),
    "traits that are a string": (json.dumps(track(traits="abc")), "'traits' must be an object"),
    "not JSON": ("{not json", "body is not valid JSON"),
    "not an object": ("[1, 2]", "the body must be a JSON object"),
    "not UTF-8": ('{"userId": "u1", "event": "\xe9"}', "not UTF-8"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_events_are_400_with_a_reason_and_store_nothing(
        api: httpx.Client, server: Server, case: str) -> None:
    text, reason = MALFORMED[case]
    body = text.encode("latin-1") if case == "not UTF-8" else text.encode()
    refused(api.post("/v1/track", content=body,
                     headers={"content-type": "application/json"}), 400, reason)
    assert nothing_stored(server)


@pytest.mark.parametrize(("kind", "event", "reason"), [
    ("identify", {"userId": "u1", "context": {"traits": "abc"}}, "'context.traits'"),
    ("page", {"userId": "u1", "name": {"title": "Home"}}, "'name' must be a string"),
    ("alias", {"userId": "u1", "previousId": ["a"]}, "'previousId' must be"),
    # an alias with nothing to merge (no previousId nor anonymousId, or no userId) was a
    # 200 that merged nothing
    ("alias", {"userId": "u1"}, "an alias needs a userId"),
    ("alias", {"userId": "u1", "previousId": "  "}, "and a previousId or an anonymousId"),
    ("alias", {"anonymousId": "a1", "previousId": "a0"}, "an alias needs a userId"),
    ("group", {"userId": "u1", "groupId": True}, "'groupId' must be"),
    ("track", {"userId": "   ", "event": "E"}, "needs a userId or an anonymousId"),
    ("track", {"userId": "u1", "event": "E", "writeKey": 5}, "'writeKey' must be a string"),
])
def test_each_call_checks_its_fields(api: httpx.Client, server: Server, kind: str,
                                     event: dict[str, Any], reason: str) -> None:
    refused(api.post(f"/v1/{kind}", json=event), 400, reason)
    assert nothing_stored(server)


def test_one_bad_event_refuses_the_whole_batch(api: httpx.Client, server: Server) -> None:
    good = track(messageId="ok-1")
    response = api.post("/v1/batch", content=(
        '{"batch": [' + json.dumps(good) + ", " + props('{"x": NaN}') + "]}").encode())
    refused(response, 400, "finite")
    response = api.post("/v1/batch", json={"batch": [good, track(timestamp="0001-01-01")]})
    refused(response, 400, "batch[1]: timestamp '0001-01-01' is out of range")
    response = api.post("/v1/batch", json={"batch": [good], "sentAt": "2026-03-02"})
    refused(response, 400, "sentAt '2026-03-02' has no time of day")
    assert nothing_stored(server)


def test_timestamps_at_the_ends_of_the_years_allowed_are_corrected_without_overflow(
        api: httpx.Client, server: Server) -> None:
    """The skew correction stays in the years every timestamp is held to: a sentAt 1,100
    years after its timestamp dated the event in 926 (and one before it, in 3126: an
    order whose days_since_last_order was -401,766). Refused, without an overflow; a
    correction inside the years is made."""
    for sent_at, stamp in (("2999-12-31T23:59:59-14:00", "1900-01-01T00:00:00+14:00"),
                           ("1900-01-01T00:00:00+14:00", "2999-12-31T23:59:59-14:00")):
        response = api.post("/v1/batch", json={"sentAt": sent_at, "batch": [
            track(timestamp=stamp, messageId="far")]})
        refused(response, 400, "batch[0]: timestamp and sentAt are too far apart to correct "
                "the client's clock by them: the event would be dated outside the years "
                "1900-2999")
    assert nothing_stored(server)
    response = api.post("/v1/batch", json={"sentAt": "2026-03-02T09:00:00Z", "batch": [
        track(timestamp="2026-03-01T09:00:00Z", messageId="a-day-ago")]})
    assert response.status_code == 200, response.text
    [event] = server.store.pending_events()
    assert event["timestamp"] == "2026-03-01T09:00:00Z", event  # the server's clock: NOW


def test_ids_are_stored_as_identity_resolution_reads_them(api: httpx.Client,
                                                          server: Server) -> None:
    assert api.post("/v1/track", json=track(userId=" ana ", messageId=42.0)).status_code == 200
    assert api.post("/v1/track", json={"userId": "", "anonymousId": 7, "event": "E"}
                    ).status_code == 200
    first, second = server.store.pending_events()
    assert (first["userId"], first["messageId"]) == ("ana", "42")
    assert (second["userId"], second["anonymousId"]) == (None, "7")


# --- bodies, encodings and keys --------------------------------------------------------

def test_bodies_over_the_limit_are_413_as_sent_or_once_inflated(
        api: httpx.Client, server: Server) -> None:
    big = json.dumps(track(properties={"x": "y" * 600_000})).encode()
    refused(api.post("/v1/track", content=big), 413, "body larger than 512000 bytes")
    refused(api.post("/v1/track", content=gzip.compress(big),
                     headers={"content-encoding": "gzip"}), 413, "body larger than 512000")
    refused(api.post("/v1/track", content=zlib.compress(big),
                     headers={"content-encoding": "deflate"}), 413, "body larger than 512000")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"userId": "u1", "event": "E", "properties": {"x": "'
        for _ in range(100):
            yield b"y" * 10_000

    refused(api.post("/v1/track", content=chunks()), 413, "body larger than 512000 bytes")
    assert nothing_stored(server)


def test_compressed_bodies(api: httpx.Client, server: Server) -> None:
    body = json.dumps(track(messageId="z1")).encode()
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # deflate without zlib's header
    for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                             ("deflate", raw.compress(body) + raw.flush()),
                             ("GZIP", gzip.compress(body[:20]) + gzip.compress(body[20:]))):
        response = api.post("/v1/track", content=packed, headers={"content-encoding": encoding})
        assert response.status_code == 200, (encoding, response.text)
    assert [e["messageId"] for e in server.store.pending_events()] == ["z1"]  # deduped
    server.store.inbox.clear()
    server.store.events.clear()
    for encoding, packed, reason in [
            ("gzip", body, "body is not valid gzip"),
            ("gzip", gzip.compress(body)[:-12], "body is not valid gzip: it ends too early"),
            ("gzip", gzip.compress(body) + b"garbage!", "body is not valid gzip"),
            ("deflate", zlib.compress(body) + b"more", "data after the end of the deflate"),
            ("br", body, "Content-Encoding 'br' is not supported")]:
        refused(api.post("/v1/track", content=packed, headers={"content-encoding": encoding}),
                400, reason)
    assert nothing_stored(server)


def test_a_key_in_the_header_is_checked_before_the_body(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for auth in (("jm_nope", ""), None):
            headers = {"authorization": "Bearer jm_nope"} if auth is None else {}
            # a gzip bomb under a wrong key: 401, and the connection closed, unread
            response = client.post("/v1/batch", auth=auth, headers={
                **headers, "content-encoding": "gzip"}, content=gzip.compress(b" " * 10**7))
            refused(response, 401, "missing or unknown write key")
            assert response.headers["connection"] == "close"
        for header in ("Basic /w==", "Basic %%%", "Basic a b c"):  # %%% decoded to nothing
            malformed = client.post("/v1/track", json=track(),
                                    headers={"authorization": header})
            refused(malformed, 401, "malformed Authorization header")
        # a writeKey that is not text: the 400 it is, not a 401 for a key never read
        refused(client.post("/v1/track", json=track(writeKey=123)), 400,
                "'writeKey' must be a string")
        # the key in the body (Segment's browser clients) still works, read under the caps
        ok = client.post("/v1/track", json=track(writeKey=KEY, messageId="body-key"))
        assert ok.status_code == 200, ok.text
        bearer = client.post("/v1/track", json=track(messageId="bearer"),
                             headers={"authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 200, bearer.text
        basic = base64.b64encode(f"{KEY}:".encode()).decode()
        assert client.post("/v1/track", json=track(messageId="basic"),
                           headers={"authorization": f"Basic {basic}"}).status_code == 200


# --- other routes ----------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_malformed_unsubscribe_token_is_the_not_valid_page(
        api: httpx.Client, server: Server, method: str) -> None:
    for path in ("/u/abc.%C3%A9", "/u/%C3%A9", "/u/abc.%00", "/u/" + "a" * 5000 + ".b"):
        response = api.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert "This unsubscribe link is not valid." in response.text
    assert nothing_stored(server)


def test_admin_lookups_of_impossible_ids_are_404(server: Server) -> None:
    for user_id in ("%00", "a%00b", "x" * 300):
        response = httpx.get(f"{server.url}/v1/profiles/{user_id}",
                             auth=("test-key-ops", ""), timeout=10)
        refused(response, 404, "no profile")


def test_router_errors_are_json_too(server: Server) -> None:
    response = httpx.get(f"{server.url}/v1/track", timeout=10)
    refused(response, 405, "Method Not Allowed")
    assert response.headers["allow"] == "POST"
    response = httpx.put(f"{server.url}/u/token", timeout=10)
    assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}
    refused(httpx.get(f"{server.url}/v2/nothing", timeout=10), 404, "Not Found")


# --- looking for more ------------------------------------------------------------------

CHARACTERS = st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                       st.sampled_from("\x00 \t"))
TEXT = st.text(CHARACTERS, max_size=8)
STAMPS = st.one_of(st.datetimes().map(lambda d: d.isoformat()), TEXT, st.sampled_from([
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1900-01-01T00:00:00+23:59",
    "2999-12-31T23:59:59-23:59", "2026-03-02", "2026-13-02T00:00:00Z"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10**400), 10**400), st.floats(),
                    TEXT, STAMPS)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)), max_leaves=10)
FIELDS = st.sampled_from(["userId", "anonymousId", "previousId", "groupId", "messageId",
                          "event", "name", "properties", "traits", "context", "timestamp",
                          "originalTimestamp", "sentAt", "type", "writeKey"])
EVENTS = st.builds(lambda extra: {"userId": "u1", "event": "E", **extra},
                   st.dictionaries(FIELDS, st.one_of(STAMPS, VALUES), max_size=5))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.data_too_large])
@given(kind=st.sampled_from(["track", "identify", "alias", "page", "screen", "group"]),
       event=EVENTS, sent_at=st.one_of(st.none(), STAMPS, VALUES))
def test_any_json_is_200_or_a_400_that_stores_nothing(server: Server, anyone: httpx.Client,
                                                      kind: str, event: dict[str, Any],
                                                      sent_at: Any) -> None:
    server.store.inbox.clear()
    server.store.events.clear()
    body = {"batch": [{**event, "type": kind}], "sentAt": sent_at}
    # json.dumps writes NaN, Infinity, big integers and lone surrogates (as \ud800)
    response = anyone.post("/v1/batch", content=json.dumps(body).encode())
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["success"] is False
        assert nothing_stored(server)
    else:
        assert len(server.store.pending_events()) == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200),
       packing=st.sampled_from(["raw", "gzip", "deflate", "gzip-cut", "gzip-tail"]))
def test_any_bytes_are_a_4xx_never_a_500(anyone: httpx.Client, data: bytes,
                                         packing: str) -> None:
    packed = {"raw": data, "gzip": gzip.compress(data), "deflate": zlib.compress(data),
              "gzip-cut": gzip.compress(data)[:len(data) // 2],
              "gzip-tail": gzip.compress(data) + data}[packing]
    headers = {} if packing == "raw" else {"content-encoding": packing.split("-", maxsplit=1)[0]}
    response = anyone.post("/v1/track", content=packed, headers=headers)
    assert response.status_code in (200, 400), response.text
    assert response.json()["success"] is (response.status_code == 200)
