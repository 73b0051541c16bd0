"""The events of a device and the identify or alias that links it to someone are handled
in the order they came, though they wait in different queues: the device's events sent
after the link (not handled yet, so queued in the device's own queue) come after it."""

from __future__ import annotations

from typing import Any

from tests.privacy.conftest import Api


def post(api: Api, path: str, body: dict[str, object]) -> None:
    answer = api.post(path, body)
    assert answer.status_code == 200, answer.text


def plan(api: Api, pid: str) -> Any:
    profile = api.store.get_profile(pid)
    assert profile is not None
    return profile.traits.get("plan")


def test_a_devices_event_after_an_identify_comes_after_it(api: Api) -> None:
    """The device's page view waits in its queue; Alice logs in on it (gold), then the
    device says silver. One worker handled the device's queue first (its page view was
    earlier), silver and all, then the identify merged the device into Alice, whose gold
    won the conflict: the last word, silver, was lost."""
    post(api, "/v1/track", {"anonymousId": "dev", "event": "Product Viewed"})
    api.handle()
    post(api, "/v1/track", {"anonymousId": "dev", "event": "Product Viewed"})
    post(api, "/v1/identify", {"userId": "alice", "anonymousId": "dev",
                               "traits": {"plan": "gold"}})
    post(api, "/v1/identify", {"anonymousId": "dev", "traits": {"plan": "silver"}})
    api.handle()
    assert api.store.profile_for("anonymous_id", "dev") == "alice"
    assert plan(api, "alice") == "silver"
    assert not api.store.inbox_counts()


def test_a_devices_event_after_an_alias_comes_after_it(api: Api) -> None:
    post(api, "/v1/identify", {"anonymousId": "a-7", "traits": {"plan": "free"}})
    api.handle()
    post(api, "/v1/track", {"anonymousId": "a-7", "event": "Product Viewed"})
    post(api, "/v1/alias", {"previousId": "a-7", "userId": "erin"})
    post(api, "/v1/identify", {"userId": "erin", "traits": {"plan": "gold"}})
    post(api, "/v1/identify", {"anonymousId": "a-7", "traits": {"plan": "silver"}})
    api.handle()
    assert api.store.profile_for("anonymous_id", "a-7") == "erin"
    assert plan(api, "erin") == "silver"


def test_an_identify_naming_one_text_as_both_ids_comes_before_the_devices_later_events(
        api: Api) -> None:
    """Visitor d-1 (a profile) logs in as customer d-1: the identify waits in the userId's
    provisional queue, the device's later events in the visitor's. They come in order."""
    post(api, "/v1/identify", {"anonymousId": "d-1", "traits": {"plan": "free"}})
    api.handle()
    post(api, "/v1/track", {"anonymousId": "d-1", "event": "Product Viewed"})
    post(api, "/v1/identify", {"userId": "d-1", "anonymousId": "d-1",
                               "traits": {"plan": "gold"}})
    post(api, "/v1/identify", {"anonymousId": "d-1", "traits": {"plan": "silver"}})
    api.handle()
    assert api.store.profile_for("user_id", "d-1") == "d-1"
    assert plan(api, "d-1") == "silver"
