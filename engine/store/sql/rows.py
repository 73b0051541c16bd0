"""Rows to values and back: how an enrollment, a timer, an outbox row and an API key
are stored."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from engine.core.model import SCHEMA_VERSION, Enrollment, ScheduleTimer
from engine.ports import EntryStats, KeyInfo, OutboxEntry, key_scopes
from engine.store.errors import StoreError
from journeys.templating import Rendered


def enrollment_values(e: Enrollment, **extra: Any) -> dict[str, Any]:
    """An enrollment's row (and `extra` columns). Its documents go to the JSON encoder
    as they are when they are dicts (they are): the copies made here bought nothing."""
    trigger = e.trigger_event
    return {"id": e.id, "journey": e.journey, "version": e.version, "profile_id": e.profile_id,
            "state": e.state, "status": e.status, "data": plain_dict(e.data),
            "visits": plain_dict(e.visits), "variants": plain_dict(e.variants),
            "entry_event": plain_dict(e.entry_event),
            "trigger_event": plain_dict(trigger) if trigger is not None else None,
            "entered_at": e.entered_at, "updated_at": e.updated_at, "ended_at": e.ended_at,
            "exit_reason": e.exit_reason, "goal_reached_at": e.goal_reached_at,
            "schema_version": e.schema_version, **extra}


def plain_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """A document as the JSON encoder takes it: itself when it is a dict, else a dict of
    it (orjson encodes dicts and their subclasses, not a mapping proxy). A row's
    documents are encoded as the row is built (`_many_ready`, `conn.execute`), so the
    row shares nothing with the engine afterwards."""
    return value if type(value) is dict else dict(value)


def check_schema_version(enrollment_id: str, version: int) -> None:
    """An enrollment written by a newer journeyman is not this one's to read (a rolling
    upgrade): its work fails (retried, then parked) until this process is upgraded."""
    if version > SCHEMA_VERSION:
        raise StoreError(f"enrollment {enrollment_id} has schema version {version}, "
                         f"newer than this journeyman ({SCHEMA_VERSION})")


def enrollment_from_row(row: Mapping[Any, Any]) -> Enrollment:
    check_schema_version(row["id"], row["schema_version"])
    return Enrollment(
        id=row["id"], journey=row["journey"], version=row["version"],
        profile_id=row["profile_id"], state=row["state"], status=row["status"],
        entered_at=row["entered_at"], updated_at=row["updated_at"],
        entry_event=row["entry_event"], trigger_event=row["trigger_event"],
        data=row["data"], visits=row["visits"], variants=row["variants"],
        exit_reason=row["exit_reason"], ended_at=row["ended_at"],
        goal_reached_at=row["goal_reached_at"], schema_version=row["schema_version"])


def sqlite_timestamp(text: str) -> datetime:
    """A timestamp column as SQLite keeps it (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC). Read
    with its offset written on (0.25 us) rather than read naive and then given one
    (`replace(tzinfo=UTC)`: 1.8 us, for every timestamp of every row a batch loads)."""
    try:
        fast = datetime.fromisoformat(text + "+00:00")
        if fast.tzinfo is not None:  # a date alone reads as midnight, its offset dropped
            return fast
    except ValueError:  # not our text: with an offset of its own, read as it says
        pass
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def timer_values(t: ScheduleTimer) -> dict[str, Any]:
    return {"key": t.key, "enrollment_id": t.enrollment_id, "profile_id": t.profile_id,
            "journey": t.journey, "step": t.step, "occurrence": t.occurrence,
            "due_at": t.due_at, "attempts": t.attempts}


def timer_columns(t: Any) -> tuple[Any, ...]:
    return (t.c.key, t.c.enrollment_id, t.c.profile_id, t.c.journey, t.c.step,
            t.c.occurrence, t.c.due_at, t.c.attempts)


def timer_from_row(r: Mapping[Any, Any]) -> ScheduleTimer:
    return ScheduleTimer(key=r["key"], enrollment_id=r["enrollment_id"],
                         profile_id=r["profile_id"], journey=r["journey"], step=r["step"],
                         occurrence=r["occurrence"], due_at=r["due_at"],
                         attempts=r["attempts"])


def entries_values(profile_id: str, journey: str, stats: EntryStats) -> dict[str, Any]:
    return {"profile_id": profile_id, "journey": journey, "entries": stats.entries,
            "last_enrollment_id": stats.last_enrollment_id,
            "last_entered_at": stats.last_entered_at}


def entry_stats_from_row(row: Mapping[Any, Any]) -> EntryStats:
    return EntryStats(row["entries"], row["last_enrollment_id"], row["last_entered_at"])


def profile_lock_key(profile_id: str) -> int:
    """The advisory lock id of a profile on PostgreSQL (64 bits of a hash)."""
    return int.from_bytes(hashlib.blake2b(profile_id.encode(), digest_size=8).digest(),
                          signed=True)


def outbox_entry(row: Mapping[Any, Any]) -> OutboxEntry:
    return OutboxEntry(row["send_key"], row["enrollment_id"], row["profile_id"],
                       row["journey"], row["step"], row["channel"], row["to"],
                       Rendered(**row["rendered"]), row["created_at"], row["attempts"],
                       row.get("admitted_at"))


def key_info(row: RowMapping) -> KeyInfo:
    scopes = row["scopes"]  # None: a key made before scopes existed
    granted = (key_scopes(bool(row["admin"]), None) if scopes is None
               else frozenset(s for s in scopes.split(",") if s))
    return KeyInfo(row["name"], bool(row["admin"]), row["prefix"], row["created_at"],
                   row["revoked_at"], granted, row["rate"])


def send_values(entry: OutboxEntry) -> dict[str, Any]:
    """A new outbox row: pending, due when it was queued."""
    return {"send_key": entry.key, "enrollment_id": entry.enrollment_id,
            "profile_id": entry.profile_id, "journey": entry.journey, "step": entry.step,
            "channel": entry.channel, "template": entry.rendered.template, "to": entry.to,
            "rendered": entry.rendered.document(), "status": "pending", "attempts": 0,
            "next_attempt_at": entry.created_at, "created_at": entry.created_at}
