"""Where an event waits and is filed before a worker resolves whose it is (engine/values.py
`inbox_owner`), and the other places a profile's id must not be mistaken for a userId
(found by review of the chosen profile ids, engine/runtime/identity.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.qa.scenarios import actual_records
from engine.runtime.privacy import export_document, forget
from engine.runtime.worker import Worker
from engine.testing import InMemoryEngine
from engine.values import provisional_owner
from tests.api.test_api import NOW
from tests.engine.helpers import write_folder
from tests.privacy.conftest import Api
from tests.privacy.test_identity_rules import orders
from tests.store.conftest import pg_new_database

__all__ = ["pg_new_database"]

def post(api: Api, path: str, body: dict[str, object]) -> None:
    answer = api.post(path, body)
    assert answer.status_code == 200, answer.text


def test_a_merge_takes_the_stored_rows_of_the_events_it_moves_along(api: Api) -> None:
    """Profile 42 (a device) merges into Alice while customer 42's order waits in its
    queue: the stored order moves with the queue, and is refiled as customer 42's (it
    stayed under 42, by then one of Alice's ids, and was in Alice's export)."""
    post(api, "/v1/track", {"anonymousId": "42", "event": "Product Viewed"})
    api.handle()
    post(api, "/v1/identify", {"userId": "alice", "anonymousId": "42"})
    post(api, "/v1/track", {"userId": "42", "event": "Order Completed",
                            "properties": {"item": "customer 42's order"}})
    worker = Worker(api.engine.runner, api.store, api.engine.clock, name="t")
    worker._event_batch(["alice"])  # Alice's identify alone: 42 is merged into her
    worker.handle_events()  # then customer 42's order: a profile of its own, 42~2
    store = api.store
    assert store.profile_for("user_id", "42") == "42~2"
    assert "customer 42's order" not in str(export_document(store, "alice"))
    assert "customer 42's order" in str(export_document(store, "42~2")["events"])


def test_an_event_of_a_taken_id_waits_in_a_queue_of_its_own(api: Api) -> None:
    """Until handled (or parked), customer 42's first event is nobody else's: not the
    device 42's to export or erase, and not held behind the device's events."""
    post(api, "/v1/track", {"anonymousId": "42", "event": "Product Viewed"})
    api.handle()
    post(api, "/v1/track", {"userId": "42", "event": "Order Completed",
                            "properties": {"item": "customer 42's order"}})
    store = api.store
    assert "customer 42's order" not in str(export_document(store, "42"))
    forget(store, "42")  # the device asks to be forgotten before the order is handled
    api.handle()
    assert store.profile_for("user_id", "42") == "42"  # its text is free again
    assert "customer 42's order" in str(export_document(store, "42")["events"])
    assert orders(store, "42") == 1


def test_a_provisional_queue_resolved_waits_in_the_profiles_queue(api: Api) -> None:
    """Once the first of customer 7's events made their profile (7~2), the others still
    waiting in the provisional queue wait in 7~2's, in order, with the events sent since."""
    post(api, "/v1/track", {"anonymousId": "7", "event": "Product Viewed"})
    api.handle()
    for n in range(5):
        post(api, "/v1/identify", {"userId": "7", "traits": {"n": n}})
    worker = Worker(api.engine.runner, api.store, api.engine.clock, name="t")
    worker._limit._limit["inbox"] = 1  # one event a batch
    worker.handle_events()
    store = api.store
    waiting = export_document(store, "7~2")["tables"]["inbox"]
    assert len(waiting) == 4
    assert {row["profile_id"] for row in waiting} == {"7~2"}
    post(api, "/v1/identify", {"userId": "7", "traits": {"n": 5}})
    while worker.handle_events():
        pass
    assert store.get_profile("7~2").traits["n"] == 5  # type: ignore[union-attr]
    assert "n" not in store.get_profile("7").traits  # type: ignore[union-attr]


EMITTER = """
journey: emitter
version: 1
entry: {event: Product Viewed}
steps:
  - id: tell
    emit: {event: Browsed}
"""

LISTENER = """
journey: listener
version: 1
entry: {event: Browsed}
steps:
  - id: note
    update_profile: {set: {browsed: true}}
"""


