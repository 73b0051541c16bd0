"""Ports: everything the runtime needs from the outside world, in one place.

- `Clock` and `IdGenerator`, with the real ones (`SystemClock`, `UuidIds`) beside them
  (tests use `engine.testing.FakeClock` and `SequentialIds`);
- `Channel` (and `BatchChannel`), what every delivery adapter in `channels/` implements,
  the `Message` it delivers and the `DeliveryError` it raises;
- `Store`, the one storage port, in parts by concern (`ProfileStore`, `InboxStore`, ...);
  `engine.store.memory.InMemoryStore` and `engine.store.sql.SqlStore` implement all of it
  (mypy checks it), and one contract test suite runs on both;
- the values that cross the ports (`OutboxEntry`, `Decision`, ...: engine/values.py).

The pure core (`engine.core`) needs none of these; the runtime (`engine.runtime`) uses
them and the stores implement them, so neither imports the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from engine.core.model import (
    Enrollment,
    EnrollmentOutline,
    EntryStats,
    Exit,
    Profile,
    RecordGoal,
    ScheduleTimer,
)
from engine.core.times import WallPaced  # re-exported: the clocks' base
from engine.values import (  # re-exported: the values are part of the ports
    ADMIN_SCOPES,
    PUBLIC_SCOPES,
    SCOPES,
    SERVER_SCOPES,
    Change,
    Decision,
    DeliveryError,
    DeployedVersion,
    Engagement,
    Failure,
    InboxItem,
    KeyInfo,
    Lane,
    Levels,
    MergeStep,
    Message,
    OutboxEntry,
    OutboxRecord,
    ProfileState,
    Snapshot,
    StepMove,
    Suppression,
    UserInfo,
    WriteRun,
    key_scopes,
)

# --- time and ids ----------------------------------------------------------------------


class Clock(Protocol):  # its pace may not be the wall's: engine/core/times.py WallPaced
    def now(self) -> datetime:
        """An aware UTC datetime."""

    def from_wall(self, seconds: float) -> timedelta:
        """The span of this clock's time that passes in `seconds` of the wall clock."""

    def to_wall(self, span: timedelta) -> float:
        """The wall seconds in which `span` of this clock's time passes."""


class IdGenerator(Protocol):
    def new_id(self) -> str: ...


class SystemClock(WallPaced):
    """The wall clock (the edge's; the core never reads a clock)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class UuidIds:
    """Random ids for production (tests use engine.testing.SequentialIds)."""

    def new_id(self) -> str:
        return uuid.uuid4().hex  # noqa: TID251 - the one real source of random ids


# --- delivery ------------------------------------------------------------------------


class Channel(Protocol):
    """A delivery adapter (email, webhook, sms, console, file). Raises on failure:
    `DeliveryError(permanent=True)` when retrying cannot help, anything else to retry.
    It may also have `longest_send(count) -> float`: the seconds a `send` (count 1) or a
    `send_batch` of `count` can take at most, whatever the provider does; the dispatcher
    keeps its claim's lease beyond that (engine/runtime/lease.py; without it: a default)."""

    name: str

    def send(self, message: Message) -> None: ...


@runtime_checkable
class BatchChannel(Protocol):
    """A channel that can send several messages at once (one result each, in order)."""

    name: str

    def send(self, message: Message) -> None: ...
    def send_batch(self, messages: list[Message]) -> list[Exception | None]: ...


# --- the store port, by concern --------------------------------------------------------


