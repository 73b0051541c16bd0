"""The unit of work: the runtime's view of the store while it handles a batch.

Reads come from a cache the store fills in bulk (one `ProfileState` per profile: the
profile, its active enrollments, its entry stats and segment memberships); writes are
buffered (`WriteRun`) and written by the store in bulk, in order, at the end of the
batch, in the batch's one transaction (`Store.write_changes`). A merge of two profiles
is buffered too (`MergeStep`), between two runs of writes, so the store applies it after
what came before it and before what came after.

`child()` is one event's or one timer's work: it copies the states it touches and
buffers its own writes. `adopt(child)` folds them into the parent when the work
succeeded; a failed child is dropped, so one profile's failure never reaches another
profile's work in the same batch (design.md, failure semantics).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from functools import partial
from typing import Any

from engine.core.merge import exited_by_merge, merge_losers, merged_entries, merged_profile
from engine.core.model import Enrollment, EntryStats, Exit, Profile, RecordGoal, ScheduleTimer
from engine.ports import (
    Change,
    Clock,
    Decision,
    MergeStep,
    OutboxEntry,
    ProfileState,
    SnapshotStore,
    Store,
    WriteRun,
)
from engine.values import is_chosen_id, is_provisional
from rules.errors import JourneymanError

# A profile that never entered a journey (frozen: one for all; `.get`'s default was built
# on every call, found or not: 15,000 times per 3,000 events)
NO_ENTRIES = EntryStats()


class ProfileBusy(JourneymanError):  # noqa: N818 - reads well at the raise site
    """Another transaction holds a profile this work needs (a merge reaching a profile
    another worker is handling): the work is retried shortly, and it is no failure."""


class UnitOfWork:
    def __init__(self, store: Store, clock: Clock, parent: UnitOfWork | None = None) -> None:
        self.store = store
        self.clock = clock
        self.parent = parent
        self.states: dict[str, ProfileState] = {}
        self.enrollments: dict[str, Enrollment | None] = {}  # loaded by id
        self.identities: dict[tuple[str, str], str | None] = {}
        self.changes: list[Change] = [WriteRun()]
        # The queues the worker claimed (a root unit's), when it holds their profiles'
        # locks (PostgreSQL): a profile reached beyond them is held too (`hold_reached`)
        self.claimed: set[str] | None = None

    # --- loading ---------------------------------------------------------------------

    def preload(self, profile_ids: Collection[str],
                identities: Collection[tuple[str, str]] = (),
                enrollment_ids: Collection[str] = ()) -> None:
        """Fill the cache in bulk (a root unit only): one query per kind, not per item."""
        assert self.parent is None, "preload the root unit"
        missing = [p for p in profile_ids if p not in self.states]
        if missing:
            self.states.update(self.store.load_states(missing))
        keys = [k for k in identities if k not in self.identities]
        if keys:
            found = self.store.load_identities(keys)
            self.identities.update({k: found.get(k) for k in keys})
        ids = [e for e in enrollment_ids if e not in self.enrollments]
        if ids:
            # A due timer's enrollment is mostly one of its profile's active ones, just
            # loaded with the profile's state (in this transaction): only the others
            # (ended meanwhile, other profiles') are read again.
            active = {e.id: e for pid in profile_ids if (state := self.states.get(pid))
                      for e in state.active.values()}
            self.enrollments.update({e: active[e] for e in ids if e in active})
            rest = [e for e in ids if e not in active]
            if rest:
                loaded = self.store.load_enrollments(rest)
                self.enrollments.update({e: loaded.get(e) for e in rest})

    def _lookup_state(self, profile_id: str) -> ProfileState:
        unit: UnitOfWork | None = self
        while unit is not None:
            found = unit.states.get(profile_id)
            if found is not None:
                return found
            unit = unit.parent
        root = self._root()
        root.preload([profile_id])
        return root.states[profile_id]

    def state(self, profile_id: str) -> ProfileState:
        """The profile's state, this unit's own copy (copied from the parent on first
        touch, so changes stay here until adopted)."""
        own = self.states.get(profile_id)
        if own is None:
            found = self._lookup_state(profile_id)
            own = found.copy() if self.parent is not None else found
            self.states[profile_id] = own
        return own

    def _root(self) -> UnitOfWork:
        unit = self
        while unit.parent is not None:
            unit = unit.parent
        return unit

    @property
    def run(self) -> WriteRun:
        last = self.changes[-1]
        assert isinstance(last, WriteRun)
        return last

    # --- children ----------------------------------------------------------------------

    def child(self) -> UnitOfWork:
        return UnitOfWork(self.store, self.clock, parent=self)

    def adopt(self, child: UnitOfWork) -> None:
        """Make a child's work this unit's: its states, reads and buffered writes."""
        assert child.parent is self
        self.states.update(child.states)
        self.enrollments.update(child.enrollments)
        self.identities.update(child.identities)
        first, *rest = child.changes
        assert isinstance(first, WriteRun)
        self.run.absorb(first)
        self.changes.extend(rest)

    # --- profiles ------------------------------------------------------------------------

    def get_profile(self, profile_id: str) -> Profile | None:
        return self.state(profile_id).profile

    def put_profile(self, profile: Profile) -> None:
        self.state(profile.id).profile = profile
        self.run.profiles[profile.id] = profile

    # --- enrollments -----------------------------------------------------------------------

    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        return list(self.state(profile_id).active.values())

    def entry_stats(self, profile_id: str, journey: str) -> EntryStats:
        return self.state(profile_id).entries.get(journey, NO_ENTRIES)

    def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        unit: UnitOfWork | None = self
        while unit is not None:
            if enrollment_id in unit.enrollments:
                return unit.enrollments[enrollment_id]
            unit = unit.parent
        root = self._root()
        root.preload((), enrollment_ids=[enrollment_id])
        return root.enrollments[enrollment_id]

    def enroll(self, enrollment: Enrollment) -> None:
        """A new enrollment: it counts as an entry (EntryStats), then is written."""
        stats = self.entry_stats(enrollment.profile_id, enrollment.journey)
        new = EntryStats(stats.entries + 1, enrollment.id, enrollment.entered_at)
        self.state(enrollment.profile_id).entries[enrollment.journey] = new
        self.run.entries[(enrollment.profile_id, enrollment.journey)] = new
        self.put_enrollment(enrollment)

    def put_enrollment(self, enrollment: Enrollment) -> None:
        active = self.state(enrollment.profile_id).active
        if enrollment.active:
            active[enrollment.journey] = enrollment
        elif (current := active.get(enrollment.journey)) is not None and (
                current.id == enrollment.id):
            del active[enrollment.journey]
        self.enrollments[enrollment.id] = enrollment
        self.run.enrollments[enrollment.id] = enrollment

    # --- timers, segments, records, sends --------------------------------------------------

    def add_timer(self, timer: ScheduleTimer) -> None:
        self.run.add_timer(timer)

    def cancel_timer(self, key: str) -> None:
        self.run.cancel_timer(key)

    def segment_member(self, profile_id: str, journey: str) -> bool:
        return journey in self.state(profile_id).segments

    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None:
        segments = self.state(profile_id).segments
        if member:
            segments.add(journey)
        else:
            segments.discard(journey)
        self.run.segments[(profile_id, journey)] = member

    def record_exit(self, exit: Exit) -> None:
        self.run.exits.append(exit)

    def record_goal(self, goal: RecordGoal) -> None:
        self.run.goals.append(goal)

    def record_decision(self, decision: Decision) -> None:
        self.run.decisions.append(decision)

    def enqueue_send(self, entry: OutboxEntry) -> None:
        self.run.sends.append(entry)

    def emit(self, event: dict[str, Any]) -> None:
        """An event for a profile's inbox (handled in order, after this one)."""
        self.run.emitted.append(event)

    def withdraw_sends(self, profile_id: str, enrollment_id: str, decision: Decision) -> None:
        """Skip the enrollment's sends still waiting in the outbox (quiet hours, retries),
        each with a decision like `decision` (its step and channel filled in)."""
        self.run.withdrawn.append((profile_id, enrollment_id, decision))

    def ack(self, inbox_id: int) -> None:
        self.run.acked.append(inbox_id)

    def refile_event(self, message_id: str, queued_for: str, profile_id: str) -> None:
        """The event was handled for another profile than the inbox queued it for; a
        provisional queue's other events wait in that profile's queue from now on."""
        self.run.refiled.append((message_id, queued_for, profile_id))
        if is_provisional(queued_for):
            self.run.requeued[queued_for] = profile_id

    # --- identities (engine/runtime/identity.py) -----------------------------------------

    def profile_for(self, kind: str, value: str) -> str | None:
        unit: UnitOfWork | None = self
        while unit is not None:
            if (kind, value) in unit.identities:
                return unit.identities[(kind, value)]
            unit = unit.parent
        root = self._root()
        root.preload((), identities=[(kind, value)])
        return root.identities[(kind, value)]

    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        """The identifiers a profile was made from that still point at it: its userId
        and anonymousId of the same value (a profile's id is the first id it was seen
        with), or, for an id the engine chose, all of them. Enough to name the person
        behind it and to tell whether they are known (engine/runtime/identity.py)."""
        own = [(kind, profile_id) for kind in ("anonymous_id", "user_id")
               if self.profile_for(kind, profile_id) == profile_id]
        if own or not is_chosen_id(profile_id):
            return own
        keys = set(self.store.identities_of(profile_id))
        unit: UnitOfWork | None = self
        while unit is not None:  # linked in this batch, not written yet
            keys |= {key for key, pid in unit.identities.items() if pid == profile_id}
            unit = unit.parent
        return sorted(key for key in keys if self.profile_for(*key) == profile_id)

    def hold_reached(self, profile_id: str) -> None:
        """Hold a profile an event resolved to beyond the queues claimed (a merge's,
        another known person's, an id chosen), before its state is read: two workers
        must not handle one profile at once (lost writes)."""
        root = self._root()
        if root.claimed is None or profile_id in root.claimed:
            return
        self.hold_profile(profile_id)
        root.claimed.add(profile_id)

    def hold_profile(self, profile_id: str) -> None:
        """Hold a profile this work reaches beyond its own for the transaction (on
        PostgreSQL an advisory lock; ProfileBusy when another transaction holds it)."""
        if profile_id not in self.store.try_lock_profiles([profile_id]):
            raise ProfileBusy(f"profile {profile_id!r} is being handled elsewhere")

    def requeue(self, queue: str, into: str) -> None:
        """The events waiting in `queue` wait in `into` once this unit is written."""
        self.run.requeued[queue] = into

    def link_identity(self, kind: str, value: str, profile_id: str) -> None:
        self.identities[(kind, value)] = profile_id
        self.run.identities[(kind, value)] = profile_id

    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold `from_` into `into` by engine/core/merge.py: in this unit's view at once,
        and in the store when the changes are written (a MergeStep between two runs)."""
        if into == from_:
            return
        now = self.clock.now()
        self.hold_profile(from_)
        self.hold_reached(into)
        kept, gone = self.state(into), self.state(from_)
        losers = merge_losers(kept.active.values(), gone.active.values())
        loser_ids = {e.id for e in losers}
        active: dict[str, Enrollment] = {}
        for enrollment in [*kept.active.values(), *gone.active.values()]:
            moved = replace(enrollment, profile_id=into)
            if enrollment.id in loser_ids:
                self.enrollments[enrollment.id] = exited_by_merge(moved, now)
            else:
                active[enrollment.journey] = moved
                self.enrollments[enrollment.id] = moved
        entries = dict(kept.entries)
        for journey, theirs in gone.entries.items():
            entries[journey] = merged_entries(entries.get(journey, EntryStats()), theirs)
        self.states[into] = ProfileState(merged_profile(into, kept.profile, gone.profile),
                                         active, entries, kept.segments | gone.segments)
        self.states[from_] = ProfileState()
        for key, owner in self._all_identities().items():
            if owner == from_:
                self.identities[key] = into
        self.changes += [MergeStep(into, from_, now), WriteRun()]

    def _all_identities(self) -> dict[tuple[str, str], str | None]:
        chain: list[UnitOfWork] = []
        unit: UnitOfWork | None = self
        while unit is not None:
            chain.append(unit)
            unit = unit.parent
        merged: dict[tuple[str, str], str | None] = {}
        for unit in reversed(chain):
            merged.update(unit.identities)
        return merged

    # --- the end ---------------------------------------------------------------------------

    def write(self) -> None:
        """Write the buffered changes (a root unit, inside the batch's transaction)."""
        if changes := self._taken():
            self.store.write_changes(changes)

    def prepare(self, store: SnapshotStore) -> Callable[[], None]:
        """The buffered changes made ready now, outside the write transaction; the
        function returned writes them (inside it). SQLite's optimistic batches: the one
        write turn is held only to run the statements, their rows' parameters built
        before (engine/store/sql/units.py `prepare_changes`)."""
        if changes := self._taken():
            return partial(store.write_prepared, store.prepare_changes(changes))
        return _nothing

    def _taken(self) -> list[Change]:
        """The root unit's changes to write (none left behind)."""
        assert self.parent is None, "write the root unit"
        changes = [c for c in self.changes if not (isinstance(c, WriteRun) and c.empty)]
        self.changes = [WriteRun()]
        return changes


def _nothing() -> None:
    """Nothing to write."""
