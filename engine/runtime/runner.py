"""The runtime around the pure core: match events to journeys, advance enrollments,
carry out the commands. Storage, time, ids and delivery come in through ports, so the
same code runs in memory (tests, `journeyman simulate`) and on a database.

Order of work for one event (design.md, "the flow of one event"):
1. update the profile (traits on identify, stored computed traits);
2. for each journey, the profile's active enrollment: goal, then exit_when, then the
   `wait_for` the enrollment is waiting on;
3. then entries (so the event that enrolls a profile does not also exit it);
4. carry out the commands; emitted events are handled after this one, in order.
   Sends are rendered (engine/runtime/rendering.py) and queued in the outbox;
   engine/runtime/dispatch.py delivers them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
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
from engine.core.times import iso, local_zone
from engine.ports import Clock, Decision, IdGenerator, Store
from engine.runtime.events import normalize
from engine.runtime.identity import person_of, resolve
from engine.runtime.rendering import render_send
from engine.runtime.unsubscribe import UnsubscribeLinks
from journeys.compiler import ENTRY, GOAL, CompiledJourney, wait_for_rule
from journeys.errors import TemplateRenderError
from journeys.model import Policy

TIMER_BATCH = 500
LATE_AFTER = timedelta(minutes=1)  # later than this, a timer's lateness is recorded


class Runner:
    """Runs the journeys for events and due timers over a Store: matches, advances
    enrollments through the core and carries out their commands."""

    def __init__(self, journeys: Mapping[str, CompiledJourney], *, store: Store, clock: Clock,
                 ids: IdGenerator, computed: ComputedTraits | None = None,
                 policy: Policy | None = None, identity_traits: tuple[str, ...] = (),
                 unsubscribe: UnsubscribeLinks) -> None:
        self.journeys = dict(journeys)
        self.store = store
        self.clock = clock
        self.ids = ids
        self.computed = computed or ComputedTraits()
        self.policy = policy or Policy()
        self.identity_traits = identity_traits  # traits that identify a person, e.g. email
        self.unsubscribe = unsubscribe  # signed with a configured secret, never a default
        self._queue: deque[dict[str, Any]] = deque()
        self._profile_changed = False
        self.emitted: list[dict[str, Any]] = []  # events emitted by steps, in order
        self._cron = {jid: CronTrigger.from_crontab(j.model.entry.schedule, timezone="UTC")
                      for jid, j in self.journeys.items() if j.model.entry.schedule}

    # --- events --------------------------------------------------------------------

    def post(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Accept one Segment-format event and handle it (and whatever it emits)."""
        event = normalize(raw, now=self.clock.now(), message_id=self.ids.new_id())
        self._queue.append(event)
        self._drain()
        return event

    def handle(self, event: Mapping[str, Any]) -> None:
        """Handle one already-normalized event (from the inbox), and whatever it emits."""
        self._queue.append(dict(event))
        self._drain()

    def _drain(self) -> None:
        while self._queue:
            self._handle(self._queue.popleft())

    def _handle(self, event: dict[str, Any]) -> None:
        now = self.clock.now()
        pid = resolve(self.store, event, self.identity_traits)
        self.store.lock_profile(pid)
        before = self.store.get_profile(pid)
        profile = self.computed.apply(before or Profile(pid), event)
        self.store.put_profile(profile)
        if before is None:
            self._arm_cron(pid, now)
        # One read of the profile's active enrollments for all journeys, one view of the
        # profile until a step changes it: the per-journey loop stays in memory.
        active = {e.journey: e for e in self.store.active_enrollments(pid)}
        view = self.computed.view(profile, now, self.policy.timezone)
        for journey in self.journeys.values():
            self._profile_changed = False
            self._event_for_journey(journey, view, active.get(journey.id), event, now)
            if self._profile_changed:  # an update_profile step ran
                profile = self.store.get_profile(pid) or profile
                view = self.computed.view(profile, now, self.policy.timezone)

    def _facts(self, view: Profile, event: Mapping[str, Any],
               enrollment: Enrollment | None) -> dict[str, Any]:
        return {"event": event, "profile": view.facts(),
                "enrollment": enrollment.facts() if enrollment else {},
                "trigger": dict(enrollment.trigger_event or {}) if enrollment else {}}

    def _event_for_journey(self, journey: CompiledJourney, view: Profile,
                           enrollment: Enrollment | None, event: Mapping[str, Any],
                           now: datetime) -> None:
        matched = journey.events.match(self._facts(view, event, enrollment), now)
        if enrollment is not None:
            if GOAL in matched:
                enrollment = self._advance(journey, enrollment, GoalMet(view, event))
            exit_rule = next((r for r in journey.exit_rules if r in matched), None)
            if exit_rule is not None:
                item = journey.model.exit_when[int(exit_rule.split(":")[1])]
                reason = f"exit_when:{item.event or 'condition'}"
                self._advance(journey, enrollment, ExitRequested(view, reason))
            elif wait_for_rule(enrollment.state) in matched:
                self._advance(journey, enrollment, EventMatched(view, enrollment.state, event))
        elif GOAL in matched:
            self._late_goal(journey, view, event)  # a goal shortly after the journey ended
        # Entries come after: an event may end one enrollment and start the next
        # (win-back restarts its clock on every order); _may_enter sees what just ended.
        kind = journey.model.entry.kind
        if kind == "event" and ENTRY in matched:
            self._enroll(journey, view, event, now)
        elif kind == "segment":
            member = ENTRY in matched
            was_member = self.store.segment_member(view.id, journey.id)
            if member and not was_member:
                self._enroll(journey, view, _entry_event(journey, "segment", view, now), now)
            if member != was_member:
                self.store.set_segment_member(view.id, journey.id, member)

    def _late_goal(self, journey: CompiledJourney, view: Profile, event: Mapping[str, Any]) -> None:
        history = self.store.enrollments(view.id, journey.id)
        if history and history[-1].goal_reached_at is None:
            self._advance(journey, history[-1], GoalMet(view, event))

    @staticmethod
    def _may_enter(journey: CompiledJourney, history: list[Enrollment], now: datetime) -> bool:
        if not history:
            return True
        if any(e.active for e in history):
            return False
        rule = journey.model.re_entry
        if rule == "never":
            return False
        if rule == "always":
            return True
        return now - history[-1].entered_at >= rule.after

    def _enroll(self, journey: CompiledJourney, view: Profile, event: Mapping[str, Any],
                now: datetime) -> None:
        history = self.store.enrollments(view.id, journey.id)
        if not self._may_enter(journey, history, now):
            return
        enrollment = new_enrollment(journey, view, event, len(history), now)
        self._advance(journey, enrollment, Enter(view))

    def _advance(self, journey: CompiledJourney, enrollment: Enrollment,
                 trigger: Trigger) -> Enrollment:
        result: Advanced = advance(journey, enrollment, trigger, self.clock.now())
        self.store.put_enrollment(result.enrollment)
        for command in result.commands:
            self._execute(journey, command)
        return result.enrollment

    # --- commands ------------------------------------------------------------------

    def _execute(self, journey: CompiledJourney, command: Command) -> None:
        if isinstance(command, Send):
            self._send(journey, command)
        elif isinstance(command, ScheduleTimer):
            self.store.add_timer(command)
        elif isinstance(command, CancelTimer):
            self.store.cancel_timer(command.key)
        elif isinstance(command, UpdateProfile):
            self._profile_changed = True
            current = self.store.get_profile(command.profile_id) or Profile(command.profile_id)
            self.store.put_profile(Profile(current.id, apply_update(current.traits, command),
                                           current.computed))
        elif isinstance(command, Emit):
            self.emitted.append(dict(command.event))
            self._queue.append(dict(command.event))
        elif isinstance(command, Exit):
            self.store.record_exit(command)
        elif isinstance(command, RecordGoal):
            self.store.record_goal(command)

    def _send(self, journey: CompiledJourney, send: Send) -> None:
        """Render now and queue in the outbox, in this event's transaction: the message
        shows the profile as it was when the step ran, and a render error is known at
        once (the step is skipped and the journey goes on; see docs/language.md)."""
        now = self.clock.now()
        profile = self.store.get_profile(send.profile_id) or Profile(send.profile_id)
        try:
            entry = render_send(journey, send, profile, self.unsubscribe, now,
                                person=person_of(self.store, send.profile_id))
        except TemplateRenderError as exc:
            self.store.record_decision(Decision(now, send.profile_id, send.journey, send.step,
                                                "skipped", "template_error", {"error": str(exc)}))
            return
        self.store.enqueue_send(entry)

    # --- time ----------------------------------------------------------------------

    def fire_due_timers(self) -> int:
        """Fire every timer due now (in due order); returns how many fired."""
        fired = 0
        now = self.clock.now()
        while batch := self.store.claim_due_timers(now, TIMER_BATCH):
            # Profile order (due order within a profile): processes that fire timer
            # batches at once take the profiles' locks in the same order. (After a merge
            # a timer's enrollment may belong to another profile; a deadlock that this
            # rare case could cause is broken by PostgreSQL and the batch retried.)
            for timer in sorted(batch, key=lambda t: t.profile_id):
                fired += 1
                if now - timer.due_at > LATE_AFTER:
                    self._record_lateness(timer, now)
                if timer.step == CRON_STEP:
                    self.store.lock_profile(timer.profile_id)
                    self._cron_fired(timer, now)
                    continue
                journey = self.journeys.get(timer.journey)
                enrollment = self.store.get_enrollment(timer.enrollment_id)
                if journey is None or enrollment is None:
                    continue
                # The enrollment says whose timer it is (a merge moves enrollments, not
                # timers); read it again if locking its profile may have waited.
                if self.store.lock_profile(enrollment.profile_id):
                    enrollment = self.store.get_enrollment(timer.enrollment_id) or enrollment
                profile = self.store.get_profile(enrollment.profile_id) or Profile(
                    enrollment.profile_id)
                view = self.computed.view(profile, now, self.policy.timezone)
                self._advance(journey, enrollment, TimerFired(view, timer.step, timer.occurrence))
                self._drain()
        return fired

    def _record_lateness(self, timer: ScheduleTimer, now: datetime) -> None:
        """A timer that fires late (the service was down) fires once; say how late."""
        self.store.record_decision(Decision(
            now, timer.profile_id, timer.journey, timer.step, "fired_late", "timer_overdue",
            {"due_at": iso(timer.due_at), "late_seconds": (now - timer.due_at).total_seconds()}))

    def _arm_cron(self, profile_id: str, now: datetime) -> None:
        for jid in self._cron:
            self._arm_one(jid, profile_id, now)

    def _arm_one(self, jid: str, profile_id: str, now: datetime) -> None:
        profile = self.store.get_profile(profile_id) or Profile(profile_id)
        tz = local_zone(profile.traits, self.policy.timezone)
        trigger = CronTrigger.from_crontab(self.journeys[jid].model.entry.schedule or "",
                                           timezone=tz)
        due = trigger.get_next_fire_time(None, now + timedelta(seconds=1))
        if due is not None:
            self.store.add_timer(ScheduleTimer(key=f"cron:{jid}:{profile_id}", enrollment_id="",
                                               profile_id=profile_id, journey=jid, step=CRON_STEP,
                                               occurrence=0, due_at=due))

    def _cron_fired(self, timer: ScheduleTimer, now: datetime) -> None:
        journey = self.journeys.get(timer.journey)
        if journey is None:
            return
        profile = self.store.get_profile(timer.profile_id)
        if profile is None:
            return  # merged into another profile (which has its own cron timer): drop it
        view = self.computed.view(profile, now, self.policy.timezone)
        event = _entry_event(journey, "schedule", view, now)
        if ENTRY in journey.events.match(self._facts(view, event, None), now):
            self._enroll(journey, view, event, now)
        self._arm_one(journey.id, timer.profile_id, now)
        self._drain()

    def profiles(self) -> Iterable[str]:
        return self.store.profile_ids()


def _entry_event(journey: CompiledJourney, kind: str, view: Profile,
                 now: datetime) -> dict[str, Any]:
    """The synthetic enrolling event of a segment or schedule entry."""
    return {"type": "track", "event": f"{journey.id} {kind}", "userId": view.id,
            "properties": {"traits": dict(view.traits), "computed": dict(view.computed)},
            "traits": {}, "timestamp": iso(now), "messageId": f"{kind}:{journey.id}:{view.id}:"
            f"{iso(now)}", "context": {}}


__all__ = ["Runner"]