def test_an_emit_to_the_profile_itself_names_the_person_as_they_are(tmp_path: Path) -> None:
    """An anonymous visitor's own emitted event is theirs: it neither makes them known
    nor, their id being taken as a userId, a new profile."""
    folder = write_folder(tmp_path / "j", {"emitter": EMITTER, "listener": LISTENER}, {})
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.post({"type": "track", "anonymousId": "v1", "event": "Product Viewed"})
    eng.run_until_idle()
    assert eng.profile("v1").traits.get("browsed") is True
    assert eng.store.profile_for("user_id", "v1") is None  # still anonymous
    assert [p for p in ("v1~2",) if eng.store.get_profile(p)] == []


def test_the_testing_kit_and_scenarios_name_people_by_their_ids(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"emitter": EMITTER, "listener": LISTENER}, {})
    eng = InMemoryEngine.from_folder(folder, start=NOW)
    eng.post({"type": "track", "anonymousId": "u1", "event": "Signed Up"}, unread=True)
    eng.identify("u1", {"first_name": "Una"})
    assert eng.store.profile_for("user_id", "u1") == "u1~2"
    assert eng.profile("u1").traits["first_name"] == "Una"
    eng.post({"type": "track", "userId": "u1", "event": "Product Viewed"})
    eng.run_until_idle()
    assert eng.profile("u1").traits.get("browsed") is True
    assert eng.profile("u1~2").traits.get("browsed") is True
    # a scenario's expectations name people as its events did
    assert {record["user"] for record in actual_records(eng)["exits"]} == {"u1"}


def test_forget_refuses_to_guess_between_two_people_of_one_id(api: Api) -> None:
    post(api, "/v1/track", {"anonymousId": "7", "event": "Order Completed"})
    post(api, "/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com"}})
    api.handle()
    refused = httpx.delete(f"{api.url}/v1/profiles/7", auth=(api.keys["admin"], ""))
    assert refused.status_code == 409
    assert "anonymous_id 7 (profile 7)" in refused.json()["reason"]
    assert api.store.get_profile("7") is not None
    assert api.store.get_profile("7~2") is not None
    bad = httpx.delete(f"{api.url}/v1/profiles/7?by=email", auth=(api.keys["admin"], ""))
    assert bad.status_code == 400
    done = httpx.delete(f"{api.url}/v1/profiles/7?by=anonymous_id",
                        auth=(api.keys["admin"], ""))
    assert done.status_code == 200
    assert api.store.get_profile("7") is None  # the visitor, not Dana
    assert api.store.get_profile("7~2") is not None
    export = httpx.get(f"{api.url}/v1/profiles/7/export", auth=(api.keys["admin"], ""))
    assert export.json()["id"] == "7~2"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_downgrade_and_upgrade_keep_the_ids_the_engine_chose_taken(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from engine.store import SqlStore
    from engine.store.sql import migrate

    url = (f"sqlite:///{tmp_path / 'db.db'}" if backend == "sqlite"
           else request.getfixturevalue("pg_new_database")())
    store = SqlStore(url, create=True)
    try:
        store.link_identity("user_id", "42", "42")
        store.link_identity("anonymous_id", "42", "42~2")
        store.link_identity("profile", "42~2", "42~2")
        with store.sql_engine.begin() as conn:
            migrate.downgrade(conn, "0021")
        with store.sql_engine.begin() as conn:
            migrate.upgrade(conn, "head")
        assert store.profile_for("profile", "42~2") == "42~2"
    finally:
        store.close()


@pytest.mark.parametrize("sql_store", ["sqlite"], indirect=True)
def test_the_cli_says_when_an_id_names_two_people(sql_api: Api) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    post(sql_api, "/v1/track", {"anonymousId": "7", "event": "Order Completed"})
    post(sql_api, "/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com"}})
    post(sql_api, "/v1/track", {"userId": "7", "event": "Order Completed"})
    sql_api.handle()
    db = f"sqlite:///{sql_api.store.sql_engine.url.database}"  # type: ignore[attr-defined]
    runner = CliRunner()
    refused = runner.invoke(app, ["profiles", "forget", "7", "--db", db])
    assert refused.exit_code == 2
    assert "'7' names 2 people" in refused.output
    told = runner.invoke(app, ["why", "7", "--db", db, "--json"])
    assert told.exit_code == 0
    assert "the first is told" in told.output
    assert '"also_named": {"anonymous_id": "7"}' in told.output
    export = runner.invoke(app, ["profiles", "export", "7", "--db", db, "--by", "anonymous_id"])
    assert export.exit_code == 0
    assert '"id": "7"' in export.output
    wrong = runner.invoke(app, ["profiles", "export", "7", "--db", db, "--by", "email"])
    assert wrong.exit_code == 2
    done = runner.invoke(app, ["profiles", "forget", "7", "--db", db, "--by", "anonymous_id"])
    assert done.exit_code == 0, done.output
    assert sql_api.store.get_profile("7") is None
    assert sql_api.store.get_profile("7~2") is not None