class ProfileStore(Protocol):
    def transaction(self, *, stamped: bool = False) -> AbstractContextManager[None]:
        """One unit for every store call made in the block (this thread): committed at
        the end, rolled back on an exception. Nested blocks join the outer one.
        `stamped`: the block's writes change no profile's state except through
        `write_changes`/`write_prepared` (SnapshotStore: other writes make overlapping
        batches check again)."""
        ...

    def is_transient(self, error: BaseException) -> bool:
        """An error of this store worth retrying as is: the database is locked or busy,
        a deadlock was broken, the connection was lost."""
        ...

    def writers_waiting(self) -> bool:
        """Whether API requests (of any process) wait for this store's write lock now
        (background work holding it then commits early); False where writers do not
        queue for one lock (PostgreSQL, memory)."""
        ...

    def writers_lately(self) -> bool:
        """Asked by background work (`background_work`): whether API requests wait for
        this store's write lock now, or wrote within a second (in this process): then
        it keeps its transactions short. False as `writers_waiting`."""
        ...

    def try_lock_profiles(self, profile_ids: Collection[str]) -> set[str]:
        """Lock these profiles until the current transaction ends, without waiting: the
        ones returned are this transaction's alone (an event in one process and a timer
        in another never interleave on a profile). A store with one writer at a time
        (SQLite, memory) locks them all."""
        ...

    def get_profile(self, profile_id: str) -> Profile | None: ...
    def put_profile(self, profile: Profile) -> None: ...
    def profile_ids(self) -> Iterable[str]: ...


class StateStore(Protocol):
    """What a unit of work reads in bulk and writes in bulk (engine/runtime/unit.py)."""

    def load_states(self, profile_ids: Collection[str]) -> dict[str, ProfileState]:
        """Each profile's state (an empty one for a profile that does not exist)."""
        ...
    def load_enrollments(self, enrollment_ids: Collection[str]) -> dict[str, Enrollment]: ...
    def enrollment_outlines(self, enrollment_ids: Collection[str]
                            ) -> dict[str, EnrollmentOutline]:
        """Whose each of these enrollments is and how it stands (those that exist),
        without their documents: for a timer's owner, a send's check."""
        ...
    def load_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        """The profiles that exist among these."""
        ...
    def load_identities(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The profile each (kind, value) identifier points at, for those that exist."""
        ...
    def write_changes(self, changes: Sequence[Change]) -> None:
        """Apply a unit of work's writes in order (inside the caller's transaction)."""
        ...


class EnrollmentStore(Protocol):
    def active_enrollment(self, profile_id: str, journey: str) -> Enrollment | None: ...
    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        """The profile's active enrollments, at most one per journey."""
        ...
    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        """The profile's enrollments in one journey, oldest first."""
        ...
    def profile_enrollments(self, profile_id: str) -> list[Enrollment]:
        """Every enrollment of a profile, in every journey, oldest first."""
        ...
    def entered_since(self, when: datetime, *, journey: str | None = None) -> list[Enrollment]:
        """Enrollments entered at or after `when` (of one journey), oldest first."""
        ...
    def get_enrollment(self, enrollment_id: str) -> Enrollment | None: ...
    def put_enrollment(self, enrollment: Enrollment) -> None:
        """Write an enrollment; a new one also counts as an entry in its journey's
        EntryStats (ProfileState.entries)."""
        ...


class TimerStore(Protocol):
    def add_timer(self, timer: ScheduleTimer) -> None:
        """Idempotent on `timer.key`: a second add with the same key changes nothing."""
        ...
    def add_timers(self, timers: Sequence[ScheduleTimer]) -> None:
        """Many `add_timer`s at once (same idempotency)."""
        ...
    def cancel_timer(self, key: str) -> None: ...
    def has_timer(self, key: str) -> bool: ...
    def claim_due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        """Remove and return up to `limit` timers due at or before `now`, oldest first
        (claim inside the transaction that fires them: a crash puts them back).
        PostgreSQL skips timers another transaction is claiming."""
        ...
    def claim_timers(self, keys: Collection[str], *,
                     due_by: datetime | None = None) -> list[ScheduleTimer]:
        """These timers removed and returned (if there; due by `due_by`), oldest first."""
        ...
    def due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        """The timers due at or before `now`, oldest first, without claiming them."""
        ...
    def next_timer_at(self, *, include_cron: bool = True,
                      lane: Lane | None = None) -> datetime | None:
        """The earliest timer's due time (of `lane`'s profiles, if given; SQLite)."""
        ...
    def last_timer_due_by(self, by: datetime, *, lane: Lane | None = None, most: int | None
                          = None, since: datetime | None = None) -> datetime | None:
        """When the last of a window of timers comes due: the latest of those due by `by`
        (of `lane`'s profiles, if given; SQLite), or of the `most` earliest due from
        `since` on. None if the store does not know (a store may bound its search)."""
        ...
    def pending_timers(self) -> int: ...


