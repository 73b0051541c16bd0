"""The in-memory store's working state: profiles, enrollments (with the active index and
entry stats the runtime reads instead of histories), timers, segment memberships,
records and identities, and how a unit of work's changes are applied to them. Every
per-profile structure is indexed by profile, so a merge or a load costs what the
profile holds, not what the store holds."""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from engine.core.merge import exited_by_merge, merge_losers, merged_entries, merged_profile
from engine.core.model import (
    CRON_STEP,
    Enrollment,
    EnrollmentOutline,
    EntryStats,
    Exit,
    Profile,
    RecordGoal,
    ScheduleTimer,
)
from engine.ports import (
    Change,
    Clock,
    Decision,
    Lane,
    MergeStep,
    OutboxEntry,
    OutboxRecord,
    ProfileState,
    SystemClock,
    WriteRun,
)


class MemoryState:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self.profiles: dict[str, Profile] = {}
        self.enrollment_rows: dict[str, Enrollment] = {}
        # profile -> journey -> enrollment ids in entry order / the active one / stats
        self.by_profile: dict[str, dict[str, list[str]]] = {}
        self.active_ids: dict[str, dict[str, str]] = {}
        self.stats: dict[str, dict[str, EntryStats]] = {}
        self.segments: dict[str, set[str]] = {}  # profile -> journeys whose segment holds it
        self.timers: dict[str, ScheduleTimer] = {}
        self._heap: list[tuple[datetime, str]] = []  # (due, key): SqlStore's order
        self.exits: list[Exit] = []
        self.goals: list[RecordGoal] = []
        self.decisions: list[Decision] = []
        self.identities: dict[tuple[str, str], str] = {}
        self._identities_of: dict[str, set[tuple[str, str]]] = {}
        self.outbox: dict[str, OutboxRecord] = {}
        self._unsent: dict[str, None] = {}  # keys of pending rows, in order

    def _now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        """Nothing to release."""

    @contextmanager
    def transaction(self, *, stamped: bool = False) -> Iterator[None]:
        """A unit in name only: every change is applied at once, and nothing rolls back."""
        del stamped  # no optimistic batches here
        yield

    def is_transient(self, error: BaseException) -> bool:
        del error
        return False  # nothing here is locked, lost or busy

    def writers_waiting(self) -> bool:
        return False  # no lock to wait for

    def writers_lately(self) -> bool:
        return False

    def try_lock_profiles(self, profile_ids: Collection[str]) -> set[str]:
        """One engine per store: every profile is ours."""
        return set(profile_ids)

    # --- profiles ------------------------------------------------------------------

    def get_profile(self, profile_id: str) -> Profile | None:
        return self.profiles.get(profile_id)

    def put_profile(self, profile: Profile) -> None:
        self.profiles[profile.id] = profile

    def profile_ids(self) -> Iterable[str]:
        return list(self.profiles)

    # --- enrollments ---------------------------------------------------------------

    def active_enrollment(self, profile_id: str, journey: str) -> Enrollment | None:
        eid = self.active_ids.get(profile_id, {}).get(journey)
        return self.enrollment_rows[eid] if eid is not None else None

    def active_enrollments(self, profile_id: str) -> list[Enrollment]:
        return [self.enrollment_rows[e] for e in self.active_ids.get(profile_id, {}).values()]

    def enrollments(self, profile_id: str, journey: str) -> list[Enrollment]:
        ids = self.by_profile.get(profile_id, {}).get(journey, [])
        return [self.enrollment_rows[i] for i in ids]

    def profile_enrollments(self, profile_id: str) -> list[Enrollment]:
        rows = [self.enrollment_rows[i] for ids in self.by_profile.get(profile_id, {}).values()
                for i in ids]
        return sorted(rows, key=lambda e: e.entered_at)

    def entered_since(self, when: datetime, *, journey: str | None = None) -> list[Enrollment]:
        rows = [e for e in self.enrollment_rows.values() if e.entered_at >= when
                and (journey is None or e.journey == journey)]
        return sorted(rows, key=lambda e: e.entered_at)

    def get_enrollment(self, enrollment_id: str) -> Enrollment | None:
        return self.enrollment_rows.get(enrollment_id)

    def put_enrollment(self, enrollment: Enrollment) -> None:
        if enrollment.id not in self.enrollment_rows:
            stats = self.stats.setdefault(enrollment.profile_id, {})
            old = stats.get(enrollment.journey, EntryStats())
            stats[enrollment.journey] = EntryStats(old.entries + 1, enrollment.id,
                                                   enrollment.entered_at)
        self._write_enrollment(enrollment)

    def _write_enrollment(self, enrollment: Enrollment) -> None:
        pid, journey = enrollment.profile_id, enrollment.journey
        if enrollment.id not in self.enrollment_rows:
            self.by_profile.setdefault(pid, {}).setdefault(journey, []).append(enrollment.id)
        self.enrollment_rows[enrollment.id] = enrollment
        active = self.active_ids.setdefault(pid, {})
        if enrollment.active:
            active[journey] = enrollment.id
        elif active.get(journey) == enrollment.id:
            del active[journey]

    # --- timers --------------------------------------------------------------------

    def add_timer(self, timer: ScheduleTimer) -> None:
        if timer.key in self.timers:
            return
        self.timers[timer.key] = timer
        heapq.heappush(self._heap, (timer.due_at, timer.key))

    def add_timers(self, timers: Sequence[ScheduleTimer]) -> None:
        for timer in timers:
            self.add_timer(timer)

    def pending_timers(self) -> int:
        return len(self.timers)

    def cancel_timer(self, key: str) -> None:
        self.timers.pop(key, None)

    def has_timer(self, key: str) -> bool:
        return key in self.timers

    def _top(self) -> tuple[datetime, str] | None:
        while self._heap and (self._heap[0][1] not in self.timers
                              or self.timers[self._heap[0][1]].due_at != self._heap[0][0]):
            heapq.heappop(self._heap)  # cancelled, or re-added with another due time
        return self._heap[0] if self._heap else None

    def claim_due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        claimed: list[ScheduleTimer] = []
        while len(claimed) < limit and (top := self._top()) is not None and top[0] <= now:
            heapq.heappop(self._heap)
            claimed.append(self.timers.pop(top[1]))
        return claimed

    def claim_timers(self, keys: Collection[str], *,
                     due_by: datetime | None = None) -> list[ScheduleTimer]:
        claimed = [self.timers.pop(k) for k in keys if k in self.timers
                   and (due_by is None or self.timers[k].due_at <= due_by)]
        return sorted(claimed, key=lambda t: (t.due_at, t.key))

    def due_timers(self, now: datetime, limit: int) -> list[ScheduleTimer]:
        due = sorted((t for t in self.timers.values() if t.due_at <= now),
                     key=lambda t: (t.due_at, t.key))
        return due[:limit]

    def next_timer_at(self, *, include_cron: bool = True,
                      lane: Lane | None = None) -> datetime | None:
        del lane  # one engine per store: no lanes
        if include_cron:
            top = self._top()
            return top[0] if top else None
        due = [t.due_at for t in self.timers.values() if t.step != CRON_STEP]
        return min(due) if due else None

    def last_timer_due_by(self, by: datetime, *, lane: Lane | None = None, most: int | None
                          = None, since: datetime | None = None) -> datetime | None:
        del lane
        # `since` bounds the count of `most` only, as in SQL
        due = sorted((t.due_at, t.key) for t in self.timers.values() if t.due_at <= by and (
            most is None or since is None or t.due_at >= since))
        return max((at for at, _ in due[:most]), default=None)

    # --- segments and records --------------------------------------------------------

    def segment_member(self, profile_id: str, journey: str) -> bool:
        return journey in self.segments.get(profile_id, ())

    def set_segment_member(self, profile_id: str, journey: str, member: bool) -> None:
        if member:
            self.segments.setdefault(profile_id, set()).add(journey)
        else:
            self.segments.get(profile_id, set()).discard(journey)

    def record_exit(self, exit: Exit) -> None:
        self.exits.append(exit)

    def record_goal(self, goal: RecordGoal) -> None:
        self.goals.append(goal)

    def record_decision(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def record_decisions(self, decisions: list[Decision]) -> None:
        self.decisions += decisions

    def recorded_exits(self, profile_id: str | None = None) -> list[Exit]:
        return [e for e in self.exits if profile_id is None or e.profile_id == profile_id]

    def recorded_goals(self, profile_id: str | None = None, *,
                       journey: str | None = None) -> list[RecordGoal]:
        return [g for g in self.goals if (profile_id is None or g.profile_id == profile_id)
                and (journey is None or g.journey == journey)]

    def recorded_decisions(self, profile_id: str | None = None, *,
                           kinds: tuple[str, ...] | None = None) -> list[Decision]:
        return [d for d in self.decisions
                if (profile_id is None or d.profile_id == profile_id)
                and (kinds is None or d.what in kinds)]

    def enqueue_send(self, entry: OutboxEntry) -> bool:
        if entry.key in self.outbox:
            return False
        self.outbox[entry.key] = OutboxRecord(entry, "pending", 0, entry.created_at, None, None)
        self._unsent[entry.key] = None
        return True

    # --- identities -----------------------------------------------------------------

    def profile_for(self, kind: str, value: str) -> str | None:
        return self.identities.get((kind, value))

    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        return sorted(self._identities_of.get(profile_id, ()))

    def link_identity(self, kind: str, value: str, profile_id: str) -> None:
        old = self.identities.get((kind, value))
        if old is not None:
            self._identities_of.get(old, set()).discard((kind, value))
        self.identities[(kind, value)] = profile_id
        self._identities_of.setdefault(profile_id, set()).add((kind, value))

    def merge_profiles(self, into: str, from_: str) -> None:
        """Fold `from_` into `into` by the rule of engine/core/merge.py: identities,
        traits, enrollments (deduplicated) and their entry stats, segment memberships and
        the pending inbox."""
        if into == from_:
            return
        for key in list(self._identities_of.pop(from_, ())):
            self.link_identity(*key, into)
        merged = merged_profile(into, self.profiles.get(into), self.profiles.pop(from_, None))
        if merged is not None:
            self.profiles[into] = merged
        now = self._now()
        losers = merge_losers(self.active_enrollments(into), self.active_enrollments(from_))
        moved = self.by_profile.pop(from_, {})
        theirs_stats = self.stats.pop(from_, {})
        ours_stats = self.stats.setdefault(into, {})
        journeys = self.by_profile.setdefault(into, {})
        for journey, ids in moved.items():
            for eid in ids:
                self.enrollment_rows[eid] = replace(self.enrollment_rows[eid], profile_id=into)
            journeys[journey] = sorted(journeys.get(journey, []) + ids,
                                       key=lambda i: self.enrollment_rows[i].entered_at)
        for journey, theirs in theirs_stats.items():
            ours_stats[journey] = merged_entries(ours_stats.get(journey, EntryStats()), theirs)
        for loser in losers:
            self.enrollment_rows[loser.id] = exited_by_merge(
                self.enrollment_rows[loser.id], now)
        self.active_ids.pop(from_, None)
        actives = self.active_ids.setdefault(into, {})
        for journey in moved:
            first = next((e for i in journeys[journey]
                          if (e := self.enrollment_rows[i]).active), None)
            if first is None:
                actives.pop(journey, None)
            else:
                actives[journey] = first.id
        self.segments.setdefault(into, set()).update(self.segments.pop(from_, set()))
        self._move_queued(into, from_)

    def _move_queued(self, into: str, from_: str) -> None:
        """The inbox is the queues' (engine/store/memory/queues.py)."""
        raise NotImplementedError

    # --- units of work ----------------------------------------------------------------

    def load_states(self, profile_ids: Collection[str]) -> dict[str, ProfileState]:
        return {pid: ProfileState(self.profiles.get(pid),
                                  {e.journey: e for e in self.active_enrollments(pid)},
                                  dict(self.stats.get(pid, {})),
                                  set(self.segments.get(pid, ())))
                for pid in profile_ids}

    def load_enrollments(self, enrollment_ids: Collection[str]) -> dict[str, Enrollment]:
        return {e: self.enrollment_rows[e] for e in enrollment_ids if e in self.enrollment_rows}

    def enrollment_outlines(self, enrollment_ids: Collection[str]
                            ) -> dict[str, EnrollmentOutline]:
        return {e: self.enrollment_rows[e].outline() for e in enrollment_ids
                if e in self.enrollment_rows}

    def load_profiles(self, profile_ids: Collection[str]) -> dict[str, Profile]:
        return {p: self.profiles[p] for p in profile_ids if p in self.profiles}

    def load_identities(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {k: self.identities[k] for k in keys if k in self.identities}

    def write_changes(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if isinstance(change, MergeStep):
                self.merge_profiles(change.into, change.from_)
            else:
                self._write_run(change)

    def _write_run(self, run: WriteRun) -> None:
        self.profiles.update(run.profiles)
        for enrollment in run.enrollments.values():
            self._write_enrollment(enrollment)
        for (pid, journey), stats in run.entries.items():
            self.stats.setdefault(pid, {})[journey] = stats
        for key in run.timers_cancelled:
            self.cancel_timer(key)
        for timer in run.timers_added.values():
            self.add_timer(timer)
        for (pid, journey), member in run.segments.items():
            self.set_segment_member(pid, journey, member)
        for (kind, value), pid in run.identities.items():
            self.link_identity(kind, value, pid)
        for entry in run.sends:
            self.enqueue_send(entry)
        self.decisions += run.decisions
        self.exits += run.exits
        self.goals += run.goals
        for profile_id, enrollment_id, template in run.withdrawn:
            self._withdraw(profile_id, enrollment_id, template)
        if run.refiled:
            self.refile_events(run.refiled)
        for queue, profile_id in run.requeued.items():
            self._move_queued(profile_id, queue)
        self._queue_changes(run.acked, run.emitted)

    def refile_events(self, moves: list[tuple[str, str, str]]) -> None:
        """The events are the queues' (engine/store/memory/queues.py)."""
        raise NotImplementedError

    def _withdraw(self, profile_id: str, enrollment_id: str, template: Decision) -> None:
        for key in list(self._unsent):
            entry = self.outbox[key].entry
            if (entry.profile_id, entry.enrollment_id) == (profile_id, enrollment_id):
                self.outbox[key] = replace(self.outbox[key], status="skipped",
                                           next_attempt_at=None, last_error=template.reason)
                self._unsent.pop(key, None)
                self.decisions.append(replace(template, step=entry.step, details={
                    "channel": entry.channel, **template.details}))

    def _queue_changes(self, acked: list[int], emitted: list[dict[str, Any]]) -> None:
        """The inbox is the queues' (engine/store/memory/queues.py)."""
        raise NotImplementedError
