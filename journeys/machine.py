"""The state machine a journey compiles into: `transitions`' `Machine`, whose events
move a row without the callback machinery when there is nothing for it to call.

Why: `Event.trigger` builds an `EventData` and a `partial`, runs six lists of
callbacks (all empty for a journey: the engine acts on the commands `advance` returns,
not in callbacks) and logs five debug lines per transition. It was 6-7% of a worker's
CPU (py-spy, bench/journey_bench.py end to end; 21,813 transitions for 8,000 events).
`DirectEvent.trigger` sets the row's state to the first transition's destination, as
`Transition.execute` would with no conditions, and hands every other case (a
condition, a callback, an internal transition, an invalid trigger, arguments) to
`Event.trigger` unchanged. tests/language/test_machine.py checks the two agree on
every bundled journey.
"""

from __future__ import annotations

from typing import Any

from transitions import Event, Machine


class DirectEvent(Event):
    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        machine = self.machine
        state = getattr(model, machine.model_attribute, None)
        # plain string states only: an Enum's state is looked up by its name
        candidates = self.transitions.get(state) if type(state) is str else None
        if args or kwargs or not candidates or _has_callbacks(machine):
            return bool(super().trigger(model, *args, **kwargs))
        first = candidates[0]
        source = machine.states.get(first.source)
        dest = machine.states.get(first.dest) if first.dest is not None else None
        if (source is None or dest is None or first.conditions or first.prepare
                or first.before or first.after or source.on_exit or dest.on_enter
                or dest.final):
            return bool(super().trigger(model, *args, **kwargs))
        setattr(model, machine.model_attribute, dest.value)
        return True


def _has_callbacks(machine: Machine) -> bool:
    return bool(machine.prepare_event or machine.before_state_change
                or machine.after_state_change or machine.finalize_event
                or machine.on_exception or machine.has_queue)


class JourneyMachine(Machine):
    """One per journey version, shared by every enrollment (`model=None`; the engine
    drives plain rows through it: design.md)."""

    event_cls = DirectEvent