class SegmentStore(Protocol):
    def segment_member(self, profile_id: str, journey: str) -> bool: ...
    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None: ...


class RecordStore(Protocol):
    def record_exit(self, exit: Exit) -> None: ...
    def record_goal(self, goal: RecordGoal) -> None: ...
    def record_decision(self, decision: Decision) -> None: ...
    def record_decisions(self, decisions: list[Decision]) -> None:
        """Several decisions in one statement (the dispatcher's outcomes of a chunk)."""
        ...
    def recorded_exits(self, profile_id: str | None = None) -> list[Exit]: ...
    def recorded_goals(self, profile_id: str | None = None, *,
                       journey: str | None = None) -> list[RecordGoal]: ...
    def recorded_decisions(self, profile_id: str | None = None, *,
                           kinds: tuple[str, ...] | None = None) -> list[Decision]:
        """The decision log, oldest first: one profile's, and only these kinds (`what`),
        when given."""
        ...
    def levels(self, now: datetime | None = None) -> Levels:
        """Queue levels and per-journey counts (for metrics), as of `now`."""
        ...


class OutboxStore(Protocol):
    def enqueue_send(self, entry: OutboxEntry) -> bool:
        """Add a send to the outbox; False (and nothing changes) if its key is there
        already: the exactly-once guard for sends."""
        ...
    def claim_was_short(self) -> bool:
        """Whether this thread's last `claim_inbox` or `claim_outbox` found fewer rows
        than its limit (counted before PostgreSQL let go of the rows of profiles another
        transaction holds): it took everything due that nobody else holds, so its loop
        need not claim again at once (engine/runtime/claim_sizes.py `took_all`)."""
        ...
    def claim_outbox(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxEntry]:
        """Lease due sends (oldest first) and count the attempt: the profiles of up to
        `limit` due rows, each with *every* due send it has, so a profile's competing
        sends are decided together. Inside the caller's transaction (the dispatcher's
        admission), or on its own: the lease is what keeps a second dispatcher off these
        rows once committed. PostgreSQL skips rows and profiles another transaction is
        claiming (a profile is taken only if all its due rows are)."""
        ...
    def extend_outbox_lease(self, keys: Collection[str], ours: datetime,
                            until: datetime) -> set[str]:
        """Push to `until` the lease of the rows of `keys` still pending and leased until
        `ours` (a claim's, not settled); returns their keys: the others are no longer
        this claim's (another dispatcher claimed them once the lease had run out)."""
        ...
    def mark_sent(self, key: str, at: datetime) -> None: ...
    def mark_sent_many(self, sent: Sequence[tuple[str, datetime]]) -> None:
        """`mark_sent` of each (key, at), in one statement (a dispatcher's chunk)."""
        ...
    def mark_admitted_many(self, admitted: Sequence[tuple[str, datetime]]) -> None:
        """`mark_admitted` of each (key, at), in one statement."""
        ...
    def mark_admitted(self, key: str, at: datetime) -> None:
        """The policy let this send go at `at`: from now on it counts against the
        profile's frequency caps (until it is skipped or failed), and a later claim
        delivers it without deciding again."""
        ...
    def admitted_since(self, profile_ids: Collection[str],
                       since: datetime) -> dict[str, list[tuple[str, datetime]]]:
        """Per profile, the (channel, admitted at) of its sends admitted after `since`
        that are pending or sent, oldest first (frequency caps)."""
        ...
    def mark_retry(self, key: str, at: datetime, error: str) -> None: ...
    def mark_failed(self, key: str, at: datetime, error: str) -> None: ...
    def mark_deferred(self, key: str, until: datetime, reason: str) -> None:
        """Not now (quiet hours): due again at `until`, and the claim was no attempt; a
        hold's `reason` keeps the row's earlier error after it (values.py `held_error`)."""
    def mark_deferred_many(self, deferred: Sequence[tuple[str, datetime, str]]) -> None:
        """`mark_deferred` of each (key, until, reason), in one statement: at the start
        of quiet hours most of a chunk is deferred."""
        ...
    def mark_skipped(self, key: str, reason: str) -> None:
        """Not at all (no consent, over a frequency cap): kept, with the reason."""
        ...
    def count_sent(self, profile_id: str, channel: str, since: datetime) -> int:
        """Sends delivered to a profile on a channel after `since` (frequency caps)."""
        ...
    def next_outbox_at(self) -> datetime | None: ...
    def outbox_records(self, profile_id: str | None = None,
                       status: str | None = None, *,
                       journey: str | None = None) -> list[OutboxRecord]:
        """The outbox as an operator sees it (one journey's), oldest first."""
        ...
    def outbox_counts(self) -> dict[str, int]: ...


