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

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

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
from engine.core.times import iso, local_zone, span
from engine.ports import Clock, Decision
from engine.runtime.identity import person_of, resolve
from engine.runtime.rendering import render_send
from engine.runtime.unit import UnitOfWork
from engine.runtime.unsubscribe import UnsubscribeLinks
from journeys.compiler import ENTRY, GOAL, CompiledJourney, wait_for_rule
from journeys.errors import TemplateRenderError
from journeys.model import Policy
from rules.explain import explain, values

LATE_AFTER = timedelta(minutes=1)  # later than this, a timer's lateness is recorded


class Runner:
    """Runs the journeys for one event or one due timer at a time, in a unit of work:
    matches, advances enrollments through the core and carries out their commands."""

    def __init__(self, journeys: Mapping[str, CompiledJourney], *, clock: Clock,
                 unsubscribe: UnsubscribeLinks, computed: ComputedTraits | None = None,
                 policy: Policy | None = None, identity_traits: tuple[str, ...] = (),
                 decision_log: bool = True) -> None:
        self.journeys = dict(journeys)
        # The whole decision log (entries, refusals, waits, branches, splits, exits) for
        # `journeyman why`; off, only what became of sends is recorded.
        self.decision_log = decision_log
        self.clock = clock
        self.computed = computed or ComputedTraits()
        self.policy = policy or Policy()
        self.identity_traits = identity_traits  # traits that identify a person, e.g. email
        self.unsubscribe = unsubscribe  # signed with a configured secret, never a default
        self._cron = {jid: CronTrigger.from_crontab(j.model.entry.schedule, timezone="UTC")
                      for jid, j in self.journeys.items() if j.model.entry.schedule}

    # --- events --------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any], unit: UnitOfWork) -> str:
        """Handle one normalized event; returns the profile it was for."""
        now = self.clock.now()
        pid = resolve(unit, event, self.identity_traits)
        before = unit.get_profile(pid)
        profile = self.computed.apply(before or Profile(pid), event)
        unit.put_profile(profile)
        if before is None:
            self._arm_cron(unit, profile, now)
        # One view of the profile until a step changes it: the per-journey loop stays in
        # memory. The active enrollments are the unit's, at most one per journey.
        active = {e.journey: e for e in unit.active_enrollments(pid)}
        view = self.computed.view(profile, now, self.policy.timezone)
        # A segment that does not hold is explained when its inputs are new (a profile's
        # first event, an identify), not on every event.
        explain_segments = self.decision_log and (before is None or event.get("type") == "identify")
        for journey in self.journeys.values():
            changed = self._event_for_journey(unit, journey, view, active.get(journey.id),
                                              event, now=now, explain_segment=explain_segments)
            if changed:  # an update_profile step ran
                profile = unit.get_profile(pid) or profile
                view = self.computed.view(profile, now, self.policy.timezone)
        return pid

    def _facts(self, view: Profile, event: Mapping[str, Any],
               enrollment: Enrollment | None) -> dict[str, Any]:
        return {"event": event, "profile": view.facts(),
                "enrollment": enrollment.facts() if enrollment else {},
                "trigger": dict(enrollment.trigger_event or {}) if enrollment else {}}

    def _event_for_journey(self, unit: UnitOfWork, journey: CompiledJourney, view: Profile,
                           enrollment: Enrollment | None, event: Mapping[str, Any], *,
                           now: datetime, explain_segment: bool = False) -> bool:
        """Goal, exit, wait_for and entry of one journey; True if the profile changed."""
        changed = False
        facts = self._facts(view, event, enrollment)
        matched = journey.events.match(facts, now)
        if enrollment is not None:
            if GOAL in matched:
                enrollment, _ = self._advance(unit, journey, enrollment, GoalMet(view, event))
            exit_rule = next((r for r in journey.exit_rules if r in matched), None)
            if exit_rule is not None:
                changed |= self._advance(unit, journey, enrollment, ExitRequested(
                    view, self._exit_reason(journey, exit_rule)))[1]
            elif wait_for_rule(enrollment.state) in matched:
                changed |= self._advance(unit, journey, enrollment,
                                         EventMatched(view, enrollment.state, event))[1]
        else:
            if GOAL in matched:
                self._late_goal(unit, journey, view, event)  # shortly after it ended
            exit_rule = next((r for r in journey.exit_rules if r in matched), None)
            if exit_rule is not None:
                self._withdraw_held_sends(unit, journey, view.id, exit_rule, now)
        # Entries come after: an event may end one enrollment and start the next
        # (win-back restarts its clock on every order); _may_enter sees what just ended.
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
            if member and not was_member:
                changed |= self._enroll(unit, journey, view,
                                        _entry_event(journey, "segment", view, now), now)
            elif explain_segment and not member and not was_member:
                self._not_entered(unit, journey, view.id, ("entry", "segment", "when"), facts,
                                  now=now, segment=True)
            if member != was_member:
                unit.set_segment_member(view.id, journey.id, member)
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
            self._advance(unit, journey, last, GoalMet(view, event))

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
                 trigger: Trigger) -> tuple[Enrollment, bool]:
        """Advance and carry out the commands; (the new enrollment, profile changed)."""
        result: Advanced = advance(journey, enrollment, trigger, self.clock.now(),
                                   explain=self.decision_log)
        unit.put_enrollment(result.enrollment)
        changed = False
        for command in result.commands:
            changed |= self._execute(unit, journey, command)
        return result.enrollment, changed

    # --- commands ------------------------------------------------------------------

    def _execute(self, unit: UnitOfWork, journey: CompiledJourney, command: Command) -> bool:
        """Carry out one command; True if it changed the profile."""
        if isinstance(command, Send):
            self._send(unit, journey, command)
        elif isinstance(command, ScheduleTimer):
            unit.add_timer(command)
        elif isinstance(command, CancelTimer):
            unit.cancel_timer(command.key)
        elif isinstance(command, UpdateProfile):
            current = unit.get_profile(command.profile_id) or Profile(command.profile_id)
            unit.put_profile(Profile(current.id, apply_update(current.traits, command),
                                     current.computed))
            return True
        elif isinstance(command, Emit):
            unit.emit(dict(command.event))
        elif isinstance(command, Exit):
            unit.record_exit(command)
        elif isinstance(command, RecordGoal):
            unit.record_goal(command)
        elif isinstance(command, Note):
            unit.record_decision(Decision(command.at, command.profile_id, command.journey,
                                          command.step, command.kind, command.reason,
                                          command.details))
        return False

    def _send(self, unit: UnitOfWork, journey: CompiledJourney, send: Send) -> None:
        """Render now and queue in the outbox, in this event's unit: the message shows
        the profile as it was when the step ran, and a render error is known at once (the
        step is skipped and the journey goes on; see docs/language.md)."""
        now = self.clock.now()
        profile = unit.get_profile(send.profile_id) or Profile(send.profile_id)
        try:
            entry = render_send(journey, send, profile, self.unsubscribe, now,
                                person=person_of(unit, send.profile_id))
        except TemplateRenderError as exc:
            unit.record_decision(Decision(now, send.profile_id, send.journey, send.step,
                                          "skipped", "template_error", {"error": str(exc)}))
            return
        unit.enqueue_send(entry)

    # --- time ----------------------------------------------------------------------

    @staticmethod
    def timer_owner(timer: ScheduleTimer, enrollments: Mapping[str, Enrollment]) -> str:
        """The profile a timer is for: its enrollment's (a merge moves enrollments, not
        timers), or the one it was armed for (cron timers, gone enrollments)."""
        if timer.step == CRON_STEP:
            return timer.profile_id
        enrollment = enrollments.get(timer.enrollment_id)
        return enrollment.profile_id if enrollment is not None else timer.profile_id

    def fire(self, timer: ScheduleTimer, unit: UnitOfWork) -> None:
        """Fire one due timer (claimed by the caller)."""
        now = self.clock.now()
        if now - timer.due_at > LATE_AFTER:
            self._record_lateness(unit, timer, now)
        if timer.step == CRON_STEP:
            self._cron_fired(unit, timer, now)
            return
        journey = self.journeys.get(timer.journey)
        enrollment = unit.get_enrollment(timer.enrollment_id)
        if journey is None or enrollment is None:
            return
        profile = unit.get_profile(enrollment.profile_id) or Profile(enrollment.profile_id)
        view = self.computed.view(profile, now, self.policy.timezone)
        self._advance(unit, journey, enrollment, TimerFired(view, timer.step, timer.occurrence))

    def _record_lateness(self, unit: UnitOfWork, timer: ScheduleTimer, now: datetime) -> None:
        """A timer that fires late (the service was down) fires once; say how late."""
        unit.record_decision(Decision(
            now, timer.profile_id, timer.journey, timer.step, "fired_late", "timer_overdue",
            {"due_at": iso(timer.due_at), "late_seconds": (now - timer.due_at).total_seconds()}))

    def _arm_cron(self, unit: UnitOfWork, profile: Profile, now: datetime) -> None:
        for jid in self._cron:
            self._arm_one(unit, jid, profile, now)

    def _arm_one(self, unit: UnitOfWork, jid: str, profile: Profile, now: datetime) -> None:
        tz = local_zone(profile.traits, self.policy.timezone)
        trigger = CronTrigger.from_crontab(self.journeys[jid].model.entry.schedule or "",
                                           timezone=tz)
        due = trigger.get_next_fire_time(None, now + timedelta(seconds=1))
        if due is not None:
            unit.add_timer(ScheduleTimer(key=f"cron:{jid}:{profile.id}", enrollment_id="",
                                         profile_id=profile.id, journey=jid, step=CRON_STEP,
                                         occurrence=0, due_at=due))

    def _cron_fired(self, unit: UnitOfWork, timer: ScheduleTimer, now: datetime) -> None:
        journey = self.journeys.get(timer.journey)
        if journey is None:
            return
        profile = unit.get_profile(timer.profile_id)
        if profile is None:
            return  # merged into another profile (which has its own cron timer): drop it
        view = self.computed.view(profile, now, self.policy.timezone)
        event = _entry_event(journey, "schedule", view, now)
        # A schedule's condition that does not hold is not recorded: it would be a row a
        # day for every person (not your birthday today), and says nothing new.
        if ENTRY in journey.events.match(self._facts(view, event, None), now):
            self._enroll(unit, journey, view, event, now)
        self._arm_one(unit, journey.id, unit.get_profile(timer.profile_id) or profile, now)


def _entry_event(journey: CompiledJourney, kind: str, view: Profile,
                 now: datetime) -> dict[str, Any]:
    """The synthetic enrolling event of a segment or schedule entry."""
    return {"type": "track", "event": f"{journey.id} {kind}", "userId": view.id,
            "properties": {"traits": dict(view.traits), "computed": dict(view.computed)},
            "traits": {}, "timestamp": iso(now), "messageId": f"{kind}:{journey.id}:{view.id}:"
            f"{iso(now)}", "context": {}}


__all__ = ["Runner"]
