"""`forget` erases exactly one person: nothing of anyone else, even where the other
person's ids are the same text as the forgotten person's e-mail or phone."""

from __future__ import annotations

from typing import Any

from engine.runtime.privacy import export_document, forget
from tests.privacy.conftest import Api


def post(api: Api, path: str, body: dict[str, object]) -> None:
    answer = api.post(path, body)
    assert answer.status_code == 200, answer.text


def everything_of(api: Api, pid: str) -> dict[str, Any]:
    document = export_document(api.store, pid)
    return {key: document[key] for key in (
        "profile_ids", "traits", "identities", "events", "enrollments", "sends")}


def test_forget_leaves_another_persons_ids_of_the_same_text_as_the_email(api: Api) -> None:
    """Bob's userId is his e-mail; Ann gave the same address as hers (a shared family
    address, a typo). Forgetting Ann deleted every identity row of that value, wherever
    it pointed: Bob's userId was gone, so the scrub took his address for Ann's alone and
    rewrote his own events and sends to `[forgotten]`. Bob's data must be as before."""
    shared = "bob@example.com"
    post(api, "/v1/identify", {"userId": shared, "anonymousId": "bob-phone",
                               "traits": {"email": shared, "first_name": "Bob"}})
    post(api, "/v1/track", {"userId": shared, "event": "Order Completed"})
    post(api, "/v1/identify", {"userId": "ann", "traits": {"first_name": "Ann"}})
    post(api, "/v1/track", {"userId": "ann", "event": "Order Completed"})
    api.handle()
    post(api, "/v1/identify", {"userId": "ann", "traits": {"email": shared}})
    api.handle()
    store = api.store
    bob = store.profile_for("user_id", shared)
    assert bob is not None
    assert store.profile_for("user_id", "ann") == "ann"
    before = everything_of(api, bob)
    assert before["events"]
    forget(store, "ann")
    assert store.get_profile("ann") is None
    assert store.profile_for("user_id", "ann") is None
    assert store.profile_for("user_id", shared) == bob
    assert store.profile_for("anonymous_id", "bob-phone") == bob
    assert everything_of(api, bob) == before
