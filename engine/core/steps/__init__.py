"""One handler per step kind. To add a kind: its model in `journeys/steps.py`, a module
here with `run(run: StepRun, step) -> Go | SUSPEND`, a line in `HANDLERS`, and the other
places the README's "Where to add things" names (tests/docs/test_where_to_add.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core.steps import (
    branch,
    emit,
    exit,
    send,
    set_data,
    split,
    update_profile,
    wait,
    wait_for,
)
from engine.core.steps.base import Outcome, StepRun

Handler = Callable[[StepRun, Any], Outcome]

HANDLERS: dict[str, Handler] = {
    "wait": wait.run,
    "wait_for": wait_for.run,
    "send": send.run,
    "branch": branch.run,
    "split": split.run,
    "update_profile": update_profile.run,
    "set_data": set_data.run,
    "emit": emit.run,
    "exit": exit.run,
}