def test_an_unlinked_user_ids_events_wait_in_one_queue_whatever_else_they_name(
        api: Api) -> None:
    """Customer 42's events wait together until one of them is handled, with or without
    an anonymousId of the same text (two queues let two workers split the person)."""
    post(api, "/v1/track", {"anonymousId": "42", "event": "Product Viewed"})
    api.handle()
    post(api, "/v1/identify", {"userId": "42", "traits": {"a": 1}})
    post(api, "/v1/track", {"userId": "42", "anonymousId": "42", "event": "Order Completed"})
    waiting = export_document(api.store, provisional_owner("user_id", "42"))["tables"]
    assert len(waiting["inbox"]) == 2
    api.handle()
    assert api.store.profile_for("user_id", "42") == "42~2"
    assert api.store.profile_for("anonymous_id", "42") == "42~2"  # the identify joined them
    assert orders(api.store, "42~2") == 1


def test_long_ids_have_a_provisional_queue_each(api: Api) -> None:
    stem = "p" * 250
    for n in "12":
        post(api, "/v1/track", {"anonymousId": stem + n, "event": "Product Viewed"})
    api.handle()
    for n in "12":
        post(api, "/v1/track", {"userId": stem + n, "event": "Order Completed",
                                "properties": {"item": f"order {n}"}})
    assert provisional_owner("user_id", stem + "1") != provisional_owner("user_id", stem + "2")
    api.handle()
    store = api.store
    first, second = (store.profile_for("user_id", stem + n) for n in "12")
    assert first is not None
    assert second is not None
    assert first != second
    assert "order 2" not in str(export_document(store, first))
    assert "order 2" in str(export_document(store, second)["events"])


def test_forget_leaves_the_ids_of_events_still_waiting(api: Api) -> None:
    """Forgetting visitor dev-abc123 rewrote customer DEV-ABC123's waiting event to
    userId "[forgotten]", which then made a profile of that name for everyone so rewritten."""
    post(api, "/v1/track", {"anonymousId": "dev-abc123", "event": "Product Viewed"})
    api.handle()
    post(api, "/v1/track", {"userId": "DEV-ABC123", "event": "Order Completed"})
    forget(api.store, "dev-abc123")
    api.handle()
    assert api.store.profile_for("user_id", "DEV-ABC123") == "DEV-ABC123"
    assert api.store.profile_for("user_id", "[forgotten]") is None


