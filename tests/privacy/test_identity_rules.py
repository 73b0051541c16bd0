"""Identity rules that cannot leak (issue 13 §1), through the real HTTP API and a real
store: two known people are never merged, whatever links them. Each test is a row of the
identity rules table in docs/privacy.md."""

from __future__ import annotations

import httpx
import pytest

from engine.ports import Store
from engine.runtime.privacy import export_document, find_person, forget
from engine.runtime.unsubscribe import USER, Person
from engine.runtime.why import why
from tests.privacy.conftest import Api


def orders(store: Store, pid: str) -> int:
    profile = store.get_profile(pid)
    assert profile is not None
    return int(profile.computed.get("orders_count", 0))


def traits(store: Store, pid: str) -> dict[str, object]:
    profile = store.get_profile(pid)
    assert profile is not None
    return dict(profile.traits)


def test_family_laptop_a_shared_anonymous_id_never_joins_two_people(api: Api) -> None:
    """identify(alice, anonymousId=D) then identify(bob, anonymousId=D): two profiles,
    each with their own e-mail, name and orders; the device now points at Bob."""
    api.send("/v1/identify", {"userId": "alice", "anonymousId": "laptop",
                              "traits": {"email": "alice@example.com", "first_name": "Alice"}})
    api.send("/v1/track", {"userId": "alice", "anonymousId": "laptop",
                           "event": "Order Completed", "properties": {"revenue": 30}})
    api.send("/v1/identify", {"userId": "bob", "anonymousId": "laptop",
                              "traits": {"email": "bob@example.com", "first_name": "Bob"}})
    api.send("/v1/track", {"anonymousId": "laptop", "event": "Product Viewed"})
    store = api.store
    assert store.profile_for("user_id", "alice") == "alice"
    assert store.profile_for("user_id", "bob") == "bob"
    assert store.profile_for("anonymous_id", "laptop") == "bob"  # the newest known user
    assert traits(store, "alice")["email"] == "alice@example.com"
    assert traits(store, "alice")["first_name"] == "Alice"
    assert traits(store, "bob")["email"] == "bob@example.com"
    assert traits(store, "bob")["first_name"] == "Bob"
    assert (orders(store, "alice"), orders(store, "bob")) == (1, 0)
    refused = [(d.profile_id, d.what) for d in store.recorded_decisions()
               if d.what == "not_merged"]
    assert sorted(refused) == [("alice", "not_merged"), ("bob", "not_merged")]
    assert all("alice" not in str(d.details) and "bob" not in str(d.details)
               for d in store.recorded_decisions() if d.what == "not_merged")
    # Alice's thank-you went to Alice, named Alice; nothing of hers to Bob.
    assert [(m.to, m.rendered.subject) for m in api.engine.channel.messages] == [
        ("alice@example.com", "Thanks Alice")]


def test_alias_between_two_known_people_is_refused_and_keeps_both(sql_api: Api) -> None:
    sql_api.send("/v1/identify", {"userId": "alice", "traits": {"email": "alice@example.com"}})
    sql_api.send("/v1/track", {"userId": "alice", "event": "Order Completed"})
    sql_api.send("/v1/identify", {"userId": "mallory", "traits": {"email": "m@example.com"}})
    sql_api.send("/v1/alias", {"userId": "mallory", "previousId": "alice"})
    sql_api.send("/v1/track", {"userId": "alice", "event": "Order Completed"})
    store = sql_api.store
    assert store.profile_for("user_id", "alice") == "alice"  # her id is not taken
    assert traits(store, "mallory")["email"] == "m@example.com"
    assert "alice@example.com" not in str(traits(store, "mallory"))
    assert (orders(store, "alice"), orders(store, "mallory")) == (2, 0)


def test_merge_by_email_never_joins_two_known_people(api: Api) -> None:
    """An identify naming someone else's e-mail (identify-by email) keeps both apart."""
    api.send("/v1/identify", {"userId": "alice", "traits": {"email": "alice@example.com",
                                                            "first_name": "Alice"}})
    api.send("/v1/track", {"userId": "alice", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "mallory", "traits": {"email": "alice@example.com"}})
    store = api.store
    assert store.get_profile("alice") is not None
    assert traits(store, "alice")["first_name"] == "Alice"
    assert "first_name" not in traits(store, "mallory")
    assert (orders(store, "alice"), orders(store, "mallory")) == (1, 0)


