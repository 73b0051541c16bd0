"""A person's data: find them, export everything held about them, erase it, and keep
events no longer than the policy says (docs/privacy.md). Used by `journeyman profiles
export/forget`, the admin endpoints and the worker's retention loop.

Nothing here logs a person's identifiers or values: the erasure itself logs only how
many rows went, so that the logs of a forgotten person hold nothing of them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from engine.ports import Store
from engine.runtime.identity import NAMING_KINDS, profiles_named
from engine.runtime.unsubscribe import ANONYMOUS, PROFILE, USER
from engine.values import id_taken, is_provisional, named_ids, provisional_owner

log = logging.getLogger("journeyman.privacy")

RETENTION_CHUNK = 500  # events deleted per transaction: short locks, never a long stall


def people_named(store: Store, text: str, waiting: bool = True) -> dict[str, str]:
    """Each kind of id `text` is (NAMING_KINDS, in that order), with the person it names:
    the profile it points at, or (`waiting`) for a userId or anonymousId that points at
    none, the queue its events wait in when any do (`_waiting_queue`: a provisional
    queue, or the text itself for an id no one has). Such an event is the person's
    before a worker made their profile, and stays theirs, parked, when it failed every
    attempt; export and erasure find it by the id the person gives."""
    found = profiles_named(store, text)
    if waiting:
        for kind in (USER, ANONYMOUS):
            if kind not in found and (queue := _waiting_queue(store, kind, text)):
                found[kind] = queue
    return {kind: found[kind] for kind in NAMING_KINDS if kind in found}


def _waiting_queue(store: Store, kind: str, text: str) -> str | None:
    """The queue `text`'s events wait in when it names no profile: its provisional queue
    (an anonymousId's, or a userId's whose text was another's id), or for a userId the
    text itself when no one has it (the id the worker would make the profile's,
    engine/values.py `inbox_owner`: a new customer's first event, parked before their
    profile was made, is filed there)."""
    queues = [provisional_owner(kind, text)]
    if kind == USER and not id_taken(text, store.profile_for):
        queues.append(text)
    for queue in queues:
        held = store.export_person(queue)  # the queue's inbox, events and failures rows
        if any(rows for rows in held.values()):
            return queue
    return None


def find_person(store: Store, user: str, by: str | None = None) -> str | None:
    """The person `user` names (a userId, an anonymousId or a profile id; of kind `by`
    when given: engine/runtime/identity.py NAMING_KINDS): their profile, or the
    provisional queue of their events not handled yet (`people_named`), or None."""
    named = people_named(store, user)
    found = named.get(by) if by is not None else next(iter(named.values()), None)
    return found or (
        user if by in (None, PROFILE) and store.get_profile(user) is not None else None)


def other_people_named(store: Store, user: str, waiting: bool = True) -> str | None:
    """When `user` names more than one person (a userId and an anonymousId of the same
    text: engine/runtime/identity.py; with `waiting`, one may be only events not handled
    yet: `people_named`), which, in words; else None."""
    named = people_named(store, user, waiting)
    if len(set(named.values())) < 2:
        return None
    which = ", ".join(f"the {kind} {user} ({_who(pid)})" for kind, pid in named.items())
    return f"{user!r} names {len(set(named.values()))} people: {which}"


def _who(pid: str) -> str:
    return "events not handled yet" if is_provisional(pid) else f"profile {pid}"


def export_document(store: Store, profile_id: str) -> dict[str, Any]:
    """One JSON-ready document: the profile's traits, computed traits, identities,
    events, enrollments, sends and decisions, every stored row by table, and the
    events accepted but not handled yet (`not_handled`: their inbox rows, waiting or
    parked). `profile_id` may be a provisional queue (`find_person`): a person whose
    only rows are such events."""
    tables = store.export_person(profile_id)
    profile = next((p for p in tables.get("profiles", []) if p.get("id") == profile_id), {})
    return {
        "id": profile_id,
        "profile_ids": named_ids(store.person_ids(profile_id)),
        "traits": profile.get("traits", {}),
        "computed": profile.get("computed", {}),
        "identities": [{"kind": r["kind"], "value": r["value"]}
                       for r in tables.get("identities", [])],
        "events": tables.get("events", []),
        "enrollments": tables.get("enrollments", []),
        "sends": tables.get("outbox", []),
        "decisions": tables.get("decisions", []),
        "not_handled": tables.get("inbox", []),
        "tables": tables,
    }


# forget's result beside the rows deleted per table: other people's rows rewritten
# without the person (engine/store/scrub.py), and whether SQLite's file was scrubbed
NOT_DELETED = ("others_scrubbed", "sqlite_scrubbed")


def forget(store: Store, profile_id: str) -> dict[str, int]:
    """Erase the person, and their identifiers from other people's rows; returns the
    rows deleted per table, `others_scrubbed` (other people's rows rewritten) and, on
    SQLite, `sqlite_scrubbed` (no identifier in it)."""
    deleted = store.forget_person(profile_id)
    log.info("forgot a person: %d rows, %d rows of others scrubbed",
             sum(v for k, v in deleted.items() if k not in NOT_DELETED),
             deleted.get("others_scrubbed", 0))
    return deleted


def enforce_retention(store: Store, now: datetime, keep: timedelta | None,
                      chunk: int = RETENTION_CHUNK) -> int:
    """Delete one chunk of events older than `keep` (None: keep forever); returns how
    many went (a full chunk: call again soon)."""
    if keep is None:
        return 0
    return store.delete_events_before(now - keep, chunk)
