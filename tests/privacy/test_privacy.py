"""Privacy (issue 13 §4): export everything held about a person, erase it so that not a
byte of them is left in a SQLite file, its WAL or the logs, and event retention."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.runtime.errortext import error_text, stack_text
from engine.runtime.privacy import enforce_retention
from engine.store import SqlStore
from engine.store.sql.privacy import PERSON_TABLES
from engine.values import Engagement, Suppression, forgotten_address
from tests.api.test_api import NOW
from tests.privacy.conftest import Api, _api

ZEB = {"userId": "zeb-7731", "anonymousId": "dev-zeb-42",
       "traits": {"email": "zebulon.quill@example.org", "phone": "+34611223344",
                  "first_name": "Zebulonius", "consent": {"email": True}}}
SECRETS = (b"zeb-7731", b"dev-zeb-42", b"zebulon.quill@example.org", b"+34611223344",
           b"Zebulonius")


def feed(api: Api) -> None:
    """Zeb browses anonymously, signs in, orders twice; Ann orders once."""
    api.send("/v1/track", {"anonymousId": "dev-zeb-42", "event": "Product Viewed"})
    api.send("/v1/identify", ZEB)
    for _ in range(2):
        api.send("/v1/track", {"userId": "zeb-7731", "event": "Order Completed",
                               "properties": {"revenue": 12.5}})
    api.send("/v1/identify", {"userId": "ann", "traits": {"email": "ann@example.org",
                                                          "first_name": "Ann"}})
    api.send("/v1/track", {"userId": "ann", "event": "Order Completed"})


def engage(api: Api) -> None:
    """Zeb clicked a link, and his address is suppressed (a complaint); Ann's too."""
    for who, address in (("zeb-7731", "Zebulon.Quill@example.org"), ("ann", "ann@example.org")):
        api.store.record_engagement(Engagement("click", f"m-{who}", who, "welcome", "hi",
                                               NOW, url=f"https://shop.example/{who}"))
        api.store.suppress(Suppression(address, "complaint", NOW, "webhook",
                                       {"report": f"from {address.lower()}"}))


def admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.keys['admin']}"}


def test_export_returns_every_tables_rows_for_the_person(api: Api) -> None:
    feed(api)
    engage(api)
    answer = httpx.get(f"{api.url}/v1/profiles/zeb-7731/export", headers=admin(api))
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["id"] == "zeb-7731"
    assert set(doc["profile_ids"]) >= {"zeb-7731", "dev-zeb-42"}
    assert doc["traits"]["email"] == "zebulon.quill@example.org"
    assert doc["computed"]["orders_count"] == 2
    assert {("user_id", "zeb-7731"), ("anonymous_id", "dev-zeb-42")} <= {
        (i["kind"], i["value"]) for i in doc["identities"]}
    assert len(doc["events"]) == 4  # the anonymous view included
    assert len(doc["enrollments"]) == 2
    assert len(doc["sends"]) == 2
    assert set(doc["tables"]) == {name for name, _ in PERSON_TABLES} | {"suppressions"}
    assert [e["url"] for e in doc["tables"]["engagements"]] == ["https://shop.example/zeb-7731"]
    assert [r["address"] for r in doc["tables"]["suppressions"]] == [
        "zebulon.quill@example.org"]
    assert "ann@example.org" not in answer.text  # nobody else's data
    # The same document from the command line (SQL stores only: it opens a --db).
    assert httpx.get(f"{api.url}/v1/profiles/zeb-7731/export").status_code == 401
    server = {"Authorization": f"Bearer {api.keys['server']}"}
    assert httpx.get(f"{api.url}/v1/profiles/zeb-7731/export",
                     headers=server).status_code == 403