def test_an_anonymous_visitor_naming_a_known_email_joins_that_person(sql_api: Api) -> None:
    """Anonymous history folds into the known profile, never the other way round."""
    sql_api.send("/v1/identify", {"userId": "alice", "traits": {"email": "alice@example.com",
                                                            "first_name": "Alice"}})
    sql_api.send("/v1/track", {"anonymousId": "a-9", "event": "Order Completed"})
    sql_api.send("/v1/identify", {"anonymousId": "a-9", "traits": {"email": "alice@example.com"}})
    store = sql_api.store
    assert store.profile_for("anonymous_id", "a-9") == "alice"
    assert store.get_profile("a-9") is None
    assert orders(store, "alice") == 1
    assert traits(store, "alice")["first_name"] == "Alice"


def test_an_anonymous_profile_merges_into_the_known_one(sql_api: Api) -> None:
    sql_api.send("/v1/track", {"anonymousId": "a-1", "event": "Order Completed"})
    sql_api.send("/v1/identify", {"userId": "carol", "anonymousId": "a-1"})
    assert sql_api.store.profile_for("anonymous_id", "a-1") == "carol"
    assert orders(sql_api.store, "carol") == 1


def test_alias_to_a_new_user_id_renames_without_merging(sql_api: Api) -> None:
    sql_api.send("/v1/identify", {"userId": "dan", "traits": {"email": "dan@example.com"}})
    sql_api.send("/v1/alias", {"userId": "dan-2", "previousId": "dan"})
    sql_api.send("/v1/track", {"userId": "dan-2", "event": "Order Completed"})
    store = sql_api.store
    assert store.profile_for("user_id", "dan-2") == "dan"
    assert orders(store, "dan") == 1


def test_alias_from_an_anonymous_id_to_a_new_user_merges_into_the_user(sql_api: Api) -> None:
    sql_api.send("/v1/track", {"anonymousId": "a-7", "event": "Order Completed"})
    sql_api.send("/v1/alias", {"userId": "erin", "previousId": "a-7"})
    store = sql_api.store
    assert store.profile_for("anonymous_id", "a-7") == "erin"
    assert store.get_profile("a-7") is None
    assert orders(store, "erin") == 1


def test_an_anonymous_id_equal_to_a_known_user_id_is_someone_else(api: Api) -> None:
    """Customer 42's userId and a visitor's device id "42" are two people: the device's
    events make an anonymous profile of an id the engine chooses (`42~2`); nothing of
    the visitor's reaches the customer, and an identify naming both joins them."""
    api.send("/v1/identify", {"userId": "42", "traits": {"email": "cleo@example.com",
                                                         "first_name": "Cleo"}})
    api.send("/v1/track", {"anonymousId": "42", "event": "Order Completed"})
    api.send("/v1/identify", {"anonymousId": "42", "traits": {"first_name": "Mallory"}})
    store = api.store
    assert store.profile_for("user_id", "42") == "42"
    assert store.profile_for("anonymous_id", "42") == "42~2"
    assert store.profile_for("profile", "42~2") == "42~2"
    assert traits(store, "42")["first_name"] == "Cleo"
    assert (orders(store, "42"), orders(store, "42~2")) == (0, 1)
    assert api.engine.channel.messages == []  # no "Thanks Mallory" to Cleo's address
    api.send("/v1/identify", {"userId": "42", "anonymousId": "42"})
    assert store.profile_for("anonymous_id", "42") == "42"
    assert store.profile_for("profile", "42~2") == "42"  # carried along by the merge
    assert store.get_profile("42~2") is None
    assert (orders(store, "42"), traits(store, "42")["first_name"]) == (1, "Cleo")


def test_a_user_id_equal_to_an_anonymous_visitors_id_is_a_new_known_profile(api: Api) -> None:
    api.send("/v1/track", {"anonymousId": "7", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com",
                                                        "first_name": "Dana"}})
    api.send("/v1/track", {"userId": "7", "event": "Order Completed"})
    store = api.store
    assert store.profile_for("user_id", "7") == "7~2"
    assert store.profile_for("anonymous_id", "7") == "7"
    assert (orders(store, "7"), orders(store, "7~2")) == (1, 1)
    assert "email" not in traits(store, "7")
    assert [(m.to, m.rendered.subject) for m in api.engine.channel.messages] == [
        ("dana@example.com", "Thanks Dana")]


