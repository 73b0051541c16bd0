"""Signed one-click unsubscribe (RFC 8058): links, headers, the page and the POST; links
that name the person (and land on them after a merge); rotation of the signing secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from engine.api import create_app
from engine.core.model import Profile
from engine.ports import Store
from engine.runtime.unsubscribe import (
    ANONYMOUS,
    PROFILE,
    USER,
    Person,
    SigningSecret,
    UnsubscribeLinks,
)
from engine.runtime.worker import Worker
from engine.store import SqlStore
from engine.testing import InMemoryEngine, InMemoryStore, SequentialIds
from tests.api.test_api import NOW, free_port
from tests.engine.helpers import stub_email, write_folder
from tests.store.conftest import pg_database, pg_server, sqlite_template, store

__all__ = ["pg_database", "pg_server", "sqlite_template", "store"]

LINKS = UnsubscribeLinks("s3cret-s3cret-s3cret", "https://shop.example/jm")
ANA = Person(USER, "ana")


def test_a_token_names_person_and_channel_and_cannot_be_forged() -> None:
    token = LINKS.token(ANA, "email")
    assert LINKS.verify(token) == (ANA, "email")
    assert LINKS.verify(LINKS.token(Person(ANONYMOUS, "d-1"), "sms")) == (
        Person(ANONYMOUS, "d-1"), "sms")
    assert LINKS.url(ANA, "email") == f"https://shop.example/jm/u/{token}"
    payload, sig = token.split(".")
    other = LINKS.token(Person(USER, "ben"), "email")
    assert LINKS.verify(other.split(".")[0] + "." + sig) is None  # someone else
    assert LINKS.verify(payload + "." + sig[:-2] + "AA") is None
    assert LINKS.verify(payload) is None
    assert LINKS.verify("garbage") is None
    assert UnsubscribeLinks("another", "https://x").verify(token) is None


def _old_token(secret: str, profile_id: str, channel: str) -> str:
    """A token exactly as the version before people-named links made it."""
    key = hashlib.sha256(b"journeyman-unsubscribe:" + secret.encode()).digest()
    payload = base64.urlsafe_b64encode(f"{channel}\n{profile_id}".encode()).rstrip(b"=").decode()
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:24]
    return f"{payload}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def test_tokens_in_mail_sent_before_the_upgrade_still_verify() -> None:
    old = _old_token("s3cret-s3cret-s3cret", "anon-7", "email")
    assert LINKS.verify(old) == (Person(PROFILE, "anon-7"), "email")
    assert LINKS.verify(_old_token("other-secret-other", "anon-7", "email")) is None


def test_rotation_the_newest_secret_signs_older_ones_verify_until_their_date() -> None:
    cutoff = NOW + timedelta(days=30)
    before = UnsubscribeLinks("old-secret-old-secret", "https://x")
    rotated = UnsubscribeLinks([SigningSecret("new-secret-new-secret"),
                                SigningSecret("old-secret-old-secret", cutoff)], "https://x")
    old_token, new_token = before.token(ANA, "email"), rotated.token(ANA, "email")
    assert new_token != old_token  # signed by the newest
    assert UnsubscribeLinks("new-secret-new-secret", "https://x").verify(new_token) == (
        ANA, "email")
    assert before.verify(new_token) is None
    assert rotated.verify(old_token, NOW) == (ANA, "email")
    assert rotated.verify(old_token, cutoff - timedelta(seconds=1)) == (ANA, "email")
    assert rotated.verify(old_token, cutoff) is None  # its date has come
    assert rotated.verify(new_token, cutoff + timedelta(days=999)) == (ANA, "email")
    dropped = UnsubscribeLinks("new-secret-new-secret", "https://x")  # old one removed
    assert dropped.verify(old_token, NOW) is None


def test_every_email_carries_the_link_and_the_rfc8058_headers(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": """
journey: hello
version: 1
entry: {event: Signed Up}
steps:
  - id: hi
    send: {channel: email, template: hi}