def test_forget_through_the_api_erases_every_row_and_keeps_others(api: Api) -> None:
    feed(api)
    engage(api)
    # his suppressed address (it bounced) is an old one: he has a new address since
    api.send("/v1/identify", {"userId": "zeb-7731", "traits": {"email": "zeb.new@example.org"}})
    gone = httpx.delete(f"{api.url}/v1/profiles/zeb-7731", headers=admin(api))
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted"]["events"] == 5  # the new address's identify too
    assert httpx.get(f"{api.url}/v1/profiles/zeb-7731/export",
                     headers=admin(api)).status_code == 404
    assert all(rows == [] for rows in api.store.export_person("zeb-7731").values())
    assert all(rows == [] for rows in api.store.export_person("dev-zeb-42").values())
    assert api.store.profile_for("user_id", "zeb-7731") is None
    # his clicks are gone; his address stays suppressed, kept as its hash only
    assert [e.profile_id for e in api.store.engagements()] == ["ann"]
    kept = api.store.suppressed(["ZEBULON.QUILL@example.org"])
    assert kept["ZEBULON.QUILL@example.org"].address == forgotten_address("zebulon.quill@example.org")
    assert kept["ZEBULON.QUILL@example.org"].details == {}
    assert "zebulon" not in repr(api.store.suppressions())
    ann = api.store.export_person("ann")
    assert len(ann["events"]) == 2
    assert [r["address"] for r in ann["suppressions"]] == ["ann@example.org"]
    assert ann["profiles"][0]["traits"]["email"] == "ann@example.org"


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[Path]:
    """Every log line of journeyman (DEBUG and up) and of everything else (WARNING and
    up) into a file, unfiltered: the code must not log a person's data at all."""
    path = tmp_path / "journeyman.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    ours, root = logging.getLogger("journeyman"), logging.getLogger()
    old = ours.level, root.level
    ours.setLevel(logging.DEBUG)
    root.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        ours.setLevel(old[0])
        root.setLevel(old[1])


def test_forget_on_sqlite_leaves_no_byte_of_the_person_in_the_file_wal_or_logs(
        tmp_path: Path, sqlite_template: Path, logged: Path) -> None:
    """The must-show case: a real SQLite file written through the API and the worker,
    the person erased with `journeyman profiles forget` while the service's store is
    still open; then a byte search of the database, its WAL and the logs."""
    from tests.store.conftest import make_sqlite_store

    store = make_sqlite_store(sqlite_template, tmp_path)
    db = tmp_path / "journeyman.db"
    try:
        for api in _api(tmp_path / "run", store):
            feed(api)
            engage(api)
            bad = api.post("/v1/identify", {"userId": "zeb-7731",
                                            "traits": {"phone": "0611223344x"}})
            assert bad.status_code == 400
            files = [db, db.with_name(db.name + "-wal")]
            assert any(SECRETS[2] in f.read_bytes() for f in files if f.exists())  # it was there
            result = CliRunner().invoke(app, ["profiles", "forget", "zeb-7731",
                                              "--db", f"sqlite:///{db}"])
            assert result.exit_code == 0, result.output
            assert "rows deleted" in result.output
            for path in [*files, logged]:
                data = path.read_bytes() if path.exists() else b""
                for secret in SECRETS:
                    assert secret not in data, f"{secret!r} found in {path.name}"
            both = b"".join(f.read_bytes() for f in files if f.exists())
            assert b"ann@example.org" in both  # everyone else is still there
            api.send("/v1/track", {"userId": "ann", "event": "Order Completed"})  # still works
    finally:
        store.close()


def test_events_past_retention_are_deleted_in_chunks(sql_store: SqlStore) -> None:
    events = [{"type": "track", "userId": f"u{i}", "event": "E", "messageId": f"m{i}",
               "timestamp": "2026-03-02T09:00:00Z", "receivedAt": "2026-03-02T09:00:00Z",
               "properties": {}, "traits": {}, "context": {}} for i in range(5)]
    sql_store.accept_events(events)
    later = sql_store._now() + timedelta(days=401)
    assert enforce_retention(sql_store, later, timedelta(days=400), chunk=3) == 3
    assert enforce_retention(sql_store, later, timedelta(days=400), chunk=3) == 2
    assert enforce_retention(sql_store, later, timedelta(days=400), chunk=3) == 0
    assert enforce_retention(sql_store, later, None) == 0