def test_an_event_naming_one_text_as_both_ids_keeps_its_anonymous_profile(api: Api) -> None:
    """A client that sends the same id as anonymousId and, once known, as userId too:
    the identify naming both says they are one person, as before (one profile `x`)."""
    api.send("/v1/track", {"anonymousId": "x", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "x", "anonymousId": "x",
                              "traits": {"email": "x@example.com"}})
    store = api.store
    assert store.profile_for("user_id", "x") == store.profile_for("anonymous_id", "x") == "x"
    assert orders(store, "x") == 1
    assert [k for k in store.identities_of("x") if k[0] != "email"] == [
        ("anonymous_id", "x"), ("user_id", "x")]  # no id chosen


def test_a_client_cannot_claim_an_id_the_engine_chose(api: Api) -> None:
    api.send("/v1/identify", {"userId": "42", "traits": {"email": "cleo@example.com"}})
    api.send("/v1/track", {"anonymousId": "42", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "42~2", "traits": {"email": "eve@example.com"}})
    store = api.store
    assert store.profile_for("user_id", "42~2") == "42~2~2"
    assert "email" not in traits(store, "42~2")
    assert (orders(store, "42~2"), orders(store, "42~2~2")) == (1, 0)


def test_a_known_profile_of_a_chosen_id_is_never_merged_with_another(api: Api) -> None:
    """The family-laptop rule holds for a known person whose profile id the engine chose."""
    api.send("/v1/track", {"anonymousId": "7", "event": "Product Viewed"})
    api.send("/v1/identify", {"userId": "7", "anonymousId": "laptop",
                              "traits": {"email": "dana@example.com"}})
    api.send("/v1/identify", {"userId": "alice", "anonymousId": "laptop",
                              "traits": {"email": "alice@example.com"}})
    store = api.store
    assert store.profile_for("user_id", "7") == "7~2"
    assert traits(store, "7~2")["email"] == "dana@example.com"
    assert traits(store, "alice")["email"] == "alice@example.com"
    assert sorted(d.profile_id for d in store.recorded_decisions()
                  if d.what == "not_merged") == ["7~2", "alice"]


def test_a_chosen_id_keeps_within_the_id_columns(api: Api) -> None:
    long_id = "u" * 255
    api.send("/v1/identify", {"userId": long_id, "traits": {"email": "long@example.com"}})
    api.send("/v1/track", {"anonymousId": long_id, "event": "Order Completed"})
    chosen = api.store.profile_for("anonymous_id", long_id)
    assert chosen == "u" * 253 + "~2"
    assert (orders(api.store, long_id), orders(api.store, chosen)) == (0, 1)


def test_why_and_forget_reach_the_rows_of_a_chosen_id_merged_in(api: Api) -> None:
    """The visitor's decisions are filed under `42~2`; once that profile is merged into
    customer 42, `why 42` tells them and `forget` erases them with the rest."""
    api.send("/v1/identify", {"userId": "42", "traits": {"email": "cleo@example.com"}})
    api.send("/v1/track", {"anonymousId": "42", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "42", "anonymousId": "42"})
    store = api.store
    told = why(store, "42")
    assert told is not None
    assert [(w.profile, w.kind) for w in told] == [
        ("42~2", "entered"), ("42~2", "skipped"), ("42~2", "exited")]
    assert find_person(store, "42~2") == "42"
    forget(store, "42")
    assert [d for d in store.recorded_decisions() if d.profile_id in ("42", "42~2")] == []
    assert store.profile_for("profile", "42~2") is None


def test_an_unsubscribe_link_of_a_chosen_id_names_the_person_by_their_user_id(
        api: Api) -> None:
    api.send("/v1/track", {"anonymousId": "7", "event": "Product Viewed"})
    api.send("/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com",
                                                        "first_name": "Dana"}})
    api.send("/v1/track", {"userId": "7", "event": "Order Completed"})
    [sent] = api.engine.channel.messages
    token = sent.rendered.headers["List-Unsubscribe"].strip("<>").rsplit("/u/", 1)[1]
    assert api.engine.unsubscribe.verify(token) == (Person(USER, "7"), "email")
    done = httpx.post(f"{api.url}/u/{token}", content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200
    api.handle()
    assert traits(api.store, "7~2")["consent"] == {"email": False}
    assert "consent" not in traits(api.store, "7")  # the visitor is someone else


@pytest.mark.postgres
@pytest.mark.parametrize("sql_store", ["postgres"], indirect=True)
def test_a_chosen_id_another_worker_holds_waits_for_it(sql_api: Api, pg_database: str) -> None:
    """PostgreSQL: while another transaction holds `42~2` (a worker handling a client's
    event for a userId of that text), the visitor's event is retried, not given that id."""
    import psycopg
    from sqlalchemy.engine import make_url

    from engine.store.sql.rows import profile_lock_key

    sql_api.send("/v1/identify", {"userId": "42", "traits": {"email": "cleo@example.com"}})
    assert sql_api.post("/v1/track", {"anonymousId": "42", "event": "Order Completed"}
                        ).status_code == 200
    dsn = make_url(pg_database).set(drivername="postgresql").render_as_string(
        hide_password=False)
    store = sql_api.store
    with psycopg.connect(dsn) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (profile_lock_key("42~2"),))
        sql_api.handle()
        assert store.profile_for("anonymous_id", "42") is None
        assert store.inbox_counts() == {"pending": 1}
        other.rollback()
    sql_api.handle()  # a minute later (BUSY_RETRY is 100 ms)
    assert store.profile_for("anonymous_id", "42") == "42~2"
    assert orders(store, "42~2") == 1


