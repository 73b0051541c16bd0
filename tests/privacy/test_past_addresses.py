"""A person's earlier e-mail and phone (changed since) are theirs too: `export` lists
their suppressions, and `forget` keeps those as hashes only (docs/privacy.md, "Export
and erase"). They were left out: after `forget`, an address the person had before
changing it stayed in `suppressions` as it was, with a reason given by hand naming them."""

from __future__ import annotations

import httpx
import pytest

from engine.store.scrub import FORGOTTEN
from engine.values import Suppression, forgotten_address
from tests.api.test_api import NOW
from tests.privacy.conftest import Api
from tests.privacy.test_privacy import admin

OLD = ("old.zebulon@example.org", "+34699887766")
NEW = ("zebulon.quill@example.org", "+34611223344")


def _zeb_changes_address(api: Api) -> None:
    api.send("/v1/identify", {"userId": "zeb-7731", "traits": {
        "email": OLD[0], "phone": OLD[1], "first_name": "Zebulonius"}})
    api.send("/v1/identify", {"userId": "zeb-7731", "traits": {
        "email": NEW[0], "phone": NEW[1]}})
    api.send("/v1/identify", {"userId": "ann", "traits": {"email": "ann@example.org"}})
    for address, reason in ((OLD[0], "asked by phone, Zebulonius Quill"), (OLD[1], "manual"),
                            ("ann@example.org", "manual")):
        api.store.suppress(Suppression(address, reason, NOW, "cli", {"note": address}))
    # Ann's event names Zeb's old address: an identifier of his, in her row
    api.send("/v1/track", {"userId": "ann", "event": "Friend Invited",
                           "properties": {"friend_email": OLD[0]}})


@pytest.mark.parametrize("identify_by", [("email", "phone"), ()],
                         ids=["identify-by", "traits-only"])
def test_an_earlier_address_of_the_person_is_exported_and_forgotten(
        api: Api, identify_by: tuple[str, ...]) -> None:
    api.engine.runner.identity_traits = identify_by
    _zeb_changes_address(api)
    doc = httpx.get(f"{api.url}/v1/profiles/zeb-7731/export", headers=admin(api)).json()
    assert sorted(r["address"] for r in doc["tables"]["suppressions"]) == sorted(OLD)
    gone = httpx.delete(f"{api.url}/v1/profiles/zeb-7731", headers=admin(api))
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted"]["suppressions"] == 2
    kept = {s.address: s for s in api.store.suppressions()}
    assert set(kept) == {forgotten_address(a) for a in OLD} | {"ann@example.org"}
    assert {kept[forgotten_address(a)].reason for a in OLD} == {"forgotten", "manual"}
    assert "zebulon" not in repr(api.store.suppressions()).lower()
    assert "34699887766" not in repr(api.store.suppressions())
    # still suppressed: a new sign-up with the old address is not sent to
    assert set(api.store.suppressed([OLD[0].upper()])) == {OLD[0].upper()}
    ann = api.store.export_person("ann")
    events = [row.get("body", row) for row in ann["events"]]  # SQL rows hold the event
    assert [e["properties"]["friend_email"] for e in events
            if e.get("event") == "Friend Invited"] == [FORGOTTEN]