def test_a_database_error_names_no_value(sql_store: SqlStore) -> None:
    """What the worker logs (and parks) for a failed write holds no value of a row."""
    from sqlalchemy import insert
    from sqlalchemy.exc import SQLAlchemyError

    from engine.store.sql.tables import table

    sql_store.link_identity("email", "hidden.value@example.org", "p")
    row = {"kind": "email", "value": "hidden.value@example.org", "profile_id": "p",
           "created_at": NOW}
    with pytest.raises(SQLAlchemyError) as caught, sql_store.sql_engine.begin() as conn:
        conn.execute(insert(table("identities")).values(**row))  # a duplicate key
    # SQLAlchemy leaves the bound values out; what the server quotes (PostgreSQL's
    # DETAIL line) is dropped from what the worker logs and parks.
    assert "hidden.value" not in error_text(caught.value)
    assert "hidden.value" not in stack_text(caught.value)


def test_consent_changes_are_kept_as_records_with_their_source(sql_api: Api) -> None:
    """Who changed a consent, when, to what: the server key, then the unsubscribe link
    (after a merge: the link was sent to the anonymous visitor); in the export."""
    from engine.runtime.unsubscribe import ANONYMOUS, Person

    sql_api.send("/v1/identify", {"anonymousId": "d-1",
                                  "traits": {"consent": {"email": True, "sms": True}}})
    sql_api.send("/v1/identify", {"userId": "u-42", "anonymousId": "d-1"})  # merged
    token = sql_api.engine.unsubscribe.token(Person(ANONYMOUS, "d-1"), "email")
    assert httpx.post(f"{sql_api.url}/u/{token}").status_code == 200
    sql_api.handle()
    doc = httpx.get(f"{sql_api.url}/v1/profiles/u-42/export", headers=admin(sql_api)).json()
    records = [(d["step"], d["reason"], d["details"]["source"]) for d in doc["decisions"]
               if d["what"] == "consent"]
    assert records == [("email", "consent.email: true", "server"),
                       ("sms", "consent.sms: true", "server"),
                       ("email", "consent.email: false", "unsubscribe")]
    assert doc["traits"]["consent"] == {"email": False, "sms": True}


def test_the_service_enforces_the_policys_event_retention(tmp_path: Path) -> None:
    """`retention: {events: 30d}` in policy.yaml: the service's retention loop deletes
    what is older, and keeps the rest."""
    from engine.runtime.unsubscribe import SigningSecret
    from engine.service import Service
    from engine.testing import FakeClock
    from tests.engine.helpers import write_folder
    from tests.privacy.conftest import SHOP

    folder = write_folder(tmp_path / "j", {"thanks": SHOP}, {"thank": "channel: email\n"
                                                             "subject: Hi\ntext: hi\n"},
                          policy="consent_required: []\nretention: {events: 30d}\n")
    clock = FakeClock(NOW)
    service = Service(folder, f"sqlite:///{tmp_path / 'jm.db'}", channels={}, clock=clock,
                      secrets=[SigningSecret("a-test-secret-of-some-length")])
    try:
        def event(n: int) -> dict[str, object]:
            return {"type": "track", "userId": "u", "event": "E", "messageId": f"m{n}",
                    "timestamp": "2026-03-02T09:00:00Z", "properties": {}, "traits": {},
                    "context": {}}

        service.store.accept_events([event(1), event(2)])
        clock.set(NOW + timedelta(days=20))
        service.store.accept_events([event(3)])
        clock.set(NOW + timedelta(days=31))
        assert service._retain() == NOW + timedelta(days=31) + timedelta(minutes=1)
        left = service.store.export_person("u")["events"]
        assert [e["message_id"] for e in left] == ["m3"]
    finally:
        service.stop()
