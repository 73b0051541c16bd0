"""journeys/machine.py: `DirectEvent` moves a row as `transitions`' own `Event.trigger`
does, on every transition of every bundled journey, and leaves anything with a
callback, a condition or an invalid source to the library."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from transitions import Event, MachineError

from journeys.compiler import compile_library
from journeys.loader import load_path
from journeys.machine import DirectEvent, JourneyMachine


class Row:
    def __init__(self, state: str) -> None:
        self.state = state


def test_every_bundled_transition_lands_where_the_library_would() -> None:
    compiled = compile_library(load_path(Path(str(files("journeys") / "library"))))
    checked = 0
    for journey in compiled.values():
        machine = journey.machine
        assert isinstance(machine, JourneyMachine)
        for name, event in machine.events.items():
            assert isinstance(event, DirectEvent)
            for source in event.transitions:
                direct, library = Row(source), Row(source)
                assert event.trigger(direct) is True
                assert Event.trigger(event, library) is True
                assert direct.state == library.state, (journey.id, name, source)
                assert direct.state != source or event.transitions[source][0].dest == source
                checked += 1
    assert checked > 100  # the bundled library, not an empty folder


def machine(**kwargs: Any) -> JourneyMachine:
    return JourneyMachine(model=None, states=["start", "a", "b"], initial="start",
                          auto_transitions=False, send_event=False, **kwargs)


def test_a_transition_with_a_condition_or_callback_goes_through_the_library() -> None:
    calls: list[str] = []
    m = machine(transitions=[
        {"trigger": "go", "source": "start", "dest": "a", "conditions": lambda: False},
        {"trigger": "go", "source": "start", "dest": "b",
         "after": lambda: calls.append("after")},
    ])
    row = Row("start")
    assert m.events["go"].trigger(row) is True
    assert row.state == "b"
    assert calls == ["after"]


def test_machine_and_state_callbacks_are_run() -> None:
    calls: list[str] = []
    m = machine(transitions=[{"trigger": "go", "source": "start", "dest": "a"}],
                after_state_change=lambda: calls.append("machine"))
    row = Row("start")
    m.events["go"].trigger(row)
    assert row.state == "a"
    assert calls == ["machine"]
    m = machine(transitions=[{"trigger": "go", "source": "start", "dest": "a"}])
    m.get_state("a").add_callback("enter", lambda: calls.append("enter a"))
    m.events["go"].trigger(row := Row("start"))
    assert row.state == "a"
    assert calls == ["machine", "enter a"]


def test_an_invalid_source_raises_as_the_library_does() -> None:
    m = machine(transitions=[{"trigger": "go", "source": "start", "dest": "a"}])
    with pytest.raises(MachineError, match="Can't trigger event go from state a"):
        m.events["go"].trigger(Row("a"))
    with pytest.raises(ValueError, match="not a registered state"):
        m.events["go"].trigger(Row("nowhere"))
