"""Identity resolution: which profile an event belongs to, by rules that cannot join two
people (docs/privacy.md, "Identity rules", has the table of cases and their tests).

- `userId` is the canonical id of a known profile; `anonymousId` names an anonymous one.
  A profile is *known* when a `userId` points at it (a known profile's id is the first
  `userId` it was seen with, or one the engine chose: below). Whether a profile is
  known is settled when it is made: an anonymous profile becomes part of a known one
  only by merging into it.
- An event carrying both links them: an anonymous profile (history, traits, enrollments)
  is merged into the known one.
- `alias` (`previousId` -> `userId`): the previous profile is merged into the user's; when
  the previous id is a known user's and the new `userId` has no profile yet, that
  profile simply takes the new `userId` too (a rename, nothing merged).
- Traits listed in `by_traits` (e.g. `email`, `phone`) are identifiers too: an identify
  whose email belongs to an anonymous profile merges it into this one; one whose email
  belongs to a *known* profile while this one is anonymous merges this one into it.

A profile's id names one person for good. A new profile's id is the `userId` or
`anonymousId` it is made from, unless that text names a profile already as the other
kind of id (visitor `42`'s device id and customer 42's `userId`) or is or was a profile's
id (one the engine chose, one merged into another: `profile` identifiers): the
engine then chooses `42~2` (the first free of `~2`, `~3`, ...) and links it as an identifier
of kind `profile`; a merge links the merged-away id the same way. So two people never
share an id, and a person's rows (filed under every id they had: events are filed
under the id they were queued for, the rest under the id they were handled for) are
found by their `profile` identifiers: exports, erasure, `why`. An event that names the
same text as both its `userId` and its `anonymousId` says they are one person: the
anonymous profile of that id becomes theirs, as it always did.

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
from typing import Any, Protocol

from engine.ports import IdentityStore
from engine.runtime.events import MAX_ID_CHARS
from engine.runtime.unsubscribe import ANONYMOUS, PROFILE, USER, Person
from engine.values import PROFILE_ID_KINDS, id_taken, is_chosen_id, provisional_owner
from rules.errors import JourneymanError

# (profile of the event, the other known profile, identifier kind) -> None
Refused = Callable[[str, str, str], None]

CHOSEN_TRIES = 100  # ~2 .. ~101: past that the ids were made to collide; the event fails


class NoProfileId(JourneymanError):  # noqa: N818 - reads well at the raise site
    """Every id the engine would choose for a new profile is taken already."""


class IdentityLookup(Protocol):
    """What reading identities needs (a store, a unit of work, `why`'s source)."""

    def profile_for(self, kind: str, value: str) -> str | None: ...
    def identities_of(self, profile_id: str) -> list[tuple[str, str]]: ...


class ResolvingStore(IdentityStore, Protocol):
    """The unit of work resolve() runs in (engine/runtime/unit.py)."""

    def hold_profile(self, profile_id: str) -> None:
        """Hold `profile_id` for this unit's transaction (ProfileBusy if another holds it)."""
        ...

    def hold_reached(self, profile_id: str) -> None:
        """Hold `profile_id` unless this work claimed its queue already."""
        ...

    def requeue(self, queue: str, into: str) -> None:
        """The events waiting in inbox queue `queue` wait in `into` from now on."""
        ...


def _text(value: Any) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def is_known(store: IdentityLookup, profile_id: str) -> bool:
    """Whether a userId points at the profile (see the module doc)."""
    return (store.profile_for(USER, profile_id) == profile_id
            or (is_chosen_id(profile_id)
                and any(kind == USER for kind, _ in store.identities_of(profile_id))))


# How an operator's text may name a profile, in the order tried when they do not say:
# userId, anonymousId, `profile` identifier
NAMING_KINDS = PROFILE_ID_KINDS


def profiles_named(store: IdentityLookup, text: str) -> dict[str, str]:
    """Each kind of id `text` is (NAMING_KINDS), with the profile it names: a userId
    and an anonymousId of the same text may name two people (see the module doc)."""
    found: dict[str, str] = {}
    for kind in NAMING_KINDS:
        pid = store.profile_for(kind, text)
        if pid is not None:
            found[kind] = pid
    return found


def profile_named(store: IdentityLookup, text: str, by: str | None = None) -> str | None:
    """The profile `text` names as an operator types it: the id of kind `by`, else a
    userId, else an anonymousId, else an id a profile had (where that person is today,
    after merges)."""
    if by is not None:
        return store.profile_for(by, text)
    return next(iter(profiles_named(store, text).values()), None)


def resolve(store: ResolvingStore, event: Mapping[str, Any],
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
        pid = pid or _user_profile(store, user, same_anonymous=anon == user)
        if anon is not None:
            pid = _join(store, pid, ANONYMOUS, anon, on_refused)
    elif pid is None:
        assert anon is not None, "events are validated before they get here"
        pid = store.profile_for(ANONYMOUS, anon)
        if pid is None:
            pid = _new_profile_id(store, anon)
            store.link_identity(ANONYMOUS, anon, pid)
            if pid == anon:
                # a new userId of this text may wait under it (engine/values.py
                # `inbox_owner`): someone else, not to be filed under this profile's id
                # nor held behind its events; they wait where they would wait now
                store.requeue(anon, provisional_owner(USER, anon))
    traits = event.get("traits") or {}
    for name in by_traits:
        value = _text(traits.get(name)) if isinstance(traits, Mapping) else None
        if value is not None:
            pid = _join(store, pid, name, value, on_refused)
    store.hold_reached(pid)  # an event of another queue's profile (a merge, an alias)
    return pid


def _user_profile(store: ResolvingStore, user: str, same_anonymous: bool = False) -> str:
    pid = store.profile_for(USER, user)
    if pid is None:
        # the anonymous profile of the same text is theirs when the event says so
        adopt = same_anonymous and store.profile_for(ANONYMOUS, user) == user
        pid = user if adopt else _new_profile_id(store, user)
        store.link_identity(USER, user, pid)
    return pid


def _new_profile_id(store: ResolvingStore, value: str) -> str:
    """The id of a new profile made from `value` (see the module doc)."""
    # read from the identifiers the worker preloads for each queue: no query of its own
    if not id_taken(value, store.profile_for):
        return value
    for n in range(2, 2 + CHOSEN_TRIES):
        suffix = f"~{n}"
        chosen = value[:MAX_ID_CHARS - len(suffix)] + suffix
        if not id_taken(chosen, store.profile_for):
            # held: a client's event for a userId of this text, handled by another
            # worker at this moment, would make a profile of the same id (ProfileBusy:
            # this event is retried and sees it)
            store.hold_profile(chosen)
            store.link_identity(PROFILE, chosen, chosen)
            return chosen
    raise NoProfileId(f"no free profile id for a new profile: the id and {CHOSEN_TRIES} "
                      "chosen ones after it are taken")


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
        _merge(store, into=other, from_=pid)
        store.link_identity(kind, value, other)
        return other
    _merge(store, into=pid, from_=other)
    store.link_identity(kind, value, pid)
    return pid


def _merge(store: IdentityStore, into: str, from_: str) -> None:
    """Merge, and keep the merged-away id as the person's (see the module doc)."""
    store.merge_profiles(into=into, from_=from_)
    store.link_identity(PROFILE, from_, into)


def addressed(store: IdentityLookup, event: Mapping[str, Any]) -> dict[str, Any]:
    """An `emit` step's event as the identity rules read it: one for the profile itself
    (`to` left out) names the person by their userId, or their anonymousId if they are
    anonymous (the profile's id as a userId made an anonymous profile known, or, when
    that text is taken, a new profile)."""
    sent = dict(event)
    own = (sent.get("context") or {}).get("from_profile")
    if own is not None and sent.get("userId") == own:
        person = person_of(store, own)
        if person.kind == ANONYMOUS:
            del sent["userId"]
            sent["anonymousId"] = person.value
        elif person.kind == USER:
            sent["userId"] = person.value
    return sent


def person_of(store: IdentityLookup, profile_id: str) -> Person:
    """The person behind a profile, as unsubscribe links name them: their `userId` when
    the profile has one, else their anonymous id (the one the profile was made from,
    when it has several), else the bare profile id."""
    ids = store.identities_of(profile_id)
    for kind in (USER, ANONYMOUS):
        values = [v for k, v in ids if k == kind]
        if values:
            return Person(kind, profile_id if profile_id in values else values[0])
    return Person(PROFILE, profile_id)


def profile_of_person(store: IdentityLookup, person: Person) -> str | None:
    """The profile a person is today (after any merges), or None if the store holds no
    profile for them. A bare profile id (an older link) is looked up as an identity
    first: a profile's id is the userId or anonymousId it was made from."""
    if person.kind != PROFILE:
        return store.profile_for(person.kind, person.value)
    # the profile of that id then: merged since (migration 0022 wrote the `profile`
    # identifiers of earlier merges), or still itself
    return store.profile_for(PROFILE, person.value) or next(
        (person.value for kind in (USER, ANONYMOUS)
         if store.profile_for(kind, person.value) == person.value), None)