"""}, {"hi": "channel: email\nsubject: Hi\ntext: 'bye: {{ unsubscribe_url }}'\n"})
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com"})
    eng.track("ana", "Signed Up")
    [message] = eng.channel.messages
    url = eng.unsubscribe.url(ANA, "email")
    assert message.rendered.text == f"bye: {url}"
    assert message.rendered.headers == {"List-Unsubscribe": f"<{url}>",
                                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def serve_app(store: Store, links: UnsubscribeLinks,
              now: Callable[[], datetime] = lambda: NOW) -> Iterator[str]:
    """The API over `store` on a free port (a real uvicorn); yields its base URL."""
    port = free_port()
    app = create_app(store, now, new_id=SequentialIds("u").new_id, unsubscribe=links)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api_store() -> InMemoryStore:
    memory = InMemoryStore()
    memory.link_identity("user_id", "ana", "ana")
    return memory


@pytest.fixture
def api(api_store: InMemoryStore) -> Iterator[str]:
    yield from serve_app(api_store, LINKS)


def test_get_shows_a_page_and_post_unsubscribes_without_login(api: str,
                                                             api_store: InMemoryStore) -> None:
    path = "/u/" + LINKS.token(ANA, "email")
    with httpx.Client(base_url=api) as client:
        page = client.get(path)
        assert page.status_code == 200
        assert '<form method="post">' in page.text
        assert "email" in page.text
        assert api_store.pending_events() == []  # looking is not unsubscribing
        done = client.post(path, content=b"List-Unsubscribe=One-Click",
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200
        assert "Unsubscribed" in done.text
        [event] = api_store.pending_events()
        assert (event["type"], event["userId"], event["traits"]) == (
            "identify", "ana", {"consent": {"email": False}})
        bad = client.post("/u/" + LINKS.token(ANA, "email")[:-3] + "xyz")
        assert bad.status_code == 404
        assert client.get("/u/nonsense").status_code == 404
        assert len(api_store.pending_events()) == 1


def test_a_link_for_someone_the_store_does_not_hold_makes_no_ghost_profile(
        api: str, api_store: InMemoryStore) -> None:
    for person in (Person(USER, "nobody"), Person(ANONYMOUS, "nobody"), Person(PROFILE, "x")):
        done = httpx.post(f"{api}/u/{LINKS.token(person, 'email')}")
        assert done.status_code == 200
        assert "Unsubscribed" in done.text
    assert api_store.pending_events() == []


def test_a_link_past_its_secrets_date_is_refused(api_store: InMemoryStore) -> None:
    cutoff = NOW + timedelta(days=1)
    links = UnsubscribeLinks([SigningSecret("new-secret-new-secret"),
                              SigningSecret("s3cret-s3cret-s3cret", cutoff)], "https://x")
    old = LINKS.token(ANA, "email")
    clock = [NOW]
    for base in serve_app(api_store, links, lambda: clock[0]):
        assert httpx.post(f"{base}/u/{old}").status_code == 200
        clock[0] = cutoff
        assert httpx.get(f"{base}/u/{old}").status_code == 404
        assert httpx.post(f"{base}/u/{old}").status_code == 404
        fresh = links.token(ANA, "email")
        assert httpx.post(f"{base}/u/{fresh}").status_code == 200
    assert len(api_store.pending_events()) == 2


def test_an_unsubscribe_stops_email_and_keeps_other_consent(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"drip": """
journey: drip
version: 1
entry: {event: Signed Up}
steps:
  - id: one
    send: {channel: email, template: note}
  - id: pause
    wait: 1d
  - id: two
    send: {channel: email, template: note}
  - id: text
    send: {channel: sms, template: text}
"""}, {"note": stub_email("note"), "text": "channel: sms\nbody: hi\n"},
        policy="consent_required: [email, sms]\n")
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"email": "ana@example.com", "phone": "+34600000000",
                         "consent": {"email": True, "sms": True}})
    eng.track("ana", "Signed Up")
    eng.identify("ana", {"consent": {"email": False}})  # what POST /u/<token> queues
    eng.advance(timedelta(days=1))
    assert [(m.step, m.channel) for m in eng.channel.messages] == [("one", "email"),
                                                                   ("text", "sms")]
    assert eng.profile("ana").traits["consent"] == {"email": False, "sms": True}
    assert [(d.step, d.reason) for d in eng.decisions if d.what == "skipped"] == [
        ("two", "no_consent")]


NEWS = """
journey: news
version: 1
entry: {event: Newsletter Due}
re_entry: always
steps:
  - id: issue
    send: {channel: email, template: issue}