def test_a_shared_device_takes_none_of_the_first_persons_rows_along(api: Api) -> None:
    """Alice's anonymous history on the family laptop was merged into her profile;
    the device id then moves to Bob, her rows stay hers: in her export, not his."""
    api.send("/v1/track", {"anonymousId": "laptop", "event": "Order Completed",
                           "properties": {"item": "Alice's gift"}})
    api.send("/v1/identify", {"userId": "alice", "anonymousId": "laptop",
                              "traits": {"email": "alice@example.com"}})
    api.send("/v1/identify", {"userId": "bob", "anonymousId": "laptop",
                              "traits": {"email": "bob@example.com"}})
    store = api.store
    assert store.profile_for("anonymous_id", "laptop") == "bob"
    assert "Alice's gift" in str(export_document(store, "alice"))
    assert "Alice's gift" not in str(export_document(store, "bob"))
    forget(store, "bob")
    assert "Alice's gift" in str(export_document(store, "alice"))


def test_an_email_that_is_another_persons_user_id_names_none_of_their_rows(
        api: Api) -> None:
    """identify-by email: Mallory names the e-mail that is Alice's userId; the e-mail
    identifier moves to Mallory, and still Mallory's export holds nothing of Alice's."""
    api.send("/v1/identify", {"userId": "alice@example.com",
                              "traits": {"email": "alice@example.com", "first_name": "Alice"}})
    api.send("/v1/identify", {"userId": "mallory", "traits": {"email": "alice@example.com"}})
    store = api.store
    assert store.profile_for("email", "alice@example.com") == "mallory"
    document = export_document(store, "mallory")
    assert document["profile_ids"] == ["mallory"]
    assert "Alice" not in str(document)


def test_the_visitors_first_event_is_filed_as_the_visitors(api: Api) -> None:
    """The inbox queued the device's first event for profile `42` (its id's text; the
    chosen id did not exist yet): handled, it is filed under `42~2`."""
    api.send("/v1/identify", {"userId": "42", "traits": {"email": "cleo@example.com"}})
    api.send("/v1/track", {"anonymousId": "42", "event": "Order Completed",
                           "properties": {"item": "the visitor's order"}})
    store = api.store
    assert "the visitor's order" in str(export_document(store, "42~2")["events"])
    assert "the visitor's order" not in str(export_document(store, "42"))


def test_the_id_of_a_profile_merged_away_names_no_one_else(api: Api) -> None:
    api.send("/v1/track", {"anonymousId": "a-1", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "carol", "anonymousId": "a-1"})
    api.send("/v1/identify", {"userId": "a-1", "traits": {"email": "newcomer@example.com"}})
    store = api.store
    assert store.profile_for("user_id", "a-1") == "a-1~2"
    assert "newcomer" not in str(export_document(store, "carol"))
    assert export_document(store, "carol")["profile_ids"] == ["a-1", "carol"]


def test_why_of_a_user_id_tells_nothing_of_the_visitor_of_the_same_text(api: Api) -> None:
    api.send("/v1/track", {"anonymousId": "7", "event": "Order Completed"})
    api.send("/v1/identify", {"userId": "7", "traits": {"email": "dana@example.com"}})
    assert [w.profile for w in why(api.store, "7") or []] == []  # Dana's: nothing yet
    assert {w.profile for w in why(api.store, "7~2") or []} == set()
    visitor = [d for d in api.store.recorded_decisions() if d.profile_id == "7"]
    assert visitor  # the visitor's own, told for no one else