class IdentityStore(Protocol):
    def profile_for(self, kind: str, value: str) -> str | None: ...
    def link_identity(self, kind: str, value: str, profile_id: str) -> None: ...
    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The (kind, value) identifiers that point at a profile, sorted."""
        ...
    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold `from_` into `into` in one unit, by the rule of engine/core/merge.py."""
        ...


class InboxStore(Protocol):
    def accept_events(self, events: list[dict[str, Any]], source: str = "default") -> list[str]:
        """Store new events and queue each for the profile it resolves to, all or
        nothing; dedupe on (source, messageId). Returns the messageIds newly accepted."""
        ...
    def claim_inbox(self, limit: int, now: datetime, *,
                    profiles: Collection[str] | None = None) -> list[InboxItem]:
        """Inside the caller's transaction: up to `limit` events ready to handle, oldest
        first, each profile's in order and only from its earliest waiting event, and only
        profiles this transaction alone holds (`try_lock_profiles`). A profile whose
        earliest event is waiting to be retried, or parked, is held: none of its later
        events is claimed. A crash rolls the claim back with the transaction.
        `profiles` limits the claim to these profiles."""
        ...
    def ack_inbox(self, ids: list[int]) -> None:
        """Done with these events (inside the unit that handled them)."""
        ...
    def retry_inbox(self, item_id: int, at: datetime, error: str, *,
                    attempt: bool = True) -> None:
        """The event failed: hold it (and its profile) until `at`, counting the attempt
        unless `attempt` is False (the profile was busy elsewhere: no failure)."""
        ...
    def next_inbox_at(self, lane: Lane | None = None) -> datetime | None:
        """When the earliest held event (of `lane`, if given) may be retried."""
        ...
    def inbox_counts(self) -> dict[str, int]: ...
    def waiting_consents(self, profile_ids: Collection[str]) -> dict[str, list[dict[str, Any]]]:
        """These profiles' events not handled yet (pending or held) naming a consent, oldest
        first: a withdrawal stops sends before it is handled (policy.py `with_waiting`)."""


class PreparedChanges(Protocol):
    """A unit's writes made ready by a `SnapshotStore` (what is inside is its own)."""


