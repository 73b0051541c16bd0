"""Identity resolution: which profile an event belongs to.

- `userId` is the canonical id of a known profile; `anonymousId` names an anonymous one.
- An event carrying both links them: the anonymous profile (history, traits, enrollments)
  is merged into the known one.
- `alias` (`previousId` → `userId`) merges the previous profile into the user's.
- Traits listed in `by_traits` (e.g. `email`, `phone`) are identifiers too: an identify
  whose email belongs to another profile merges that profile into this one.

Merging is the store's `merge_profiles(into, from_)`, by the one rule of
engine/core/merge.py: the profile merged into wins on conflicting traits, and a journey
both were in keeps the earlier enrollment (the other exits with reason `merged`), so
nobody gets the same journey twice because of a merge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.ports import IdentityStore
from engine.runtime.unsubscribe import ANONYMOUS, PROFILE, USER, Person


def _text(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def resolve(store: IdentityStore, event: Mapping[str, Any],
            by_traits: Sequence[str] = ()) -> str:
    """The canonical profile id for `event`, linking and merging as needed."""
    user, anon = _text(event.get("userId")), _text(event.get("anonymousId"))
    if event.get("type") == "alias":
        previous = _text(event.get("previousId"))
        if user and previous:
            _adopt(store, user, "user_id", previous)
            _adopt(store, user, "anonymous_id", previous)
    if user is not None:
        pid = store.profile_for("user_id", user)
        if pid is None:
            pid = user
            store.link_identity("user_id", user, pid)
        if anon is not None:
            _adopt(store, pid, "anonymous_id", anon)
    else:
        assert anon is not None, "events are validated before they get here"
        pid = store.profile_for("anonymous_id", anon)
        if pid is None:
            pid = anon
            store.link_identity("anonymous_id", anon, pid)
    traits = event.get("traits") or {}
    for name in by_traits:
        value = _text(traits.get(name))
        if value is not None:
            _adopt(store, pid, name, value)
    return pid


def _adopt(store: IdentityStore, pid: str, kind: str, value: str) -> None:
    """Make `kind=value` point at `pid`, merging whatever profile it pointed at before."""
    other = store.profile_for(kind, value)
    if other is not None and other != pid:
        store.merge_profiles(into=pid, from_=other)
    store.link_identity(kind, value, pid)


def person_of(store: IdentityStore, profile_id: str) -> Person:
    """The person behind a profile, as unsubscribe links name them: their `userId` when
    the profile has one, else their anonymous id (the one the profile was made from,
    when it has several), else the bare profile id."""
    ids = store.identities_of(profile_id)
    for kind in (USER, ANONYMOUS):
        values = [v for k, v in ids if k == kind]
        if values:
            return Person(kind, profile_id if profile_id in values else values[0])
    return Person(PROFILE, profile_id)


def profile_of_person(store: IdentityStore, person: Person) -> str | None:
    """The profile a person is today (after any merges), or None if the store holds no
    profile for them. A bare profile id (an older link) is looked up as an identity
    first: a profile's id is the userId or anonymousId it was made from."""
    if person.kind != PROFILE:
        return store.profile_for(person.kind, person.value)
    return (store.profile_for(USER, person.value)
            or store.profile_for(ANONYMOUS, person.value))
