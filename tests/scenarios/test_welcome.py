from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.testing import InMemoryEngine
from tests.scenarios.conftest import START, at, exits, person, sends


@pytest.mark.parametrize(("source", "first"), [
    ("newsletter", "welcome_newsletter"), ("site", "welcome_site"),
    ("registered_buyer", "welcome_buyer"), ("guest_buyer", "welcome_guest")])
def test_each_registration_source_gets_its_own_welcome(
        library: Callable[..., InMemoryEngine], source: str, first: str) -> None:
    eng = library("welcome")
    person(eng, "ana")
    eng.track("ana", "Signed Up", {"source": source})
    eng.run_until_idle()
    assert sends(eng) == [("ana", first, first, START),
                          ("ana", "preferences", "welcome_preferences", at(4, 9))]
    assert exits(eng) == [("ana", "mark", "completed", at(4, 9))]
    assert eng.profile("ana").traits["welcomed"] is True
    assert eng.sent[0].subject is not None
    assert "Ana" in eng.sent[0].subject or first in ("welcome_guest",)


def test_unknown_source_does_not_enroll_and_nobody_is_welcomed_twice(
        library: Callable[..., InMemoryEngine]) -> None:
    eng = library("welcome")
    person(eng, "ben")
    eng.track("ben", "Signed Up", {"source": "partner_api"})
    eng.track("ben", "Signed Up", {"source": "site"})
    eng.track("ben", "Signed Up", {"source": "site"}, at=at(10, 9))
    eng.run_until_idle()
    assert [m.template for m in eng.sent] == ["welcome_site", "welcome_preferences"]
