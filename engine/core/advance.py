"""`advance(journey, enrollment, trigger, now) -> Advanced`: the pure core.

No I/O, no clock, no randomness: everything comes in as arguments and goes out as
commands (`engine.core.model`). The runtime around it stores the new enrollment and carries
out the commands in one transaction; a test can call it directly.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.core.model import (
    Advanced,
    CancelTimer,
    Enrollment,
    Enter,
    Event,
    EventMatched,
    Exit,
    ExitRequested,
    GoalMet,
    Profile,
    RecordGoal,
    Status,
    TimerFired,
    Trigger,
)
from engine.core.steps import HANDLERS
from engine.core.steps.base import Go, StepRun
from journeys.compiler import CompiledJourney
from journeys.graph import COMPLETED, EXITED, START
from journeys.steps import WaitForStep, WaitStep, kind_of
from rules.errors import JourneymanError

NAMESPACE = uuid.UUID("6f1c1f55-6a8e-4b8a-9a56-5b3f3b1f0a11")
_NAMESPACE_BYTES = NAMESPACE.bytes
MAX_STEPS_PER_ADVANCE = 1_000  # the linter forbids waitless loops; this is the backstop


class EngineError(JourneymanError):
    """The core met a state it cannot handle (a bug or a corrupted enrollment row)."""


class _Row:
    """What the shared `transitions` machine moves: just a `state` attribute."""

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state


def enrollment_id(journey: str, version: int, profile_id: str, occurrence: int) -> str:
    """uuid5(journey, version, profile, entry occurrence): a replay enrolls the same id.

    The text of `uuid.uuid5` built without a UUID object (a third of its 3 us; one per
    enrollment): SHA-1 of the namespace and the name, the version and variant bits set
    (RFC 4122, 4.3), as tests/engine/test_model.py checks against uuid5."""
    digest = bytearray(hashlib.sha1(
        _NAMESPACE_BYTES + f"{journey}\x1f{version}\x1f{profile_id}\x1f{occurrence}".encode(),
        usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def new_enrollment(journey: CompiledJourney, profile: Profile, event: Event, occurrence: int,
                   now: datetime) -> Enrollment:
    return Enrollment(
        id=enrollment_id(journey.id, journey.version, profile.id, occurrence),
        journey=journey.id, version=journey.version, profile_id=profile.id, state=START,
        status="active", entered_at=now, updated_at=now, entry_event=dict(event))


def advance(journey: CompiledJourney, enrollment: Enrollment, trigger: Trigger,
            now: datetime, *, explain: bool = True) -> Advanced:
    """Move `enrollment` on by `trigger`. With `explain`, the commands include a `Note`
    for each decision (waits, resumes, branches, splits, goals, exits) for the decision
    log; without, the same advance records none."""
    run = StepRun(journey, enrollment, trigger.profile, now, data=dict(enrollment.data),
                  visits=dict(enrollment.visits), variants=dict(enrollment.variants),
                  trigger_event=enrollment.trigger_event, explain=explain)
    if isinstance(trigger, GoalMet):
        return _goal(run, trigger)
    if not enrollment.active:
        return Advanced(enrollment, ())
    state = enrollment.state
    if isinstance(trigger, Enter):
        if state != START:
            raise EngineError(f"enrollment {enrollment.id} already started (at {state})")
        return _run(run, Go("enter"))
    if isinstance(trigger, TimerFired):
        step = journey.steps.get(state)
        if state != trigger.step or enrollment.occurrence(state) != trigger.occurrence:
            return Advanced(enrollment, ())  # stale: the enrollment has moved on
        if isinstance(step, WaitStep):
            run.note(state, "resumed", "wait over")
            return _run(run, Go("resume"))
        if isinstance(step, WaitForStep):
            run.note(state, "resumed", f"timeout: no {step.wait_for.event} in time",
                     event=step.wait_for.event)
            return _run(run, Go("timeout"))
        return Advanced(enrollment, ())
    if isinstance(trigger, EventMatched):
        if state != trigger.step or not isinstance(journey.steps.get(state), WaitForStep):
            return Advanced(enrollment, ())
        run.commands.append(CancelTimer(run.key(state)))
        run.trigger_event = dict(trigger.event)
        run.note(state, "resumed", f"event: {trigger.event.get('event')}",
                 event=trigger.event.get("event"), message_id=trigger.event.get("messageId"))
        return _run(run, Go("matched"))
    if isinstance(trigger, ExitRequested):
        if _is_waiting(journey, state):
            run.commands.append(CancelTimer(run.key(state)))
        return _run(run, Go("exit", exit_reason=trigger.reason))
    raise EngineError(f"unknown trigger {trigger!r}")


def _is_waiting(journey: CompiledJourney, state: str) -> bool:
    return isinstance(journey.steps.get(state), WaitStep | WaitForStep)


def _goal(run: StepRun, trigger: GoalMet) -> Advanced:
    enrollment, goal = run.enrollment, run.journey.model.goal
    if goal is None or enrollment.goal_reached_at is not None:
        return Advanced(enrollment, ())
    if goal.within is not None and run.now > enrollment.entered_at + goal.within:
        return Advanced(enrollment, ())
    new = enrollment.changed(goal_reached_at=run.now, updated_at=run.now)
    run.note(enrollment.state, "goal", f"goal: {goal.event or 'condition'}",
             event=trigger.event.get("event"), entered_at=enrollment.entered_at.isoformat(),
             status=enrollment.status)
    return Advanced(new, (RecordGoal(enrollment.id, enrollment.profile_id, enrollment.journey,
                                     run.now, goal_value(goal.value, trigger)), *run.commands))


def goal_value(path: str | None, trigger: GoalMet) -> float | None:
    """The number at `path` (`event.properties.revenue`) in the goal's event or the
    profile; None when there is none or it is not a finite number (hostile input costs
    the value, never the goal)."""
    if not path:
        return None
    found: Any = {"event": dict(trigger.event), "profile": trigger.profile.facts()}
    for part in path.split("."):
        if not isinstance(found, Mapping) or part not in found:
            return None
        found = found[part]
    if isinstance(found, bool):
        return None
    try:
        number = float(found)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _run(run: StepRun, go: Go) -> Advanced:
    """Fire `go`, then run instant steps until one suspends or the journey ends."""
    machine = run.journey.machine
    row = _Row(run.state)
    exit_reason: str | None = None
    last_step = row.state
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if row.state not in (START, COMPLETED, EXITED):
            last_step = row.state
        machine.events[go.trigger].trigger(row)
        exit_reason = go.exit_reason
        state = row.state
        if state in (COMPLETED, EXITED):
            return _finish(run, state, last_step, exit_reason or "completed")
        run.visits[state] = run.visits.get(state, 0) + 1
        run.state = state
        step = run.journey.steps[state]
        outcome = HANDLERS[kind_of(step)](run, step)
        if not isinstance(outcome, Go):
            return _result(run, state)
        go = outcome
    raise EngineError(f"{run.journey.id}: more than {MAX_STEPS_PER_ADVANCE} steps without a "
                      "wait; is there a loop?")


def _result(run: StepRun, state: str) -> Advanced:
    new = run.enrollment.changed(state=state, updated_at=run.now, data=run.data,
                  visits=run.visits, variants=run.variants, trigger_event=run.trigger_event)
    return Advanced(new, tuple(run.commands))


def _finish(run: StepRun, terminal: str, last_step: str, reason: str) -> Advanced:
    status: Status = "completed" if terminal == COMPLETED else "exited"
    new = run.enrollment.changed(state=terminal, status=status, updated_at=run.now,
                  ended_at=run.now, exit_reason=reason, data=run.data, visits=run.visits,
                  variants=run.variants, trigger_event=run.trigger_event)
    run.commands.append(Exit(new.id, new.profile_id, new.journey, last_step, reason, run.now))
    run.note(last_step, "exited", exit_story(reason), exit_reason=reason,
             status=status, entered_at=new.entered_at.isoformat())
    return Advanced(new, tuple(run.commands))


def exit_story(reason: str) -> str:
    """An exit reason as `why` tells it: `exit_when: Order Completed`, `completed`."""
    if reason.startswith("exit_when:"):
        return f"exit_when: {reason.removeprefix('exit_when:')}"
    return reason
