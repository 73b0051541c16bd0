"""The runtime around the pure core: match events to journeys, advance enrollments,
carry out the commands. Everything it reads and writes goes through a unit of work
(engine/runtime/unit.py), which the worker fills in bulk and writes in bulk; so the same
code runs in memory (tests, `journeyman simulate`) and on a database, one event or a
batch of thousands at a time.

Order of work for one event (design.md, "the flow of one event"):
1. update the profile (traits on identify, stored computed traits);
2. for each journey, the profile's active enrollment: goal, then exit_when, then the
   `wait_for` the enrollment is waiting on;
3. then entries (so the event that enrolls a profile does not also exit it);
4. carry out the commands. Emitted events go to the inbox of the profile they are for
   (this one or another) and are handled after this one, in order. Sends are rendered
   (engine/runtime/rendering.py) and queued in the outbox; engine/runtime/dispatch.py
   delivers them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from engine.core import advance, new_enrollment
from engine.core.model import (
    CRON_STEP,
    Advanced,
    CancelTimer,
    Command,
    Emit,
    Enrollment,
    Enter,
    EventMatched,
    Exit,
    ExitRequested,
    GoalMet,
    Note,
    Profile,
    RecordGoal,
    ScheduleTimer,
    Send,
    TimerFired,
    Trigger,
    UpdateProfile,
)
from engine.core.profiles import ComputedTraits
from engine.core.steps.update_profile import apply_update
from engine.core.time_conditions import (
    birthday_only,
    birthday_windows,
    daily_time,
    next_change,
    next_hour,
    time_dependent,
    time_inputs,
)
from engine.core.times import iso, local_zone, span
from engine.ports import Clock, Decision
from engine.runtime.identity import addressed, person_of, resolve
from engine.runtime.person_records import record_consent, record_refusal
from engine.runtime.rendering import render_send
from engine.runtime.tracking import TrackingLinks
from engine.runtime.unit import UnitOfWork
from engine.runtime.unsubscribe import UnsubscribeLinks
from journeys.compiler import ENTRY, GOAL, CompiledJourney, wait_for_rule
from journeys.errors import TemplateRenderError
from journeys.model import Policy
from rules import evaluate
from rules.conditions import Condition
from rules.explain import explain, values

LATE_AFTER = timedelta(minutes=1)  # later than this, a timer's lateness is recorded


class Runner:
    """Runs the journeys for one event or one due timer at a time, in a unit of work:
    matches, advances enrollments through the core and carries out their commands."""

    def __init__(self, journeys: Mapping[str, CompiledJourney], *, clock: Clock,
                 unsubscribe: UnsubscribeLinks, computed: ComputedTraits | None = None,
                 policy: Policy | None = None, identity_traits: tuple[str, ...] = (),
                 decision_log: bool = True,
                 versions: Mapping[tuple[str, int], CompiledJourney] | None = None,
                 closed: set[str] | None = None,
                 tracking: TrackingLinks | None = None) -> None:
        self.journeys = dict(journeys)  # the current version of each journey: entries
        # The whole decision log for `journeyman why`; off, only what became of sends
        self.decision_log = decision_log
        # Every version enrollments may be on (older deployed ones too: in-flight
        # enrollments finish on the version they started, engine/runtime/versions.py).
        self.versions = {(j.id, j.version): j for j in self.journeys.values()}
        self.versions.update(versions or {})
        self.closed = set(closed or ())  # paused or archived: no new entries
        self.clock = clock
        self.computed = computed or ComputedTraits()
        self.policy = policy or Policy()
        self.identity_traits = identity_traits  # traits that identify a person, e.g. email
        self.unsubscribe = unsubscribe  # signed with a configured secret, never a default
        self.tracking = tracking  # tracked links and opens in emails (None: off)
        self._cron = {jid: CronTrigger.from_crontab(j.model.entry.schedule, timezone="UTC")
                      for jid, j in self.journeys.items() if j.model.entry.schedule}
        self._interested: dict[Any, tuple[CompiledJourney, ...]] = {}
        # The last view's facts (`_facts`): an event's journeys are matched against one
        # view, and copying its traits for each was 0.2% of the work. One tuple, read
        # once per call: two threads (events, timers) each get their own view's.
        self._view_facts: tuple[Profile, dict[str, Any]] | None = None
        self._triggers: dict[tuple[str, str], CronTrigger] = {}  # (journey, zone) -> trigger
        # schedules whose `when` holds only on a birthday: armed for that day's firing only
        self._birthday_crons = {jid for jid in self._cron if birthday_only(
            self.journeys[jid].loaded.conditions.get(("entry", "when")))}
        # segment entries whose condition reads a trait that changes with time alone
        # (days since the last order, birthday_today): each profile keeps a timer at
        # the next instant its condition may change (engine/core/time_conditions.py)
        self._time_segments: dict[str, Condition] = {}
        for jid, j in self.journeys.items():
            condition = j.loaded.conditions.get(("entry", "segment", "when"))
            if j.model.entry.kind == "segment" and condition is not None and time_dependent(
                    condition):
                self._time_segments[jid] = condition

    def interested(self, event_name: Any) -> tuple[CompiledJourney, ...]:
        """The journeys whose rules can match an event of this name, in library order
        (computed once per name): matching every journey against every event cost a
        fifth of the handling time, most of it for journeys that cannot match."""
        found = self._interested.get(event_name)
        if found is None:
            found = tuple(j for j in self.journeys.values()
                          if j.interest is None or event_name in j.interest)
            if len(self._interested) < 10_000:  # names come from outside: bounded
                self._interested[event_name] = found
        return found

    # --- events --------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any], unit: UnitOfWork) -> str:
        """Handle one normalized event; returns the profile it was for."""
        now = self.clock.now()
        steps = len(unit.changes)  # a merge adds its steps: the profile's timers may be stale
        pid = resolve(unit, event, self.identity_traits,
                      on_refused=lambda mine, other, kind: record_refusal(
                          unit, mine, other, kind, now))
        before = unit.get_profile(pid)
        merged = len(unit.changes) != steps
        profile = self.computed.apply(before or Profile(pid), event)
        unit.put_profile(profile)
        if event.get("source") and isinstance((event.get("traits") or {}).get("consent"),
                                              Mapping):
            record_consent(unit, before, profile, event, now)
        if before is None:
            self._arm_cron(unit, profile, now)
        elif self._zone(before) != self._zone(profile) or before.traits.get(
                "birthday") != profile.traits.get("birthday"):
            self._arm_cron(unit, profile, now, replace=True)  # 09:00 in the new zone
        # One view of the profile until a step changes it: the per-journey loop stays in
        # memory. The active enrollments are the unit's, at most one per journey.
        active = {e.journey: e for e in unit.active_enrollments(pid)}
        view = self.computed.view(profile, now, self.policy.timezone)
        # A segment that does not hold is explained when its inputs are new (a profile's
        # first event, an identify), not on every event.
        explain_segments = self.decision_log and (before is None or event.get("type") == "identify")
        for journey in self.interested(event.get("event")):
            changed = self._event_for_journey(unit, journey, view, active.pop(journey.id, None),
                                              event, now=now, explain_segment=explain_segments,
                                              before=None if merged else before)
            if changed:  # an update_profile step ran
                profile = unit.get_profile(pid) or profile
                view = self.computed.view(profile, now, self.policy.timezone)
        for enrollment in active.values():  # older versions, journeys no longer in the folder
            current = self.journeys.get(enrollment.journey)
            if current is not None and current.version == enrollment.version:
                continue  # the current version's rules cannot match this event (interest)
            if self._event_for_enrollment(unit, enrollment, view, event, now):
                profile = unit.get_profile(pid) or profile
                view = self.computed.view(profile, now, self.policy.timezone)
        return pid

    def version_of(self, enrollment: Enrollment) -> CompiledJourney | None:
        """The journey version an enrollment runs on (None: not deployed here)."""
        return self.versions.get((enrollment.journey, enrollment.version))

    def _facts(self, view: Profile, event: Mapping[str, Any],
               enrollment: Enrollment | None) -> dict[str, Any]:
        """What an event's rules read. The profile's part is shared by the journeys
        matched against the same view (matching only reads it)."""
        cached = self._view_facts
        if cached is None or cached[0] is not view:
            cached = self._view_facts = (view, view.facts())
        return {"event": event, "profile": cached[1],
                "enrollment": enrollment.facts() if enrollment else {},
                "trigger": dict(enrollment.trigger_event or {}) if enrollment else {}}

    def _event_for_journey(self, unit: UnitOfWork, journey: CompiledJourney, view: Profile,
                           enrollment: Enrollment | None, event: Mapping[str, Any], *,
                           now: datetime, explain_segment: bool = False,
                           before: Profile | None = None) -> bool:
        """Goal, exit, wait_for and entry of one journey; True if the profile changed.
        `before`: the stored profile before this event (None: a new or merged profile,
        whose time-segment timers are armed again)."""
        changed = False
        facts = self._facts(view, event, enrollment)
        matched = journey.events.match(facts, now)
        if enrollment is not None:
            if enrollment.version == journey.version:
                changed |= self._in_flight(unit, journey, enrollment, view, event,
                                           matched=matched)
            else:  # an older version's enrollment: its own rules decide
                changed |= self._event_for_enrollment(unit, enrollment, view, event, now)
        else:
            if GOAL in matched:
                self._late_goal(unit, journey, view, event)  # shortly after it ended
            exit_rule = next((r for r in journey.exit_rules if r in matched), None)
            if exit_rule is not None:
                self._withdraw_held_sends(unit, journey, view.id, exit_rule, now)
        # Entries come after: an event may end one enrollment and start the next
        # (win-back restarts its clock on every order); _refusal sees what just ended.
        kind = journey.model.entry.kind
        if kind == "event" and ENTRY in matched:
            changed |= self._enroll(unit, journey, view, event, now)
        elif kind == "event":
            if self.decision_log and event.get("event") == journey.model.entry.event:
                self._not_entered(unit, journey, view.id, ("entry", "when"), facts, now=now,
                                  event=event.get("event"))
        elif kind == "segment":
            member = ENTRY in matched
            was_member = unit.segment_member(view.id, journey.id)
            # Paused: joining is not recorded, so whoever joins meanwhile enters after
            # `resume` ("journey paused" is said on the events that explain segments).
            closed = journey.id in self.closed
            if member and not was_member and (not closed or explain_segment):
                changed |= self._enroll(unit, journey, view,
                                        _entry_event(journey, "segment", view, now), now)
            elif explain_segment and not member and not was_member:
                self._not_entered(unit, journey, view.id, ("entry", "segment", "when"), facts,
                                  now=now, segment=True)
            if member != was_member and not (member and closed):
                unit.set_segment_member(view.id, journey.id, member)
            if journey.id in self._time_segments:  # re-armed if what it reads changed
                current = unit.get_profile(view.id) or view
                condition = self._time_segments[journey.id]
                if before is None or time_inputs(condition, before) != time_inputs(
                        condition, current):
                    self._arm_time(unit, journey.id, current, now)
        return changed

    def _not_entered(self, unit: UnitOfWork, journey: CompiledJourney, profile_id: str,
                     where: tuple[str, ...], facts: Mapping[str, Any], *, now: datetime,
                     **details: Any) -> None:
        """The entry's condition is false: say which comparison failed, with its value."""
        condition = journey.loaded.conditions.get(where)
        if condition is None:
            return
        why = explain(condition, facts, now)
        if why is None:  # the backends disagree with the reference evaluator: say so
            why = "the entry rule did not match"
        label = "segment condition false" if details.get("segment") else "entry condition false"
        unit.record_decision(Decision(now, profile_id, journey.id, "", "not_entered",
                                      f"{label}: {why}",
                                      {**details, "values": values(condition, facts)}))
    def _in_flight(self, unit: UnitOfWork, journey: CompiledJourney, enrollment: Enrollment,
                   view: Profile, event: Mapping[str, Any], *,
                   matched: Collection[str]) -> bool:
        """Goal, exit_when and wait_for of an active enrollment on `journey`'s version."""
        changed = False
        if GOAL in matched:
            enrollment, _ = self._advance(unit, journey, enrollment, GoalMet(view, event))
        exit_rule = next((r for r in journey.exit_rules if r in matched), None)
        if exit_rule is not None:
            changed |= self._advance(unit, journey, enrollment, ExitRequested(
                view, self._exit_reason(journey, exit_rule)))[1]
        elif wait_for_rule(enrollment.state) in matched:
            changed |= self._advance(unit, journey, enrollment,
                                     EventMatched(view, enrollment.state, event))[1]
        return changed

    def _event_for_enrollment(self, unit: UnitOfWork, enrollment: Enrollment, view: Profile,
                              event: Mapping[str, Any], now: datetime) -> bool:
        """An event for an enrollment on an older version (or of a journey that left
        the folder): matched against that version's rules."""
        version = self.version_of(enrollment)
        if version is None:
            return False  # not deployed here; recorded when its timer fires
        if version.interest is not None and event.get("event") not in version.interest:
            return False  # none of that version's rules can match this event
        matched = version.events.match(self._facts(view, event, enrollment), now)
        return self._in_flight(unit, version, enrollment, view, event, matched=matched)

    def _withdraw_held_sends(self, unit: UnitOfWork, journey: CompiledJourney,
                             profile_id: str, exit_rule: str, now: datetime) -> None:
        """An exit_when after the journey completed: its last sends, if still held
        (quiet hours, retries), are no longer wanted either."""
        last_id = unit.entry_stats(profile_id, journey.id).last_enrollment_id
        if last_id is not None:
            reason = self._exit_reason(journey, exit_rule)
            unit.withdraw_sends(profile_id, last_id, Decision(
                now, profile_id, journey.id, "", "skipped", "enrollment_exited",
                {"exit_reason": reason, "after": "completed"}))

    @staticmethod
    def _exit_reason(journey: CompiledJourney, exit_rule: str) -> str:
        item = journey.model.exit_when[int(exit_rule.split(":")[1])]
        return f"exit_when:{item.event or 'condition'}"

    def _late_goal(self, unit: UnitOfWork, journey: CompiledJourney, view: Profile,
                   event: Mapping[str, Any]) -> None:
        last_id = unit.entry_stats(view.id, journey.id).last_enrollment_id
        last = unit.get_enrollment(last_id) if last_id else None
        if last is not None and last.goal_reached_at is None:
            self._advance(unit, self.version_of(last) or journey, last, GoalMet(view, event))

    @staticmethod
    def _refusal(journey: CompiledJourney, unit: UnitOfWork, profile_id: str,
                 now: datetime) -> tuple[str, dict[str, Any]] | None:
        """Why the entry rule matched but the profile may not enter (None: it may)."""
        stats = unit.entry_stats(profile_id, journey.id)
        if stats.entries == 0:
            return None
        current = next((e for e in unit.active_enrollments(profile_id)
                        if e.journey == journey.id), None)
        if current is not None:
            return "already enrolled", {"step": current.state,
                                        "entered_at": iso(current.entered_at)}
        last = {"entries": stats.entries, "last_entered_at": iso(stats.last_entered_at)
                if stats.last_entered_at else None}
        rule = journey.model.re_entry
        if rule == "never":
            return "re_entry: never", last
        if rule == "always":
            return None
        if stats.last_entered_at is None or now - stats.last_entered_at >= rule.after:
            return None
        return f"re_entry: after {span(rule.after)} (last entered {last['last_entered_at']})", {
            **last, "after_seconds": rule.after.total_seconds()}

    def _enroll(self, unit: UnitOfWork, journey: CompiledJourney, view: Profile,
                event: Mapping[str, Any], now: datetime) -> bool:
        if journey.id in self.closed:
            if self.decision_log:
                unit.record_decision(Decision(now, view.id, journey.id, "", "not_entered",
                                              "journey paused or archived",
                                              {"event": event.get("event")}))
            return False  # paused or archived: no new entries
        refusal = self._refusal(journey, unit, view.id, now)
        if refusal is not None:
            if self.decision_log:
                reason, details = refusal
                unit.record_decision(Decision(now, view.id, journey.id, "", "not_entered",
                                              reason, {"event": event.get("event"), **details}))
            return False
        occurrence = unit.entry_stats(view.id, journey.id).entries
        enrollment = new_enrollment(journey, view, event, occurrence, now)
        unit.enroll(enrollment)
        if self.decision_log:
            kind = journey.model.entry.kind
            reason = (f"entry: {event.get('event')}" if kind == "event"
                      else "segment condition holds" if kind == "segment" else "schedule")
            unit.record_decision(Decision(now, view.id, journey.id, journey.first_step,
                                          "entered", reason, {
                                              "event": event.get("event"),
                                              "message_id": event.get("messageId"),
                                              "occurrence": occurrence + 1,
                                              "version": journey.version,
                                              "enrollment": enrollment.id}))
        return self._advance(unit, journey, enrollment, Enter(view))[1]

    def _advance(self, unit: UnitOfWork, journey: CompiledJourney, enrollment: Enrollment,
                 trigger: Trigger, now: datetime | None = None) -> tuple[Enrollment, bool]:
        """Advance at `now` (else the clock's) and carry out the commands; (the new
        enrollment, profile changed)."""
        result: Advanced = advance(journey, enrollment, trigger, now or self.clock.now(),
                                   explain=self.decision_log)
        unit.put_enrollment(result.enrollment)
        changed = False
        for command in result.commands:
            changed |= self._execute(unit, journey, command)
        return result.enrollment, changed

    # --- commands ------------------------------------------------------------------

    def _execute(self, unit: UnitOfWork, journey: CompiledJourney, command: Command) -> bool:
        """Carry out one command; True if it changed the profile. The kinds in the order
        they come most (bench/journey_bench.py: ~4 notes and ~1 timer per event)."""
        if isinstance(command, Note):
            unit.record_decision(Decision(command.at, command.profile_id, command.journey,
                                          command.step, command.kind, command.reason,
                                          command.details))
        elif isinstance(command, ScheduleTimer):
            unit.add_timer(command)
        elif isinstance(command, Send):
            self._send(unit, journey, command)
        elif isinstance(command, CancelTimer):
            unit.cancel_timer(command.key)
        elif isinstance(command, Exit):
            unit.record_exit(command)
        elif isinstance(command, RecordGoal):
            unit.record_goal(command)
        elif isinstance(command, UpdateProfile):
            current = unit.get_profile(command.profile_id) or Profile(command.profile_id)
            unit.put_profile(Profile(current.id, apply_update(current.traits, command),
                                     current.computed))
            return True
        elif isinstance(command, Emit):
            unit.emit(addressed(unit, command.event))
        return False

    def _send(self, unit: UnitOfWork, journey: CompiledJourney, send: Send) -> None:
        """Render now and queue in the outbox, in this event's unit: the message shows
        the profile as it was when the step ran, and a render error is known at once (the
        step is skipped and the journey goes on; see docs/language.md)."""
        now = self.clock.now()
        profile = unit.get_profile(send.profile_id) or Profile(send.profile_id)
        try:
            entry = render_send(journey, send, profile, self.unsubscribe, now,
                                person=person_of(unit, send.profile_id),
                                tracking=self.tracking, policy=self.policy)
        except TemplateRenderError as exc:
            unit.record_decision(Decision(now, send.profile_id, send.journey, send.step,
                                          "skipped", "template_error", {"error": str(exc)}))
            return
        unit.enqueue_send(entry)

    # --- time ----------------------------------------------------------------------

    def fire(self, timer: ScheduleTimer, unit: UnitOfWork) -> None:
        """Fire one due timer (claimed by the caller); its lateness and resume: one instant."""
        now = self.clock.now()
        if now - timer.due_at > LATE_AFTER:
            self._record_lateness(unit, timer, now)
        if timer.step == CRON_STEP:
            self._cron_fired(unit, timer, now)
            return
        enrollment = unit.get_enrollment(timer.enrollment_id)
        if enrollment is None:
            return
        journey = self.version_of(enrollment)
        if journey is None:
            unit.record_decision(Decision(
                now, enrollment.profile_id, enrollment.journey, timer.step, "skipped",
                "version_not_deployed", {"version": enrollment.version}))
            return
        profile = unit.get_profile(enrollment.profile_id) or Profile(enrollment.profile_id)
        view = self.computed.view(profile, now, self.policy.timezone)
        self._advance(unit, journey, enrollment,
                      TimerFired(view, timer.step, timer.occurrence), now)

    def _record_lateness(self, unit: UnitOfWork, timer: ScheduleTimer, now: datetime) -> None:
        """A timer that fires late (the service was down) fires once; say how late."""
        unit.record_decision(Decision(
            now, timer.profile_id, timer.journey, timer.step, "fired_late", "timer_overdue",
            {"due_at": iso(timer.due_at), "late_seconds": (now - timer.due_at).total_seconds()}))

    # --- time-driven entries ---------------------------------------------------------

    def time_entries(self) -> dict[str, str]:
        """The journeys with time-driven entries (schedules, segments that change with
        time), each with a fingerprint of what its timers depend on: a deploy arms the
        existing profiles when it changes (engine/runtime/time_entries.py)."""
        found: dict[str, str] = {}
        for jid, journey in self.journeys.items():
            entry = journey.model.entry
            if jid in self._cron or jid in self._time_segments:
                segment = entry.segment.when if entry.segment is not None else None
                found[jid] = (f"{entry.kind}|{entry.schedule}|{segment!r}|"
                              f"{self.policy.timezone}")
        return found

    def entry_timer(self, jid: str, profile: Profile, now: datetime) -> ScheduleTimer | None:
        """The timer that makes `profile` meet journey `jid`'s time-driven entry when it
        is deployed: its next cron firing; for a segment, a check due at once if the
        profile is in it now, else at the next instant its condition may change."""
        if jid in self._cron:
            return self._cron_timer(jid, profile, now)
        if jid in self._time_segments:
            view = self.computed.view(profile, now, self.policy.timezone)
            if evaluate(self._time_segments[jid], {"profile": view.facts()}, now):
                return self._time_timer(jid, profile.id, now)  # in it now: enter at once
            due = next_change(self._time_segments[jid], profile, now,
                              default_tz=self.policy.timezone,
                              recency=self.computed.config["rfm"]["recency"])
            return None if due is None else self._time_timer(jid, profile.id, next_hour(due))
        return None

    def _zone(self, profile: Profile) -> str:
        return str(local_zone(profile.traits, self.policy.timezone))

    def _arm_cron(self, unit: UnitOfWork, profile: Profile, now: datetime, *,
                  replace: bool = False) -> None:
        for jid in self._cron:
            self._arm_one(unit, jid, profile, now, replace=replace)
        if replace:  # a birthday's local midnight moves with the zone
            for jid in self._time_segments:
                self._arm_time(unit, jid, profile, now)

    def _arm_one(self, unit: UnitOfWork, jid: str, profile: Profile, now: datetime, *,
                 replace: bool = False) -> None:
        timer = self._cron_timer(jid, profile, now)
        if replace:
            unit.cancel_timer(f"cron:{jid}:{profile.id}")
        if timer is not None:
            unit.add_timer(timer)

    def _cron_timer(self, jid: str, profile: Profile, now: datetime) -> ScheduleTimer | None:
        due = self._next_firing(jid, profile, now)
        if due is None:
            return None
        return ScheduleTimer(key=f"cron:{jid}:{profile.id}", enrollment_id="",
                             profile_id=profile.id, journey=jid, step=CRON_STEP,
                             occurrence=0, due_at=due)

    def _next_firing(self, jid: str, profile: Profile, now: datetime) -> datetime | None:
        """The schedule's next firing for this profile, in its time zone; for a schedule
        that can only enter on a birthday, the first firing within the next birthday."""
        tz = local_zone(profile.traits, self.policy.timezone)
        after = now + timedelta(seconds=1)
        if jid not in self._birthday_crons:
            return self._firing(jid, tz, after)
        for start, end in birthday_windows(profile.traits, now, self.policy.timezone):
            due = self._firing(jid, tz, max(after, start))
            if due is not None and due < end:
                return due
        return None  # no birthday known: it cannot enter (a new `birthday` re-arms it)

    def _firing(self, jid: str, tz: ZoneInfo, after: datetime) -> datetime | None:
        schedule = self.journeys[jid].model.entry.schedule or ""
        daily = daily_time(schedule)
        if daily is not None:  # "M H * * *": no need for the general (slow) computation
            local = after.astimezone(tz)
            due = datetime.combine(local.date(), daily, tzinfo=tz)
            if due < local:
                due = datetime.combine(local.date() + timedelta(days=1), daily, tzinfo=tz)
            return due.astimezone(UTC)
        trigger = self._triggers.get((jid, str(tz)))
        if trigger is None:
            trigger = CronTrigger.from_crontab(schedule, timezone=tz)
            self._triggers[(jid, str(tz))] = trigger
        fired: datetime | None = trigger.get_next_fire_time(None, after)
        return fired

    @staticmethod
    def _time_timer(jid: str, profile_id: str, due: datetime) -> ScheduleTimer:
        return ScheduleTimer(key=f"time:{jid}:{profile_id}", enrollment_id="",
                             profile_id=profile_id, journey=jid, step=CRON_STEP,
                             occurrence=0, due_at=due)

    def _arm_time(self, unit: UnitOfWork, jid: str, profile: Profile, now: datetime) -> None:
        """Keep the profile's one timer for a time-changing segment at the next instant
        its condition may change (none if time alone never changes it)."""
        due = next_change(self._time_segments[jid], profile, now,
                          default_tz=self.policy.timezone,
                          recency=self.computed.config["rfm"]["recency"])
        unit.cancel_timer(f"time:{jid}:{profile.id}")
        if due is not None:
            unit.add_timer(self._time_timer(jid, profile.id, next_hour(due)))

    def _cron_fired(self, unit: UnitOfWork, timer: ScheduleTimer, now: datetime) -> None:
        journey = self.journeys.get(timer.journey)
        if journey is None:
            return
        profile = unit.get_profile(timer.profile_id)
        if profile is None:
            return  # merged into another profile (which has its own timer): drop it
        view = self.computed.view(profile, now, self.policy.timezone)
        if journey.id in self._time_segments:
            self._segment_check(unit, journey, view, now)
            return
        if journey.id not in self._cron:
            return  # the journey's entry is no longer a schedule
        event = _entry_event(journey, "schedule", view, now)
        # A schedule's condition that does not hold is not recorded: it would be a row a
        # day for every person (not your birthday today), and says nothing new.
        if ENTRY in journey.events.match(self._facts(view, event, None), now):
            self._enroll(unit, journey, view, event, now)
        self._arm_one(unit, journey.id, unit.get_profile(timer.profile_id) or profile, now)

    def _segment_check(self, unit: UnitOfWork, journey: CompiledJourney, view: Profile,
                       now: datetime) -> None:
        """A segment condition re-evaluated with no event, when time may have changed
        it: the profile enters if it just became a member; then the next check is armed."""
        event = _entry_event(journey, "segment", view, now)
        member = ENTRY in journey.events.match(self._facts(view, event, None), now)
        was_member = unit.segment_member(view.id, journey.id)
        if member and not was_member:
            self._enroll(unit, journey, view, event, now)
        if member != was_member and not (member and journey.id in self.closed):
            unit.set_segment_member(view.id, journey.id, member)  # as above: not when closed
        self._arm_time(unit, journey.id, unit.get_profile(view.id) or view, now)


def _entry_event(journey: CompiledJourney, kind: str, view: Profile,
                 now: datetime) -> dict[str, Any]:
    """The synthetic enrolling event of a segment or schedule entry."""
    return {"type": "track", "event": f"{journey.id} {kind}", "userId": view.id,
            "properties": {"traits": dict(view.traits), "computed": dict(view.computed)},
            "traits": {}, "timestamp": iso(now), "messageId": f"{kind}:{journey.id}:{view.id}:"
            f"{iso(now)}", "context": {}}


__all__ = ["Runner"]