class SnapshotStore(Protocol):
    """A store whose workers may handle a batch outside the write transaction and check
    it before writing (SQLite: engine/store/sql/stamps.py; engine/runtime/worker.py)."""

    @property
    def snapshots_work(self) -> bool:
        """Whether this store can (SQLite on a file: not one shared connection)."""
        ...
    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """The block's reads (this thread) join one read transaction and note what they
        read; no writes in it."""
        ...
    def stamps(self, snapshot: Snapshot) -> None:
        """Inside the snapshot's block: read the stamps of what it read."""
        ...
    def unchanged(self, snapshot: Snapshot) -> bool:
        """Inside a write transaction: nobody wrote what the snapshot read since."""
        ...
    def peek_inbox(self, limit: int, now: datetime, lane: Lane, *,
                   waiting_since: datetime | None = None,
                   served: Sequence[Lane] | None = None) -> list[InboxItem]:
        """`claim_inbox` without a claim, of one lane (inside a snapshot). A takeover
        (`waiting_since`): of any lane, events queued by then and (`served`) those of the
        profiles no lane of `served` holds."""
        ...
    def peek_timers(self, now: datetime, limit: int, lane: Lane, *,
                    overdue_since: datetime | None = None,
                    served: Sequence[Lane] | None = None) -> list[ScheduleTimer]:
        """`claim_due_timers` without a claim, of one lane (inside a snapshot); a takeover
        with `overdue_since` (and `served`), as `peek_inbox`'s with `waiting_since`."""
        ...
    def lanes_served(self) -> tuple[Lane, ...] | None:
        """The lanes live workers serve, this process's among them; None: not known."""
        ...
    def timers_unchanged(self, timers: Sequence[ScheduleTimer]) -> bool:
        """Inside a write transaction: the timers are still there as they were read."""
        ...
    def inbox_unchanged(self, items: Sequence[InboxItem], now: datetime) -> bool:
        """Inside a write transaction: the items still wait as they were read at `now`."""
        ...
    def prepare_changes(self, changes: Sequence[Change]) -> PreparedChanges:
        """A unit's writes made ready (its rows' parameters) before the write turn."""
        ...
    def write_prepared(self, prepared: PreparedChanges) -> None:
        """`write_changes` of what `prepare_changes` made ready."""
        ...


class FailureStore(Protocol):
    """Parked items: an event, a timer or a send that failed too often, kept with its
    error for an operator (`journeyman failures`)."""

    def park(self, kind: str, ref: str, *, profile_id: str, journey: str, step: str,
             error: str, stack: str, attempts: int, at: datetime,
             payload: Mapping[str, Any] | None = None) -> int:
        """Set an item aside: a parked event holds its profile's later events; a parked
        timer or send waits. Returns the failure's id."""
        ...
    def failures(self, kind: str | None = None) -> list[Failure]: ...
    def retry_failure(self, failure_id: int, now: datetime) -> bool:
        """Put a parked item back to work at once, its attempts reset; False if unknown."""
        ...
    def discard_failure(self, failure_id: int) -> bool:
        """Give a parked item up (a parked event's later events then go on)."""
        ...


class KeyStore(Protocol):
    def create_key(self, name: str, admin: bool = False, *,
                   scopes: Collection[str] | None = None, rate: int | None = None) -> str:
        """A new key; `scopes` None: a server key (every scope but admin), or every scope
        with `admin`. `rate`: events per second (None: the default for its kind)."""
        ...
    def check_key(self, key: str) -> KeyInfo | None: ...
    def list_keys(self, *, include_revoked: bool = False) -> list[KeyInfo]: ...
    def revoke_key(self, name: str) -> bool: ...
    def setting(self, key: str) -> str | None:
        """A value the store keeps for the runtime, or None. Never a secret in clear:
        the unsubscribe secrets live outside the store (engine/runtime/signing.py)."""
        ...
    def put_setting(self, key: str, value: str | None) -> None:
        """Keep `value` under `key`, replacing any; None forgets the key."""
        ...