"""


def test_a_link_sent_before_a_merge_unsubscribes_the_person_it_was_sent_to(
        tmp_path: Path, store: Store) -> None:
    """Issue 13: a visitor gets an email while anonymous, then signs in as u-42 (the
    anonymous profile is merged into u-42). Clicking the old link unsubscribes u-42 (no
    ghost profile), and the next newsletter to u-42 is skipped as no_consent. On the
    in-memory store, SQLite and PostgreSQL, through the real HTTP API."""
    folder = write_folder(tmp_path / "j", {"news": NEWS}, {
        "issue": "channel: email\nsubject: News\ntext: 'bye: {{ unsubscribe_url }}'\n"},
        policy="consent_required: [email]\n")
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.use_store(store)
    eng.post({"type": "identify", "anonymousId": "d-1",
              "traits": {"email": "ana@example.com", "consent": {"email": True}}})
    eng.post({"type": "track", "anonymousId": "d-1", "event": "Newsletter Due"})
    [first] = eng.channel.messages
    link = first.rendered.headers["List-Unsubscribe"].strip("<>")
    token = link.rsplit("/u/", 1)[1]
    assert eng.unsubscribe.verify(token) == (Person(ANONYMOUS, "d-1"), "email")
    assert first.rendered.text == f"bye: {link}"

    eng.post({"type": "identify", "userId": "u-42", "anonymousId": "d-1"})  # the merge
    assert store.profile_for("anonymous_id", "d-1") == "u-42"

    for base in serve_app(store, eng.unsubscribe, eng.clock.now):
        done = httpx.post(f"{base}/u/{token}", content=b"List-Unsubscribe=One-Click")
        assert done.status_code == 200, done.text
    worker = Worker(eng.runner, store, eng.clock, name="test")
    assert worker.handle_events() == 1
    assert worker.stats.failures == 0

    u42 = store.get_profile("u-42")
    assert u42 is not None
    assert u42.traits["consent"] == {"email": False}
    assert store.get_profile("d-1") is None  # merged away, and no ghost made again
    eng.track("u-42", "Newsletter Due")
    assert len(eng.channel.messages) == 1
    skipped = [d for d in store.recorded_decisions() if d.what == "skipped"]
    assert [(d.profile_id, d.reason) for d in skipped] == [("u-42", "no_consent")]


def test_a_known_users_link_names_their_user_id(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"news": NEWS}, {"issue": stub_email("issue")})
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.post({"type": "identify", "userId": "u-7", "anonymousId": "d-7",
              "traits": {"email": "u7@example.com"}})
    eng.track("u-7", "Newsletter Due")
    [sent] = eng.channel.messages
    token = sent.rendered.headers["List-Unsubscribe"].strip("<>").rsplit("/u/", 1)[1]
    assert eng.unsubscribe.verify(token) == (Person(USER, "u-7"), "email")


def test_an_old_profile_id_link_lands_on_the_merged_profile(api: str,
                                                           api_store: InMemoryStore) -> None:
    """A token from before the upgrade names the profile id `d-9`; that anonymous
    profile was merged into `u-9` since. The click unsubscribes u-9, not a new `d-9`."""
    api_store.link_identity("anonymous_id", "d-9", "u-9")
    api_store.link_identity("user_id", "u-9", "u-9")
    api_store.link_identity("profile", "d-9", "u-9")  # as the merge wrote it (or 0022)
    done = httpx.post(f"{api}/u/{_old_token('s3cret-s3cret-s3cret', 'd-9', 'email')}")
    assert done.status_code == 200
    [event] = api_store.pending_events()
    assert (event["userId"], event["traits"]) == ("u-9", {"consent": {"email": False}})


ALERTS = """
journey: alerts
version: 1
entry: {event: Price Dropped}
re_entry: always
steps:
  - id: text
    send: {channel: sms, template: text}
  - id: buzz
    send: {channel: push, template: buzz}
