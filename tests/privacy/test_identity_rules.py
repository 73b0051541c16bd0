"""Identity rules that cannot leak (issue 13 §1), through the real HTTP API and a real
store: two known people are never merged, whatever links them. Each test is a row of the
identity rules table in docs/privacy.md."""

from __future__ import annotations

from engine.ports import Store
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