class PrivacyStore(Protocol):
    """What is held about a person, and erasing it (docs/privacy.md). A person is a
    profile and every profile id they ever had (the ids that point at it)."""

    def person_ids(self, profile_id: str) -> list[str]:
        """The profile ids a person had: `profile_id` and every identity value pointing
        at it (a profile's id is the first id it was seen with)."""
        ...
    def export_person(self, profile_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every stored row that holds the person, by table, as JSON-ready dicts."""
        ...
    def forget_person(self, profile_id: str) -> dict[str, int]:
        """Delete every row that holds the person (and identity rows naming their
        e-mail or phone); on SQLite, leave no trace in the file or its WAL. Returns the
        rows deleted per table."""
        ...
    def delete_events_before(self, when: datetime, limit: int) -> int:
        """Retention: delete up to `limit` stored events received before `when`."""
        ...


class VersionStore(Protocol):
    """Every deployed version of every journey, and the enrollments on them."""

    def deployed_versions(self, journey: str | None = None) -> list[DeployedVersion]:
        """Deployed versions (of one journey, or all), by journey then version."""
        ...
    def deploy_version(self, version: DeployedVersion) -> bool:
        """Keep a new version; False (and nothing changes) if that (journey, version)
        is deployed already. The journey's status becomes `version.status`."""
        ...
    def set_journey_status(self, journey: str, status: str) -> bool:
        """Set a deployed journey's status (active, paused, archived); False if unknown."""
        ...
    def in_flight(self, journey: str) -> dict[tuple[int, str], int]:
        """Active enrollments of a journey by (version, step)."""
        ...
    def move_enrollments(self, move: StepMove, now: datetime) -> int:
        """Move the active enrollments of `move.from_version` on `move.from_step` to
        `move.to_version` at `move.to_step` (in the caller's transaction), each with its
        id, data, visit count and pending timer (due when it was), and `move.decision(now,
        profile, id, due or None)` logged for it (`why`). Returns how many moved."""


class EngagementStore(Protocol):
    """Clicks, opens, unsubscribes, bounces and complaints of sent messages, and the
    suppression list dispatch honours (docs/engagement.md)."""

    def sent_message(self, key: str) -> OutboxRecord | None:
        """The outbox row of a message, by its send key (a tracked click names it)."""
        ...
    def record_engagement(self, engagement: Engagement, limit: int = 0,
                          since: datetime | None = None) -> bool:
        """Record it; with `limit`, not if that many like it were since `since` (False)."""
        ...
    def engagements(self, journey: str | None = None) -> list[Engagement]:
        """Recorded engagements (of one journey), oldest first."""
        ...
    def suppress(self, suppression: Suppression) -> bool:
        """Put an address on the suppression list; False if it was there already (the
        first reason stays)."""
        ...
    def unsuppress(self, address: str) -> bool:
        """Take an address off the list; False if it was not on it."""
        ...
    def suppressed(self, addresses: Collection[str]) -> dict[str, Suppression]:
        """The suppressions among these addresses (compared lowercased), by address as
        given."""
        ...
    def suppressions(self) -> list[Suppression]:
        """The whole list, by address."""
        ...


class UserStore(Protocol):
    """The dashboard's users (`journeyman users create`)."""

    def create_user(self, name: str, password_hash: str, role: str) -> None:
        """Add a user; DuplicateUserName if `name` exists."""
        ...
    def get_user(self, name: str) -> UserInfo | None: ...
    def list_users(self) -> list[UserInfo]: ...


class Store(ProfileStore, StateStore, EnrollmentStore, TimerStore, SegmentStore, RecordStore,
            OutboxStore, IdentityStore, InboxStore, FailureStore, KeyStore, PrivacyStore,
            VersionStore, EngagementStore, UserStore, Protocol):
    """The one storage port: everything the runtime, the API and the operators' commands
    ask of a store."""

    def close(self) -> None: ...


__all__ = ["BatchChannel", "Change", "Channel", "Clock", "Decision", "DeliveryError",
           "DeployedVersion", "Engagement", "EngagementStore", "EnrollmentStore", "EntryStats",
           "Failure", "FailureStore", "IdGenerator", "IdentityStore", "InboxItem", "InboxStore",
           "KeyInfo", "KeyStore", "Lane", "Levels", "MergeStep", "Message", "OutboxEntry",
           "OutboxRecord", "OutboxStore", "ProfileState", "ProfileStore", "RecordStore",
           "SegmentStore", "Snapshot", "SnapshotStore", "StateStore", "StepMove", "Store",
           "Suppression", "SystemClock", "TimerStore", "UserInfo", "UserStore", "UuidIds",
           "VersionStore", "WallPaced", "WriteRun"]
__all__ += ["ADMIN_SCOPES", "PUBLIC_SCOPES", "SCOPES", "SERVER_SCOPES", "key_scopes"]
