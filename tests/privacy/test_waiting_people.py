"""A person whose only rows are events not handled yet: customer 42's identify waits in a
provisional queue (visitor 42's id is taken: engine/values.py `inbox_owner`) and fails
every attempt, so it is parked there before any profile is made for them. Export and
erasure find it by the id the person gives (docs/privacy.md, "Export and erase")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.runtime.privacy import export_document, find_person
from engine.runtime.worker import Worker
from engine.values import provisional_owner
from tests.privacy.conftest import Api

EMAIL = "quentin-42@example.com"


def post(api: Api, path: str, body: dict[str, object]) -> None:
    answer = api.post(path, body)
    assert answer.status_code == 200, answer.text


def park_events_of(api: Api, text: str) -> None:
    """Handle the inbox with a worker whose handling fails for the userId `text` (a bug
    on their data), until their event is parked after every attempt."""
    runner = api.engine.runner
    handle = runner.handle

    def failing(event: Any, unit: Any) -> str:
        if event.get("userId") == text:
            raise RuntimeError("a bug")
        return handle(event, unit)

    runner.handle = failing  # type: ignore[method-assign]
    try:
        worker = Worker(runner, api.store, api.engine.clock, name="t")
        for _ in range(50):
            worker.handle_events()
            if api.store.failures():
                break
            due = worker.next_inbox_at()
            api.engine.clock.advance(timedelta(seconds=1) if due is None
                                     else max(due - api.engine.now, timedelta(seconds=1)))
    finally:
        runner.handle = handle  # type: ignore[method-assign]


def park_customer(api: Api, text: str = "42") -> None:
    """Visitor `text` browses; customer `text`'s identify (their name and e-mail) then
    fails every attempt and is parked in the provisional queue of their userId."""
    post(api, "/v1/track", {"anonymousId": text, "event": "Product Viewed"})
    api.handle()
    post(api, "/v1/identify", {"userId": text, "traits": {"email": EMAIL,
                                                          "first_name": "Quentin"}})
    park_events_of(api, text)
    [parked] = api.store.failures()
    assert parked.profile_id == provisional_owner("user_id", text)
    assert api.store.inbox_counts() == {"parked": 1}


def admin(api: Api, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"{api.url}{path}", auth=(api.keys["admin"], ""))


def test_export_finds_an_event_parked_before_its_id_was_linked(api: Api) -> None:
    park_customer(api)
    assert api.store.profile_for("user_id", "42") is None
    assert find_person(api.store, "42", "user_id") == provisional_owner("user_id", "42")
    answer = admin(api, "GET", "/v1/profiles/42/export?by=user_id")
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["profile_ids"] == []
    [waiting] = document["not_handled"]
    assert waiting["status"] == "parked"
    assert waiting["event"]["traits"]["email"] == EMAIL
    assert EMAIL in str(document["events"])
    # visitor 42's export is theirs alone, and says the text names someone else too
    visitor = admin(api, "GET", "/v1/profiles/42/export?by=anonymous_id").json()
    assert visitor["id"] == "42"
    assert EMAIL not in str(visitor)
    assert visitor["not_handled"] == []


def test_forget_erases_an_event_parked_before_its_id_was_linked(api: Api) -> None:
    park_customer(api)
    refused = admin(api, "DELETE", "/v1/profiles/42")  # two people: erase no one by a guess
    assert refused.status_code == 409
    assert "user_id 42 (events not handled yet)" in refused.json()["reason"]
    assert "anonymous_id 42 (profile 42)" in refused.json()["reason"]
    done = admin(api, "DELETE", "/v1/profiles/42?by=user_id")
    assert done.status_code == 200, done.text
    store = api.store
    assert store.failures() == []
    assert store.inbox_counts() == {}
    assert store.get_profile("42") is not None  # the visitor stays
    assert EMAIL not in str(export_document(store, "42"))
    api.handle()  # nothing left to retry: the customer's data is not made again
    assert store.profile_for("user_id", "42") is None
    assert store.profile_for("email", EMAIL) is None
    assert admin(api, "GET", "/v1/profiles/42/export?by=user_id").status_code == 404


def test_forget_by_anonymous_id_leaves_the_parked_customer_findable(api: Api) -> None:
    park_customer(api)
    assert admin(api, "DELETE", "/v1/profiles/42?by=anonymous_id").status_code == 200
    # now only the customer's parked event holds the text: found without --by
    answer = admin(api, "GET", "/v1/profiles/42/export")
    assert answer.status_code == 200, answer.text
    assert answer.json()["not_handled"][0]["event"]["traits"]["email"] == EMAIL
    assert admin(api, "DELETE", "/v1/profiles/42").status_code == 200
    assert api.store.failures() == []
    assert api.store.inbox_counts() == {}


def test_a_long_ids_parked_event_is_found_by_its_hashed_queue(api: Api) -> None:
    text = "c" * 250
    park_customer(api, text)
    answer = admin(api, "GET", f"/v1/profiles/{text}/export?by=user_id")
    assert answer.status_code == 200, answer.text
    assert answer.json()["not_handled"][0]["status"] == "parked"


@pytest.mark.parametrize("sql_store", ["sqlite"], indirect=True)
def test_the_cli_exports_and_forgets_a_parked_event_by_its_id(
        sql_api: Api, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    park_customer(sql_api)
    db = f"sqlite:///{sql_api.store.sql_engine.url.database}"  # type: ignore[attr-defined]
    runner = CliRunner()
    export = runner.invoke(app, ["profiles", "export", "42", "--db", db, "--by", "user_id"])
    assert export.exit_code == 0, export.output
    assert EMAIL in export.output
    assert '"status": "parked"' in export.output
    noted = runner.invoke(app, ["profiles", "export", "42", "--db", db])
    assert "'42' names 2 people" in noted.output
    refused = runner.invoke(app, ["profiles", "forget", "42", "--db", db])
    assert refused.exit_code == 2
    done = runner.invoke(app, ["profiles", "forget", "42", "--db", db, "--by", "user_id"])
    assert done.exit_code == 0, done.output
    assert sql_api.store.failures() == []
    assert sql_api.store.inbox_counts() == {}
    gone = runner.invoke(app, ["profiles", "export", "42", "--db", db, "--by", "user_id"])
    assert gone.exit_code == 1


def park_new_customer(api: Api, text: str = "ana") -> None:
    """A new customer's first identify (their e-mail) fails every attempt: no one else
    has the text, so it waits under the text itself (the profile id the worker would
    have made: engine/values.py `inbox_owner`), not in a provisional queue."""
    post(api, "/v1/identify", {"userId": text, "traits": {"email": EMAIL}})
    park_events_of(api, text)
    [parked] = api.store.failures()
    assert parked.profile_id == text
    assert api.store.get_profile(text) is None


def test_a_new_customers_parked_first_event_is_exported_and_erased(api: Api) -> None:
    """The common case of a person whose only rows are events not handled yet: their
    userId named no one, so their event waits under the text itself. `forget ana`
    answered 404 (no such person) while the store kept her e-mail in the parked event."""
    park_new_customer(api)
    answer = admin(api, "GET", "/v1/profiles/ana/export")
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["not_handled"][0]["event"]["traits"]["email"] == EMAIL
    done = admin(api, "DELETE", "/v1/profiles/ana")
    assert done.status_code == 200, done.text
    assert api.store.failures() == []
    assert api.store.inbox_counts() == {}
    api.handle()
    assert api.store.profile_for("email", EMAIL) is None