def test_an_old_link_of_a_profile_id_since_erased_unsubscribes_no_one_else() -> None:
    from engine.runtime.identity import profile_of_person
    from engine.runtime.unsubscribe import PROFILE, Person
    from engine.testing import InMemoryStore

    store = InMemoryStore()
    store.link_identity("user_id", "42", "42~2")  # the customer; visitor 42 was erased
    store.link_identity("profile", "42~2", "42~2")
    assert profile_of_person(store, Person(PROFILE, "42")) is None
    assert profile_of_person(store, Person(PROFILE, "42~2")) == "42~2"


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_an_event_reaching_a_profile_another_worker_holds_waits(
        sql_api: Api, pg_database: str) -> None:
    """An anonymous visitor naming Alice's e-mail merges into Alice: while another
    worker's transaction holds Alice (handling her own queue), the event is retried,
    not handled beside it (its writes and the other's would overwrite each other)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from engine.store.sql.rows import profile_lock_key

    sql_api.send("/v1/identify", {"userId": "alice", "traits": {"email": "alice@example.com"}})
    post(sql_api, "/v1/identify", {"anonymousId": "a-5",
                                   "traits": {"email": "alice@example.com", "plan": "pro"}})
    dsn = make_url(pg_database).set(drivername="postgresql").render_as_string(
        hide_password=False)
    store = sql_api.store
    with psycopg.connect(dsn) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (profile_lock_key("alice"),))
        sql_api.handle()
        assert store.inbox_counts() == {"pending": 1}
        assert "plan" not in store.get_profile("alice").traits  # type: ignore[union-attr]
        other.rollback()
    sql_api.handle()
    assert store.get_profile("alice").traits["plan"] == "pro"  # type: ignore[union-attr]
    assert store.profile_for("anonymous_id", "a-5") == "alice"


def test_a_merged_away_id_stays_its_persons_after_its_device_id_moved_and_went(
        api: Api) -> None:
    """Kay's anonymous history (device-t1) merged into Kay; the device id moved to Emm,
    and Emm was erased: a stranger on device-t1 is a new profile of another id, not
    `device-t1` (which names Kay's rows)."""
    post(api, "/v1/track", {"anonymousId": "device-t1", "event": "Product Viewed",
                            "properties": {"item": "kay browsing"}})
    api.handle()
    api.send("/v1/identify", {"userId": "kay", "anonymousId": "device-t1"})
    api.send("/v1/identify", {"userId": "emm", "anonymousId": "device-t1"})
    forget(api.store, "emm")
    post(api, "/v1/track", {"anonymousId": "device-t1", "event": "Product Viewed",
                            "properties": {"item": "stranger browsing"}})
    api.handle()
    store = api.store
    assert store.profile_for("anonymous_id", "device-t1") == "device-t1~2"
    assert "stranger browsing" not in str(export_document(store, "kay"))
    assert "kay browsing" in str(export_document(store, "kay"))


def test_why_over_http_says_when_an_id_names_two_people(api: Api) -> None:
    """As `journeyman why` says on stderr: visitor 7 and customer 7 (7~2) both ordered;
    `/why` tells the customer's and names the visitor (every record, and a header for
    an empty list); `?by=` says which, and names no one else."""
    post(api, "/v1/track", {"anonymousId": "7", "event": "Order Completed"})
    api.handle()
    post(api, "/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com"}})
    post(api, "/v1/track", {"userId": "7", "event": "Order Completed"})
    api.handle()
    admin = (api.keys["admin"], "")
    told = httpx.get(f"{api.url}/v1/profiles/7/why", auth=admin)
    assert told.status_code == 200, told.text
    assert told.json()
    assert {r["profile"] for r in told.json()} == {"7~2"}
    assert all(r["also_named"] == {"anonymous_id": "7"} for r in told.json())
    assert told.headers["journeyman-also-named"] == "anonymous_id"
    visitor = httpx.get(f"{api.url}/v1/profiles/7/why?by=anonymous_id", auth=admin)
    assert {r["profile"] for r in visitor.json()} == {"7"}
    assert all(r["also_named"] == {} for r in visitor.json())
    assert "journeyman-also-named" not in visitor.headers
    # an id of a kind that names no one is no one, not the profile of that text
    post(api, "/v1/track", {"anonymousId": "8", "event": "Order Completed"})
    api.handle()
    assert httpx.get(f"{api.url}/v1/profiles/8/why?by=user_id", auth=admin).status_code == 404
    assert httpx.get(f"{api.url}/v1/profiles/8/why", auth=admin).json()


def test_export_over_http_says_when_an_id_names_two_people(api: Api) -> None:
    """As `journeyman profiles export` says on stderr: the export of `7` is the
    customer's, and a header names the kind of id it also is for another person; `?by=`
    says which, and names no one else."""
    post(api, "/v1/track", {"anonymousId": "7", "event": "Order Completed"})
    api.handle()
    post(api, "/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com"}})
    api.handle()
    admin = (api.keys["admin"], "")
    told = httpx.get(f"{api.url}/v1/profiles/7/export", auth=admin)
    assert told.status_code == 200, told.text
    assert "dana@example.com" in told.text
    assert told.headers["journeyman-also-named"] == "anonymous_id"
    visitor = httpx.get(f"{api.url}/v1/profiles/7/export?by=anonymous_id", auth=admin)
    assert visitor.status_code == 200, visitor.text
    assert "dana@example.com" not in visitor.text
    assert "journeyman-also-named" not in visitor.headers
    alone = httpx.get(f"{api.url}/v1/profiles/7~2/export", auth=admin)
    assert "journeyman-also-named" not in alone.headers


