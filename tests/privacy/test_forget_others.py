"""forget erases the person from other people's rows too (docs/privacy.md, "Other
people's rows"), and keeps no free text with a forgotten person's suppression.

The referral journeys (journeys/library/referral*.yaml) are the case: friend-9x signs
up naming rozsa-77 as referrer (`properties.referrer_id`), orders, and the engine emits
`Referral Reward Earned` to rozsa-77 with `properties.friend_id` and
`context.from_profile` naming friend-9x. Both stores (memory, SQLite, PostgreSQL);
on SQLite a byte search of the file and its WAL, as `grep -a -F` would."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from engine.cli import app
from engine.ports import Store, Suppression
from engine.runtime.privacy import find_person, forget
from engine.store import SqlStore
from engine.store.scrub import FORGOTTEN
from engine.store.sql.tables import TABLE_NAMES
from engine.testing import InMemoryEngine
from tests.conftest import LIBRARY
from tests.engine.helpers import write_folder

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ROZSA = {"email": "rozsa.k@example.net", "first_name": "Rozsalinde"}
FRIEND = {"email": "frieda.q@example.net", "first_name": "Friedalind"}
FRIEND_BYTES = (b"friend-9x", b"frieda.q@example.net", b"frieda.q@exampl", b"Friedalind")
ROZSA_BYTES = (b"rozsa-77", b"rozsa.k@example.net", b"Rozsalinde")


def referral(store: Store) -> InMemoryEngine:
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["referral", "referral_reward"])
    eng.use_store(store)
    for pid, traits in (("rozsa-77", ROZSA), ("friend-9x", FRIEND)):
        eng.identify(pid, {**traits, "timezone": "Europe/Madrid", "consent": {"email": True}})
    eng.track("friend-9x", "Signed Up", {"source": "site", "referrer_id": "rozsa-77"})
    eng.track("friend-9x", "Order Completed", {"revenue": 35})
    assert [(m.profile, m.template) for m in eng.sent] == [
        ("friend-9x", "referral_friend_thanks"), ("rozsa-77", "referral_reward")]
    return eng


def sqlite_files(store: Store) -> list[Path] | None:
    """The SQLite file and its WAL (None: not a SQLite store)."""
    if not isinstance(store, SqlStore) or store.sql_engine.dialect.name != "sqlite":
        return None
    db = Path(str(store.sql_engine.url.database))
    return [db, db.with_name(db.name + "-wal")]


def erase(store: Store, user: str) -> None:
    """`journeyman profiles forget` on SQLite (the store stays open, as a service's
    would), the runtime's forget (what the admin endpoint calls) otherwise."""
    files = sqlite_files(store)
    if files is not None:
        result = CliRunner().invoke(app, ["profiles", "forget", user,
                                          "--db", f"sqlite:///{files[0]}"])
        assert result.exit_code == 0, result.output
        return
    pid = find_person(store, user)
    assert pid is not None
    forget(store, pid)


def everything(store: Store) -> str:
    """Every row the store holds, as text."""
    if isinstance(store, SqlStore):
        with store.sql_engine.connect() as conn:
            return "\n".join(repr(row) for name in TABLE_NAMES
                             for row in conn.execute(text(f"SELECT * FROM {name}")))
    return repr({k: v for k, v in vars(store).items() if not k.startswith("_")})


def body(event: dict[str, Any]) -> dict[str, Any]:
    """An exported event as sent (a SQL store's row holds it in `body`)."""
    found: dict[str, Any] = event.get("body", event)
    return found


def assert_gone(store: Store, secrets: tuple[bytes, ...]) -> None:
    held = everything(store)
    for secret in secrets:
        assert secret.decode() not in held
    files = sqlite_files(store)
    if files is not None:
        for path in files:
            data = path.read_bytes() if path.exists() else b""
            for secret in secrets:
                assert data.count(secret) == 0, f"{secret!r} found in {path.name}"


