"""A send to an address that is not its profile's own (Rozsa's referral invitation to her
friend's address): its unsubscribe link names the address (as its SHA-256), not Rozsa.
The friend cannot read Rozsa's id from it, cannot withdraw Rozsa's consent with it, and
opts herself out with it: her address is suppressed (docs/engagement.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.ports import Store
from engine.runtime.tokens import b64, unb64
from engine.runtime.unsubscribe import USER, Person
from engine.runtime.worker import Worker
from engine.testing import InMemoryEngine
from engine.values import forgotten_address
from tests.api.test_api import NOW
from tests.api.test_unsubscribe import LINKS, serve_app
from tests.engine.helpers import write_folder
from tests.store.conftest import pg_database, pg_server, sqlite_template, store

__all__ = ["pg_database", "pg_server", "sqlite_template", "store"]

ROZSA = "rozsa-77"
ROZSA_EMAIL = "rozsa.k@example.net"
FRIEND_EMAIL = "frieda.q@example.net"

INVITE = """
journey: invite
version: 1
entry: {event: Friend Invited}
re_entry: always
steps:
  - id: invite_friend
    send: {channel: email, template: invite, to: "{{ event.properties.friend_email }}"}
"""
NEWS = """
journey: news
version: 1
entry: {event: Newsletter Due}
re_entry: always
steps:
  - id: issue
    send: {channel: email, template: invite}
"""
TEMPLATE = "channel: email\nsubject: Join us\ntext: 'bye: {{ unsubscribe_url }}'\n"


@pytest.fixture
def eng(tmp_path: Path) -> InMemoryEngine:
    folder = write_folder(tmp_path / "j", {"invite": INVITE, "news": NEWS},
                          {"invite": TEMPLATE}, policy="consent_required: [email]\n")
    return InMemoryEngine.from_folder(folder, start=NOW)


def _rozsa(eng: InMemoryEngine) -> None:
    eng.identify(ROZSA, {"email": ROZSA_EMAIL, "consent": {"email": True}})


def _token(eng: InMemoryEngine, index: int = -1) -> str:
    message = eng.channel.messages[index]
    link = message.rendered.headers["List-Unsubscribe"].strip("<>")
    assert message.rendered.text == f"bye: {link}"  # the same link in the body
    return link.rsplit("/u/", 1)[1]


def test_a_send_to_another_address_carries_a_link_naming_the_address(
        eng: InMemoryEngine) -> None:
    _rozsa(eng)
    eng.track(ROZSA, "Friend Invited", {"friend_email": FRIEND_EMAIL})
    [invite] = eng.channel.messages
    assert invite.to == FRIEND_EMAIL
    token = _token(eng)
    found = eng.unsubscribe.verify(token)
    assert found is not None
    person, channel = found
    assert (person.kind, person.value, channel) == (
        "address", forgotten_address(FRIEND_EMAIL), "email")
    payload = unb64(token.partition(".")[0]).decode()
    assert ROZSA not in payload  # no one's id ...
    assert FRIEND_EMAIL not in payload  # ... nor an address
    assert ROZSA_EMAIL not in payload


@pytest.mark.parametrize("to", [ROZSA_EMAIL, "  Rozsa.K@Example.NET ", None])
def test_a_send_to_the_profiles_own_address_names_the_person(
        eng: InMemoryEngine, to: str | None) -> None:
    _rozsa(eng)
    if to is None:
        eng.track(ROZSA, "Newsletter Due")
    else:
        eng.track(ROZSA, "Friend Invited", {"friend_email": to})
    assert eng.unsubscribe.verify(_token(eng)) == (Person(USER, ROZSA), "email")


def test_an_address_token_round_trips_and_needs_its_message() -> None:
    hashed = forgotten_address(FRIEND_EMAIL)
    person = Person("address", hashed, "enr-1:invite_friend:0")
    assert LINKS.verify(LINKS.token(person, "sms")) == (person, "sms")
    for text in (f"v2\nemail\nh\n{hashed}", f"v2\nemail\nu\n{ROZSA}\nkey",
                 "v2\nemail\nx\nzz", "v2\nemail"):  # malformed, yet signed
        payload = b64(text.encode())
        assert LINKS.verify(f"{payload}.{LINKS._sign(LINKS._keys[0][0], payload)}") is None


def _served(store: Store, eng: InMemoryEngine) -> Iterator[str]:
    return serve_app(store, eng.unsubscribe, eng.clock.now)


def test_posting_an_address_link_suppresses_the_address_and_keeps_the_senders_consent(
        eng: InMemoryEngine, store: Store) -> None:
    """On the in-memory store, SQLite and PostgreSQL, through the real HTTP API."""
    eng.use_store(store)
    _rozsa(eng)
    eng.track(ROZSA, "Friend Invited", {"friend_email": FRIEND_EMAIL})
    [invite] = eng.channel.messages
    token = _token(eng)
    for base in _served(store, eng):
        with httpx.Client(base_url=base) as client:
            page = client.get(f"/u/{token}")
            assert page.status_code == 200
            assert '<form method="post">' in page.text
            assert store.suppressions() == []  # looking is not unsubscribing
            for _ in range(2):  # a second click changes nothing more
                done = client.post(f"/u/{token}", content=b"List-Unsubscribe=One-Click",
                                   headers={"content-type":
                                            "application/x-www-form-urlencoded"})
                assert done.status_code == 200, done.text
                assert "Unsubscribed" in done.text
    worker = Worker(eng.runner, store, eng.clock, name="test")
    assert worker.handle_events() == 0  # no identify queued for anyone

    [row] = store.suppressions()
    assert (row.address, row.reason, row.source, dict(row.details)) == (
        forgotten_address(FRIEND_EMAIL), "unsubscribed", "unsubscribe_link",
        {"channel": "email"})
    assert FRIEND_EMAIL in store.suppressed({FRIEND_EMAIL})
    rozsa = store.get_profile(ROZSA)
    assert rozsa is not None
    assert rozsa.traits["consent"] == {"email": True}
    # Counted once against the message the link came in: Rozsa's send.
    assert [(e.kind, e.message_key, e.profile_id, e.reason)
            for e in store.engagements()] == [
        ("unsubscribe", invite.key, ROZSA, "recipient_address")]

    eng.track(ROZSA, "Friend Invited", {"friend_email": " Frieda.Q@example.net"})
    eng.track(ROZSA, "Newsletter Due")  # Rozsa herself still gets her mail
    assert [m.to for m in eng.channel.messages] == [FRIEND_EMAIL, ROZSA_EMAIL]
    skipped = [d for d in store.recorded_decisions() if d.what == "skipped"]
    assert [(d.profile_id, d.step, d.reason) for d in skipped] == [
        (ROZSA, "invite_friend", "suppressed")]
