"""Rows to values and back: how an enrollment, a timer, an outbox row and an API key
are stored."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

from engine.core.model import SCHEMA_VERSION, Enrollment, ScheduleTimer
from engine.ports import KeyInfo, OutboxEntry
from engine.store.errors import StoreError
from journeys.templating import Rendered


def enrollment_values(e: Enrollment) -> dict[str, Any]:
    return {"id": e.id, "journey": e.journey, "version": e.version, "profile_id": e.profile_id,
            "state": e.state, "status": e.status, "data": dict(e.data),
            "visits": dict(e.visits), "variants": dict(e.variants),
            "entry_event": dict(e.entry_event),
            "trigger_event": dict(e.trigger_event) if e.trigger_event is not None else None,
            "entered_at": e.entered_at, "updated_at": e.updated_at, "ended_at": e.ended_at,
            "exit_reason": e.exit_reason, "goal_reached_at": e.goal_reached_at,
            "schema_version": e.schema_version}


def enrollment_from_row(row: RowMapping) -> Enrollment:
    if row["schema_version"] > SCHEMA_VERSION:
        raise StoreError(f"enrollment {row['id']} has schema version {row['schema_version']}, "
                         f"newer than this journeyman ({SCHEMA_VERSION})")
    return Enrollment(
        id=row["id"], journey=row["journey"], version=row["version"],
        profile_id=row["profile_id"], state=row["state"], status=row["status"],
        entered_at=row["entered_at"], updated_at=row["updated_at"],
        entry_event=row["entry_event"], trigger_event=row["trigger_event"],
        data=row["data"], visits=row["visits"], variants=row["variants"],
        exit_reason=row["exit_reason"], ended_at=row["ended_at"],
        goal_reached_at=row["goal_reached_at"], schema_version=row["schema_version"])


def timer_values(t: ScheduleTimer) -> dict[str, Any]:
    return {"key": t.key, "enrollment_id": t.enrollment_id, "profile_id": t.profile_id,
            "journey": t.journey, "step": t.step, "occurrence": t.occurrence,
            "due_at": t.due_at}


def outbox_entry(row: Any) -> OutboxEntry:
    return OutboxEntry(row.send_key, row.enrollment_id, row.profile_id, row.journey, row.step,
                       row.channel, row.to, Rendered(**row.rendered), row.created_at,
                       row.attempts)


def key_info(row: RowMapping) -> KeyInfo:
    return KeyInfo(row["name"], bool(row["admin"]), row["prefix"], row["created_at"],
                   row["revoked_at"])