def test_forgetting_the_friend_scrubs_them_from_the_referrers_rows(store: Store) -> None:
    eng = referral(store)
    assert "friend-9x" in repr(store.export_person("rozsa-77")["events"])  # it was there
    erase(store, "friend-9x")
    assert_gone(store, FRIEND_BYTES)
    # the referrer's rows stay, with the same shape; the friend is "[forgotten]" in them
    doc = store.export_person("rozsa-77")
    [reward] = [body(e) for e in doc["events"] if body(e)["event"] == "Referral Reward Earned"]
    assert reward["userId"] == "rozsa-77"
    assert reward["properties"] == {"friend_id": FORGOTTEN}
    assert reward["context"] == {"journey": "referral", "step": "reward_referrer",
                                 "from_profile": FORGOTTEN}
    [enrollment] = doc["enrollments"]
    assert enrollment["entry_event"]["properties"] == {"friend_id": FORGOTTEN}
    assert enrollment["entry_event"]["context"]["from_profile"] == FORGOTTEN
    assert doc["profiles"][0]["traits"]["email"] == "rozsa.k@example.net"
    assert doc["profiles"][0]["traits"]["loyalty_points"] == 500
    # the referrer still runs: a second reward reaches her
    eng.post({"type": "track", "userId": "rozsa-77", "event": "Referral Reward Earned",
              "properties": {"friend_id": "someone-else"}})
    assert [m.profile for m in eng.sent][-1] == "rozsa-77"
    assert store.get_profile("rozsa-77").traits["loyalty_points"] == 1000  # type: ignore[union-attr]


def test_forgetting_the_referrer_scrubs_them_from_the_friends_sign_up(store: Store) -> None:
    referral(store)
    erase(store, "rozsa-77")
    assert_gone(store, ROZSA_BYTES)
    doc = store.export_person("friend-9x")
    [signed_up] = [body(e) for e in doc["events"] if body(e)["event"] == "Signed Up"]
    assert signed_up["properties"] == {"source": "site", "referrer_id": FORGOTTEN}
    referral_row = next(e for e in doc["enrollments"] if e["journey"] == "referral")
    assert referral_row["entry_event"]["properties"]["referrer_id"] == FORGOTTEN
    assert doc["profiles"][0]["traits"]["email"] == "frieda.q@example.net"


def test_free_text_naming_the_person_is_scrubbed_and_their_suppression_keeps_no_text(
        store: Store) -> None:
    """Another address's suppression note names the friend's address; the friend's own
    suppression has a free-text reason, as the CLI used to cut it to 32 characters."""
    referral(store)
    store.suppress(Suppression("frieda.q@example.net", "hard bounce from frieda.q@exampl",
                               START, "cli"))
    store.suppress(Suppression("family@example.net", "manual", START, "cli",
                               {"note": "same household as frieda.q@example.net, ask friend-9x"}))
    erase(store, "friend-9x")
    assert_gone(store, FRIEND_BYTES)
    kept = store.suppressed(["frieda.q@example.net", "family@example.net"])
    assert kept["frieda.q@example.net"].address.startswith("sha256:")
    assert kept["frieda.q@example.net"].reason == "forgotten"
    assert kept["frieda.q@example.net"].details == {}
    assert kept["family@example.net"].details == {
        "note": f"same household as {FORGOTTEN}, ask {FORGOTTEN}"}


def test_a_suppression_reason_of_a_known_kind_is_kept(store: Store) -> None:
    referral(store)
    store.suppress(Suppression("frieda.q@example.net", "complaint", START, "webhook",
                               {"report": "from frieda.q@example.net"}))
    erase(store, "friend-9x")
    kept = store.suppressed(["frieda.q@example.net"])["frieda.q@example.net"]
    assert (kept.reason, kept.source, kept.details) == ("complaint", "webhook", {})


def test_an_address_another_person_still_has_is_left_in_their_rows(store: Store) -> None:
    """A shared family address: it is the other person's own too, so forgetting one of
    them leaves it on the other's profile (their sends still go)."""
    eng = referral(store)
    eng.identify("rozsa-77", {"email": "frieda.q@example.net"})  # the same address
    erase(store, "friend-9x")
    doc: dict[str, Any] = store.export_person("rozsa-77")
    assert doc["profiles"][0]["traits"]["email"] == "frieda.q@example.net"
    assert "friend-9x" not in everything(store)