"""


@pytest.mark.parametrize("channel", ["sms", "push"])
def test_the_link_in_an_sms_or_push_body_unsubscribes_that_channel(tmp_path: Path,
                                                                   channel: str) -> None:
    """Every channel with a consent key gets a working link: the one in an SMS or push
    body opens the page (GET), whose button POSTs, and that channel alone stops."""
    folder = write_folder(tmp_path / "j", {"alerts": ALERTS}, {
        "text": "channel: sms\nbody: 'Price drop! Stop: {{ unsubscribe_url }}'\n",
        "buzz": "channel: push\nbody: 'Price drop! {{ unsubscribe_url }}'\n"},
        policy="consent_required: [sms, push]\n")
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.identify("ana", {"phone": "+34600000000", "device_token": "tok-1",
                         "consent": {"sms": True, "push": True}})
    eng.track("ana", "Price Dropped")
    [message] = [m for m in eng.channel.messages if m.channel == channel]
    link = str(message.rendered.body).rsplit(" ", 1)[1]
    assert link.startswith("https://journeyman.invalid/u/")
    path = "/u/" + link.rsplit("/u/", 1)[1]

    for base in serve_app(eng.store, eng.unsubscribe, eng.clock.now):
        with httpx.Client(base_url=base) as browser:
            page = browser.get(path)
            assert page.status_code == 200
            assert f"Stop receiving {channel} messages" in page.text
            button = browser.post(path, data={"List-Unsubscribe": "One-Click"})
            assert button.status_code == 200
            assert "Unsubscribed" in button.text
    assert Worker(eng.runner, eng.store, eng.clock, name="test").handle_events() == 1

    other = {"sms": "push", "push": "sms"}[channel]
    assert eng.profile("ana").traits["consent"] == {channel: False, other: True}
    eng.track("ana", "Price Dropped")
    assert [m.channel for m in eng.channel.messages] == ["sms", "push", other]
    assert [(d.step, d.reason, d.details["channel"]) for d in eng.decisions
            if d.what == "skipped"] == [
        ({"sms": "text", "push": "buzz"}[channel], "no_consent", channel)]
    # The link's click is on record, with its source (docs/privacy.md).
    assert [(d.reason, d.details["source"]) for d in eng.decisions if d.what == "consent"] \
        == [(f"consent.{channel}: false", "unsubscribe")]


def test_an_unsubscribe_while_the_database_is_locked_is_a_page_to_try_again(
        tmp_path: Path) -> None:
    """A person at the button got the API's 503 JSON (`{"success": false, ...}`) while
    the store could not be written: now a page saying nothing changed, with the button
    again (a 503 with Retry-After, for a mail client's one-click POST); once the lock
    is gone the same link unsubscribes."""
    db = tmp_path / "journeyman.db"
    sql = SqlStore(f"sqlite:///{db}", create=True, busy_timeout_ms=100)
    sql.link_identity("user_id", "ana", "ana")
    with sql.transaction():
        sql.put_profile(Profile("ana", {"email": "ana@example.com"}))
    path = "/u/" + LINKS.token(ANA, "email")
    try:
        for base in serve_app(sql, LINKS):
            with httpx.Client(base_url=base, timeout=10) as client:
                lock = sqlite3.connect(db, isolation_level=None, timeout=1)
                lock.execute("BEGIN EXCLUSIVE")  # another process holds the file
                try:
                    busy = client.post(path, data={"List-Unsubscribe": "One-Click"})
                finally:
                    lock.execute("ROLLBACK")
                    lock.close()
                assert busy.status_code == 503
                assert busy.headers["content-type"].startswith("text/html")
                assert busy.headers["retry-after"] == "60"
                assert "nothing changed" in busy.text
                assert '<form method="post">' in busy.text
                assert sql.inbox_counts().get("pending", 0) == 0
                done = client.post(path, data={"List-Unsubscribe": "One-Click"})
                assert (done.status_code, "Unsubscribed" in done.text) == (200, True)
                assert sql.inbox_counts()["pending"] == 1
    finally:
        sql.close()
