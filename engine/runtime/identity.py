"""Identity resolution: which profile an event belongs to, by rules that cannot join two
people (docs/privacy.md, "Identity rules", has the table of cases and their tests).

- `userId` is the canonical id of a known profile; `anonymousId` names an anonymous one.
  A profile is *known* when a `userId` points at it (a known profile's id is the first
  `userId` it was seen with).
- An event carrying both links them: an anonymous profile (history, traits, enrollments)
  is merged into the known one.
- `alias` (`previousId` -> `userId`): the previous profile is merged into the user's; when
  the previous id is a known user's and the new `userId` has no profile yet, that
  profile simply takes the new `userId` too (a rename, nothing merged).
- Traits listed in `by_traits` (e.g. `email`, `phone`) are identifiers too: an identify
  whose email belongs to an anonymous profile merges it into this one; one whose email
  belongs to a *known* profile while this one is anonymous merges this one into it.

The one rule that keeps people apart: **two known profiles are never merged**, whatever
links them (a shared anonymousId or device on a family laptop, an alias, an e-mail or
phone). The identifier is re-pointed to the profile of the event (the newest known user:
later anonymous events from that device are theirs; a `userId` is never taken from its
person), history stays with whoever made it,
and the refusal is recorded (`on_refused`: a decision on each profile, naming neither
the other profile nor the identifier's value).

Merging is the store's `merge_profiles(into, from_)`, by the one rule of
engine/core/merge.py: the profile merged into wins on conflicting traits, and a journey
both were in keeps the earlier enrollment (the other exits with reason `merged`), so
nobody gets the same journey twice because of a merge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.ports import IdentityStore
from engine.runtime.unsubscribe import ANONYMOUS, PROFILE, USER, Person

# (profile of the event, the other known profile, identifier kind) -> None
Refused = Callable[[str, str, str], None]


def _text(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def is_known(store: IdentityStore, profile_id: str) -> bool:
    """Whether a userId points at the profile (see the module doc)."""
    return store.profile_for(USER, profile_id) == profile_id


def resolve(store: IdentityStore, event: Mapping[str, Any],
            by_traits: Sequence[str] = (), on_refused: Refused | None = None) -> str:
    """The canonical profile id for `event`, linking and merging as the rules allow."""
    user, anon = _text(event.get("userId")), _text(event.get("anonymousId"))
    pid: str | None = None
    if event.get("type") == "alias":
        previous = _text(event.get("previousId"))
        if user and previous:
            if store.profile_for(USER, user) is None:
                # A known user taking a new userId (a rename): their profile gets it too;
                # nothing is merged. (An anonymous previousId is merged, below.)
                pid = store.profile_for(USER, previous)
                if pid is not None:
                    store.link_identity(USER, user, pid)
            if pid is None:
                pid = _user_profile(store, user)
                for kind in (USER, ANONYMOUS):  # previousId may be either
                    pid = _join(store, pid, kind, previous, on_refused)
    if user is not None:
        pid = pid or _user_profile(store, user)
        if anon is not None:
            pid = _join(store, pid, ANONYMOUS, anon, on_refused)
    elif pid is None:
        assert anon is not None, "events are validated before they get here"
        pid = store.profile_for(ANONYMOUS, anon)
        if pid is None:
            pid = anon
            store.link_identity(ANONYMOUS, anon, pid)
    traits = event.get("traits") or {}
    for name in by_traits:
        value = _text(traits.get(name)) if isinstance(traits, Mapping) else None
        if value is not None:
            pid = _join(store, pid, name, value, on_refused)
    return pid


def _user_profile(store: IdentityStore, user: str) -> str:
    pid = store.profile_for(USER, user)
    if pid is None:
        pid = user
        store.link_identity(USER, user, pid)
    return pid


def _join(store: IdentityStore, pid: str, kind: str, value: str,
          on_refused: Refused | None) -> str:
    """Make `kind=value` point at the event's profile `pid`, merging the profile it
    pointed at before when the rules allow; returns the event's profile afterwards."""
    other = store.profile_for(kind, value)
    if other is None or other == pid:
        store.link_identity(kind, value, pid)
        return pid
    mine_known, theirs_known = is_known(store, pid), is_known(store, other)
    if mine_known and theirs_known:
        # Two people: never merged. A device, e-mail or phone moves to the newest known
        # user; a userId stays with its person (an alias cannot take someone's id).
        if kind != USER:
            store.link_identity(kind, value, pid)
        if on_refused is not None:
            on_refused(pid, other, kind)
        return pid
    if theirs_known:  # an anonymous profile names a known person: it joins them
        store.merge_profiles(into=other, from_=pid)
        store.link_identity(kind, value, other)
        return other
    store.merge_profiles(into=pid, from_=other)
    store.link_identity(kind, value, pid)
    return pid


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