def test_a_new_user_id_and_a_new_anonymous_id_of_one_text_wait_apart(api: Api) -> None:
    """Customer `abc` and visitor `abc`, both new, send their first events before a worker
    ran: two people, two queues. They shared the queue `abc`, so the customer's failing
    event held the visitor's behind it (parked: for good), and the visitor's waiting
    event was filed under the customer's id."""
    from datetime import timedelta

    from engine.runtime.privacy import find_person

    post(api, "/v1/track", {"userId": "abc", "event": "Order Completed",
                            "properties": {"item": "the customer's order"}})
    post(api, "/v1/track", {"anonymousId": "abc", "event": "Product Viewed",
                            "properties": {"item": "the visitor's view"}})
    store = api.store
    customer = find_person(store, "abc", by="user_id")
    visitor = find_person(store, "abc", by="anonymous_id")
    assert customer is not None
    assert visitor is not None
    assert customer != visitor
    assert "the visitor's view" not in str(export_document(store, customer))
    assert "the customer's order" not in str(export_document(store, visitor))
    handle = api.engine.runner.handle

    def broken_for_the_customer(event: Any, unit: Any) -> str:
        if event.get("userId") == "abc":
            raise RuntimeError("a bug in the customer's journey")
        return handle(event, unit)

    api.engine.runner.handle = broken_for_the_customer  # type: ignore[method-assign]
    api.engine.advance(timedelta(minutes=30))  # retried, then parked
    assert store.inbox_counts() == {"parked": 1}  # the visitor's event did not wait
    assert store.profile_for("anonymous_id", "abc") is not None
    assert store.profile_for("user_id", "abc") is None
    [failure] = store.failures()
    assert "the customer's order" in str(export_document(store, failure.profile_id))
    visitor = find_person(store, "abc", by="anonymous_id")
    assert visitor is not None
    assert "the customer's order" not in str(export_document(store, visitor))
    api.engine.runner.handle = handle  # type: ignore[method-assign]
    assert store.retry_failure(failure.id, api.engine.now)
    api.engine.advance(timedelta(minutes=1))
    assert not store.inbox_counts()
    customer, visitor = (store.profile_for(k, "abc") for k in ("user_id", "anonymous_id"))
    assert customer is not None
    assert visitor is not None
    assert customer != visitor
    # the visitor's profile came first and took the text; the customer's events then
    # waited where a taken text's wait, and their profile has an id chosen for them
    assert (visitor, customer) == ("abc", "abc~2")
    assert "the customer's order" in str(export_document(store, customer)["events"])
    assert "the customer's order" not in str(export_document(store, visitor))
    assert "the visitor's view" in str(export_document(store, visitor)["events"])


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_a_new_visitors_queue_waits_for_a_worker_making_a_profile_of_its_text(
        sql_api: Api, pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: visitor `abc`'s first event waits in its provisional queue while
    another worker makes customer `abc`'s profile (holding `abc`). Claimed beside it,
    the visitor's batch read that `abc` was free, the other committed, and the visitor's
    hold of `abc` then succeeded: customer and visitor were one profile."""
    import psycopg
    from sqlalchemy.engine import make_url

    from engine.runtime.unit import UnitOfWork
    from engine.store.sql.rows import profile_lock_key

    post(sql_api, "/v1/track", {"anonymousId": "abc", "event": "Product Viewed"})
    dsn = make_url(pg_database).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(dsn) as other:  # the other worker, handling customer abc
        other.execute("SELECT pg_advisory_xact_lock(%s)", (profile_lock_key("abc"),))
        other.execute("INSERT INTO identities (kind, value, profile_id, created_at) "
                      "VALUES ('user_id', 'abc', 'abc', now())")
        hold = UnitOfWork.hold_profile

        def the_other_commits_first(unit: UnitOfWork, profile_id: str) -> None:
            other.commit()  # between this batch's reads and its hold of `abc`
            hold(unit, profile_id)

        monkeypatch.setattr(UnitOfWork, "hold_profile", the_other_commits_first)
        sql_api.handle()
        other.commit()
    monkeypatch.undo()
    sql_api.handle()
    store = sql_api.store
    assert store.profile_for("user_id", "abc") == "abc"
    assert store.profile_for("anonymous_id", "abc") == "abc~2"