def test_the_cli_refuses_a_reason_it_would_have_cut(tmp_path: Path,
                                                    sqlite_template: Path) -> None:
    """`suppressions add --reason` is a kind of at most 32 characters: a longer one is
    refused (it was cut silently), the text goes in --note and is kept whole."""
    from tests.store.conftest import make_sqlite_store

    make_sqlite_store(sqlite_template, tmp_path).close()
    db = f"sqlite:///{tmp_path / 'journeyman.db'}"
    long = "hard bounce from frieda.q@example.net"
    refused = CliRunner().invoke(app, ["suppressions", "add", "frieda.q@example.net",
                                       "--reason", long, "--db", db])
    assert refused.exit_code == 1
    assert "at most 32 characters" in refused.output
    assert "--note" in refused.output
    added = CliRunner().invoke(app, ["suppressions", "add", "frieda.q@example.net",
                                     "--reason", "hard_bounce", "--note", long, "--db", db])
    assert added.exit_code == 0, added.output
    store = SqlStore(db)
    try:
        kept = store.suppressed(["frieda.q@example.net"])["frieda.q@example.net"]
    finally:
        store.close()
    assert (kept.reason, dict(kept.details)) == ("hard_bounce", {"note": long})


def test_a_short_or_numeric_id_is_replaced_only_where_it_names_a_person(store: Store) -> None:
    """User `42`: forgetting them turned another customer's `zip: "42"` and `order_id:
    "42"` into `[forgotten]` (a reviewer's find). A plain id (short, or all digits) is
    replaced only as the value of a key that names a person (`referrer_id`, `userId`,
    the engine's `from_profile`), never inside text nor under other keys."""
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["referral"])
    eng.use_store(store)
    eng.identify("42", {"email": "forty.two@example.net", "consent": {"email": True}})
    eng.identify("alice", {"email": "alice.b@example.net", "zip": "42", "plan": "gold",
                           "consent": {"email": True}})
    eng.track("alice", "Signed Up", {"source": "site", "referrer_id": "42"})
    eng.track("alice", "Order Completed", {"revenue": 35, "order_id": "42",
                                           "note": "order 42 for 42 Main St"})
    erase(store, "42")
    doc = store.export_person("alice")
    assert doc["profiles"][0]["traits"]["zip"] == "42"
    events = {body(e)["event"]: body(e) for e in doc["events"]}
    assert events["Signed Up"]["properties"]["referrer_id"] == FORGOTTEN
    assert events["Order Completed"]["properties"] == {
        "revenue": 35, "order_id": "42", "note": "order 42 for 42 Main St"}
    assert "forty.two@example.net" not in everything(store)


def test_a_long_numeric_id_is_the_person_wherever_it_stands(store: Store) -> None:
    """A numeric user id of 7 digits or more (a customer number, a phone number used as
    an id) was plain after the previous fix: left in another person's free text and
    under keys that name no one. Shorter numbers (`42`) stay plain."""
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["referral"])
    eng.use_store(store)
    eng.identify("5551234567", {"email": "caller.one@example.net"})
    eng.identify("alice", {"email": "alice.b@example.net", "consent": {"email": True}})
    eng.track("alice", "Order Completed", {"revenue": 5, "caller": "5551234567",
                                           "note": "call 5551234567 back"})
    erase(store, "5551234567")
    [order] = [body(e) for e in store.export_person("alice")["events"]
               if body(e)["event"] == "Order Completed"]
    assert order["properties"]["caller"] == FORGOTTEN
    assert order["properties"]["note"] == f"call {FORGOTTEN} back"
    assert "5551234567" not in everything(store)


def test_forgetting_a_renamed_person_scrubs_every_id_they_had(store: Store) -> None:
    """A person's rows are named by more than their profile id: the userId an alias gave
    them (`rozsa-77` is `rozsa.kovacs` from now on) and their device's anonymousId. A
    friend who signed up naming the new userId as referrer kept it after the forget:
    the scrub of other people's rows read only the profile ids and e-mail/phone."""
    eng = referral(store)
    eng.alias("rozsa.kovacs", "rozsa-77")
    eng.post({"type": "track", "userId": "rozsa.kovacs", "anonymousId": "dev-rozsa-4411",
              "event": "Page Viewed"}, unread=True)  # only to link the device
    eng.identify("pal-55", {"email": "pal.n@example.net", "first_name": "Pal"})
    eng.track("pal-55", "Signed Up", {"source": "site", "referrer_id": "rozsa.kovacs",
                                      "device": "dev-rozsa-4411"})
    erase(store, "rozsa.kovacs")
    assert_gone(store, (*ROZSA_BYTES, b"rozsa.kovacs", b"dev-rozsa-4411"))
    doc = store.export_person("pal-55")
    [signed_up] = [body(e) for e in doc["events"] if body(e)["event"] == "Signed Up"]
    assert signed_up["properties"] == {"source": "site", "referrer_id": FORGOTTEN,
                                       "device": FORGOTTEN}


