"""The durable store's tables (SQLModel on SQLAlchemy 2).

The schema itself is owned by Alembic (`migrations/`); these classes describe it for
queries and must match the latest revision (a test compares them). The store talks to
the tables through SQLAlchemy Core (`TABLES[...]`) because the hot paths are batched.

Rules: timestamps are set in Python as aware UTC (`UTCDateTime`), never by the
database clock; JSON columns are replaced, never mutated in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from engine.store.sql.types import UTCDateTime, json_type


def _pk() -> Any:
    """An autoincrement integer key: BIGINT (identity) on PostgreSQL, the rowid on SQLite."""
    return Field(default=None, sa_column=Column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True))


def _when(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(json_type(), nullable=nullable))


class ProfileRow(SQLModel, table=True):
    __tablename__ = "profiles"

    id: str = Field(sa_column=Column(String(255), primary_key=True))
    traits: dict[str, Any] = _json()
    computed: dict[str, Any] = _json()
    created_at: datetime = _when()
    updated_at: datetime = _when()


class IdentityRow(SQLModel, table=True):
    """`kind` is user_id, anonymous_id, or an identifying trait (email, phone, ...)."""

    __tablename__ = "identities"

    kind: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(String(255), primary_key=True))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    created_at: datetime = _when()


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "message_id", name="uq_events_source_message"),)

    id: int | None = _pk()
    source: str = Field(sa_column=Column(String(255), nullable=False))
    message_id: str = Field(sa_column=Column(String(255), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    body: dict[str, Any] = _json()
    received_at: datetime = _when(index=True)  # retention deletes by it (migration 0007)


_INBOX_HELD = text("status = 'parked' OR available_at IS NOT NULL")


class InboxRow(SQLModel, table=True):
    """Accepted events waiting for a worker; per profile in `id` order. `status` is
    pending (held until `available_at` after a failure) or parked (it holds the
    profile's later events until an operator acts)."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_profile_id", "profile_id", "id"),
                      # The claim's held profiles: only events that failed once (0015).
                      Index("ix_inbox_held", "profile_id", sqlite_where=_INBOX_HELD,
                            postgresql_where=_INBOX_HELD))

    id: int | None = _pk()
    profile_id: str = Field(sa_column=Column(String(255), nullable=False))
    event: dict[str, Any] = _json()
    status: str = Field(sa_column=Column(String(16), nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    created_at: datetime = _when()
    available_at: datetime | None = _when(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))


class EnrollmentRow(SQLModel, table=True):
    __tablename__ = "enrollments"
    __table_args__ = (
        # entry_seq too: a new enrollment's sequence number is max(entry_seq) + 1 of its
        # profile and journey, read from the index's end, not from the history (0013).
        Index("ix_enrollments_profile_journey_seq", "profile_id", "journey", "entry_seq"),
        # A profile's active enrollments without reading its history (migration 0005).
        Index("ix_enrollments_active", "profile_id",
              sqlite_where=text("status = 'active'"),
              postgresql_where=text("status = 'active'")),
        # `plan` counts the people on each step of each version (migration 0008).
        Index("ix_enrollments_in_flight", "journey", "version", "state",
              sqlite_where=text("status = 'active'"),
              postgresql_where=text("status = 'active'")),
        # The dashboard's counts (migration 0011): people on each step now, and the
        # cohort that entered in a period.
        Index("ix_enrollments_journey_status_state", "journey", "status", "state"),
        Index("ix_enrollments_journey_entered", "journey", "entered_at"),
    )

    id: str = Field(sa_column=Column(String(255), primary_key=True))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False))
    state: str = Field(sa_column=Column(String(255), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    data: dict[str, Any] = _json()
    visits: dict[str, Any] = _json()
    variants: dict[str, Any] = _json()
    entry_event: dict[str, Any] = _json()
    trigger_event: dict[str, Any] | None = _json(nullable=True)
    entered_at: datetime = _when()
    updated_at: datetime = _when()
    ended_at: datetime | None = _when(nullable=True)
    exit_reason: str | None = Field(default=None, sa_column=Column(String(255)))
    goal_reached_at: datetime | None = _when(nullable=True)
    schema_version: int = Field(sa_column=Column(Integer, nullable=False))
    # Entry order among the profile's enrollments in the journey (ties on entered_at).
    entry_seq: int = Field(sa_column=Column(Integer, nullable=False))


class TimerRow(SQLModel, table=True):
    """A pending timer; claiming deletes the row. Cron timers have step `__cron__`.

    Clustered by due time (the primary key (due_at, key); WITHOUT ROWID on SQLite), with
    the unique `key` as the only other index, so claiming the due timers deletes
    neighbouring rows (migration 0004, ADR 0004). `profile_id` is the profile the timer
    was scheduled for; after a merge the enrollment says whose it is.
    """

    __tablename__ = "timers"
    __table_args__ = {"sqlite_with_rowid": False}

    due_at: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    key: str = Field(sa_column=Column(String(512), primary_key=True, unique=True))
    enrollment_id: str = Field(sa_column=Column(String(255), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    occurrence: int = Field(sa_column=Column(Integer, nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False, server_default="0"))


class JourneyEntriesRow(SQLModel, table=True):
    """The compact index of a profile's past in a journey (EntryStats): how often it
    entered, and when and as which enrollment it last did."""

    __tablename__ = "journey_entries"

    profile_id: str = Field(sa_column=Column(String(255), primary_key=True))
    journey: str = Field(sa_column=Column(String(255), primary_key=True))
    entries: int = Field(sa_column=Column(Integer, nullable=False))
    last_enrollment_id: str | None = Field(default=None, sa_column=Column(String(255)))
    last_entered_at: datetime | None = _when(nullable=True)


class FailureRow(SQLModel, table=True):
    """A parked event, timer or send, with its error (`journeyman failures`)."""

    __tablename__ = "failures"

    id: int | None = _pk()
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    ref: str = Field(sa_column=Column(String(512), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    error: str = Field(sa_column=Column(Text, nullable=False))
    stack: str = Field(sa_column=Column(Text, nullable=False))
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    parked_at: datetime = _when()
    payload: dict[str, Any] = _json()


class OutboxRow(SQLModel, table=True):
    """Messages to deliver; `send_key` is the idempotency key of the send."""

    __tablename__ = "outbox"
    __table_args__ = (# the dispatcher's queue, in its claim's order (0021)
                      Index("ix_outbox_status_next_id", "status", "next_attempt_at", "id"),
                      Index("ix_outbox_profile_admitted", "profile_id", "admitted_at"),
                      # the claim's due sends of its profiles (0021)
                      Index("ix_outbox_profile_due", "profile_id", "status", "next_attempt_at"),
                      # the dashboard's sends per journey and step in a period (0011)
                      Index("ix_outbox_journey_created", "journey", "created_at"),
                      # a withdrawal's sends; a profile's sends (0016)
                      Index("ix_outbox_profile_enrollment", "profile_id", "enrollment_id"))


    id: int | None = _pk()
    send_key: str = Field(sa_column=Column(String(512), nullable=False, unique=True))
    enrollment_id: str = Field(sa_column=Column(String(255), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    channel: str = Field(sa_column=Column(String(64), nullable=False))
    template: str = Field(sa_column=Column(String(255), nullable=False))
    to: str | None = Field(default=None, sa_column=Column(String(512)))
    rendered: dict[str, Any] = _json()  # journeys.templating.Rendered, as JSON
    status: str = Field(sa_column=Column(String(16), nullable=False))  # pending/sent/failed
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime | None = _when(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = _when()
    sent_at: datetime | None = _when(nullable=True)
    admitted_at: datetime | None = _when(nullable=True)  # the policy let it go (caps)


class DecisionRow(SQLModel, table=True):
    __tablename__ = "decisions"
    # the dashboard's skips per journey and step in a period (migration 0011)
    __table_args__ = (Index("ix_decisions_journey_at", "journey", "at"),)

    id: int | None = _pk()
    at: datetime = _when()
    profile_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    what: str = Field(sa_column=Column(String(64), nullable=False))
    reason: str = Field(sa_column=Column(String(255), nullable=False))
    details: dict[str, Any] = _json()


class ExitRow(SQLModel, table=True):
    __tablename__ = "exits"

    id: int | None = _pk()
    enrollment_id: str = Field(sa_column=Column(String(255), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    reason: str = Field(sa_column=Column(String(255), nullable=False))
    at: datetime = _when()


class GoalRow(SQLModel, table=True):
    __tablename__ = "goals"
    # the dashboard's KPIs of a period (migration 0012)
    __table_args__ = (Index("ix_goals_journey_at", "journey", "at"),)

    id: int | None = _pk()
    enrollment_id: str = Field(sa_column=Column(String(255), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    at: datetime = _when()
    value: float | None = Field(default=None, sa_column=Column(Float, nullable=True))


class SegmentMemberRow(SQLModel, table=True):
    __tablename__ = "segment_members"

    profile_id: str = Field(sa_column=Column(String(255), primary_key=True))
    journey: str = Field(sa_column=Column(String(255), primary_key=True))
    since: datetime = _when()


class ApiKeyRow(SQLModel, table=True):
    """API keys: only the sha256 of a key is stored, plus a short prefix to recognise it."""

    __tablename__ = "api_keys"

    id: int | None = _pk()
    name: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    admin: bool = Field(sa_column=Column(Boolean, nullable=False))
    created_at: datetime = _when()
    revoked_at: datetime | None = _when(nullable=True)
    # Comma-separated scopes (NULL: a key from before scopes, by its admin flag) and its
    # rate in events per second (NULL: the default for its kind); migration 0007.
    scopes: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    rate: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))


class SettingRow(SQLModel, table=True):
    """Settings the store keeps for the runtime (e.g. an earlier version's unsubscribe
    secret, sealed: engine/runtime/signing.py)."""

    __tablename__ = "settings"

    key: str = Field(sa_column=Column(String(64), primary_key=True))
    value: str = Field(sa_column=Column(Text, nullable=False))


class JourneyVersionRow(SQLModel, table=True):
    """Every deployed version of every journey (`journeyman apply`); `status` is the
    journey's (active, paused, archived), the same on each of its versions."""

    __tablename__ = "journey_versions"

    journey: str = Field(sa_column=Column(String(255), primary_key=True))
    version: int = Field(sa_column=Column(Integer, primary_key=True))
    digest: str = Field(sa_column=Column(String(64), nullable=False))
    source: str = Field(sa_column=Column(Text, nullable=False))
    file: str = Field(sa_column=Column(String(1024), nullable=False))
    deployed_at: datetime = _when()
    status: str = Field(sa_column=Column(String(16), nullable=False))


class EngagementRow(SQLModel, table=True):
    """A click, open, unsubscribe, bounce or complaint of a sent message (migration 0010)."""

    __tablename__ = "engagements"
    # the dashboard's KPIs of a period (migration 0012)
    __table_args__ = (Index("ix_engagements_journey_at", "journey", "at"),
                      # the bound on replayed links counts by these (migration 0023)
                      Index("ix_engagements_message_kind", "message_key", "kind", "position",
                            "human", "at"))

    id: int | None = _pk()
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    message_key: str = Field(sa_column=Column(String(512), nullable=False))
    profile_id: str = Field(sa_column=Column(String(255), nullable=False))
    journey: str = Field(sa_column=Column(String(255), nullable=False, index=True))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    at: datetime = _when()
    url: str | None = Field(default=None, sa_column=Column(Text))
    position: int | None = Field(default=None, sa_column=Column(Integer))
    human: bool = Field(sa_column=Column(Boolean, nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(64)))


class SuppressionRow(SQLModel, table=True):
    """An address no journey sends to any more (lowercased; migration 0010)."""

    __tablename__ = "suppressions"

    address: str = Field(sa_column=Column(String(320), primary_key=True))
    reason: str = Field(sa_column=Column(String(32), nullable=False))
    source: str = Field(sa_column=Column(String(255), nullable=False))
    at: datetime = _when()
    details: dict[str, Any] = _json()


class UserRow(SQLModel, table=True):
    """Dashboard users (migration 0011): scrypt's salted hash, never the password."""

    __tablename__ = "users"

    name: str = Field(sa_column=Column(String(255), primary_key=True))
    password_hash: str = Field(sa_column=Column(String(512), nullable=False))
    role: str = Field(sa_column=Column(String(16), nullable=False))
    created_at: datetime = _when()


class JourneyRollupRow(SQLModel, table=True):
    """The dashboard's counts per journey and hour of entry (migration 0012): kept by
    triggers on `enrollments` in the transaction of every write (on PostgreSQL through
    `journey_rollup_delta`, migration 0014); see the migration for the kinds."""

    __tablename__ = "journey_rollup"

    journey: str = Field(sa_column=Column(String(255), primary_key=True))
    bucket: str = Field(sa_column=Column(String(13), primary_key=True))  # YYYY-MM-DD HH
    kind: str = Field(sa_column=Column(String(16), primary_key=True))
    step: str = Field(sa_column=Column(String(255), primary_key=True))
    variant: str = Field(sa_column=Column(String(255), primary_key=True))
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class JourneyRollupDeltaRow(SQLModel, table=True):
    """Differences to `journey_rollup` not folded into it yet (migration 0014): the
    PostgreSQL trigger appends here, so workers never wait on each other's rollup rows;
    readers add them, `fold_rollup_deltas` moves them."""

    __tablename__ = "journey_rollup_delta"
    __table_args__ = (Index("ix_journey_rollup_delta_journey_bucket", "journey", "bucket"),)

    id: int | None = _pk()
    journey: str = Field(sa_column=Column(String(255), nullable=False))
    bucket: str = Field(sa_column=Column(String(13), nullable=False))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    step: str = Field(sa_column=Column(String(255), nullable=False))
    variant: str = Field(sa_column=Column(String(255), nullable=False))
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class LoginFailureRow(SQLModel, table=True):
    """A failed dashboard login (migration 0012): the lockout counts them."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_name_at", "name", "at"),
                      Index("ix_login_failures_ip_at", "ip", "at"))

    id: int | None = _pk()
    name: str = Field(sa_column=Column(String(255), nullable=False))
    ip: str = Field(sa_column=Column(String(64), nullable=False))
    at: datetime = _when()


class StateStampRow(SQLModel, table=True):
    """How many times the state behind a slot was written (migration 0018): SQLite's
    optimistic batches (engine/store/sql/stamps.py) read them with the state they
    handle and check them before writing. Slot 0 counts the writes that do not say
    which profiles they changed."""

    __tablename__ = "state_stamps"

    slot: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    stamp: int = Field(sa_column=Column(BigInteger, nullable=False))


metadata = SQLModel.metadata
TABLE_NAMES = ("profiles", "identities", "events", "inbox", "enrollments", "timers", "outbox",
               "decisions", "exits", "goals", "segment_members", "api_keys",
               "settings", "journey_entries", "failures", "journey_versions", "engagements",
               "suppressions", "users", "journey_rollup", "login_failures",
               "journey_rollup_delta", "state_stamps")


def table(name: str) -> Table:
    return metadata.tables[name]