INVITE = """
journey: invite
version: 1
entry: {event: Friend Invited}
re_entry: always
steps:
  - id: invite_friend
    send: {channel: email, template: invite, to: "{{ event.properties.friend_email }}"}
"""


def test_a_send_of_someone_else_to_the_persons_address_keeps_no_address(
        store: Store, tmp_path: Path) -> None:
    """Rozsa invites her friend by e-mail: the invitation is Rozsa's send (her outbox
    row), its recipient Frieda's address. Forgetting Frieda left her address in that
    row's `to` column (the scrub read `rendered` and `last_error` only)."""
    folder = write_folder(tmp_path / "j", {"invite": INVITE},
                          {"invite": "channel: email\nsubject: Join us\ntext: hi\n"})
    eng = InMemoryEngine.from_folder(folder, start=START)
    eng.use_store(store)
    eng.identify("rozsa-77", ROZSA)
    eng.track("rozsa-77", "Friend Invited", {"friend_email": FRIEND["email"]})
    eng.identify("friend-9x", FRIEND)
    assert [m.to for m in eng.sent] == [FRIEND["email"]]
    erase(store, "friend-9x")
    held = everything(store)
    assert FRIEND["email"] not in held
    assert "rozsa.k@example.net" in held  # Rozsa's own data stays
    [send] = store.export_person("rozsa-77")["outbox"]
    assert (send.get("to") or send.get("entry", {}).get("to")) == FORGOTTEN


def test_the_persons_address_in_a_link_of_someone_elses_is_scrubbed(store: Store) -> None:
    """Rozsa's invitation linked to `join?email=frieda.q%40example.net` and Frieda
    clicked it: the click is Rozsa's (her engagement, her `Email Clicked` event) and the
    address stood in its URL percent-encoded, where the scrub, looking for the address
    as written, did not see it."""
    from engine.values import Engagement

    link = "https://shop.example/join?email=frieda.q%40example.net&ph=%2B34611223344"
    eng = InMemoryEngine.from_folder(LIBRARY, start=START, only=["welcome"])
    eng.use_store(store)
    eng.identify("rozsa-77", ROZSA)
    eng.identify("friend-9x", {**FRIEND, "phone": "+34611223344"})
    eng.track("rozsa-77", "Email Clicked", {"url": link})
    store.record_engagement(Engagement("click", "m-1", "rozsa-77", "welcome", "hi", START,
                                       url=link))
    erase(store, "friend-9x")
    held = everything(store)
    for gone in ("frieda.q%40example.net", "%2B34611223344", "frieda.q"):
        assert gone not in held, gone
    assert f"email={FORGOTTEN}&ph={FORGOTTEN}" in held


def test_a_send_of_someone_else_still_waiting_for_the_forgotten_address_is_not_sent(
        store: Store, tmp_path: Path) -> None:
    """Rozsa's invitation to Frieda waits out the quiet hours when Frieda is forgotten:
    the scrub wrote [forgotten] in its `to` (0a736e5), and the next morning the
    dispatcher handed the channel a send to '[forgotten]' (an SMTP or SMS failure in
    production, delivered by the in-memory channel). It is skipped as no_address."""
    folder = write_folder(tmp_path / "j", {"invite": INVITE},
                          {"invite": "channel: email\nsubject: Join us\ntext: hi\n"},
                          policy="consent_required: []\n"
                                 "quiet_hours: {start: '21:00', end: '08:00'}\n")
    eng = InMemoryEngine.from_folder(folder, start=START)
    eng.use_store(store)
    eng.identify("rozsa-77", {**ROZSA, "timezone": "UTC"})
    eng.identify("friend-9x", FRIEND)
    eng.advance("12h30m")  # 21:30: the invitation waits for the morning
    eng.track("rozsa-77", "Friend Invited", {"friend_email": FRIEND["email"]})
    assert eng.sent == []
    erase(store, "friend-9x")
    eng.advance("12h")
    assert eng.sent == []
    decisions = store.export_person("rozsa-77")["decisions"]
    assert [(d.get("step"), d.get("reason")) for d in map(dict, decisions)
            if d.get("what", d.get("kind")) == "skipped"] == [("invite_friend", "no_address")]
    assert FRIEND["email"] not in everything(store)
