"""`update_profile`: set, increment or unset traits (values are Jinja2 templates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from engine.core.model import UpdateProfile
from engine.core.steps.base import Go, Outcome, StepRun
from journeys.steps import UpdateProfileStep
from journeys.templating import render_value


def run(run: StepRun, step: UpdateProfileStep) -> Outcome:
    spec = step.update_profile
    values = render_value(dict(spec.set), run.context())
    command = UpdateProfile(profile_id=run.profile.id, set=values,
                            increment=dict(spec.increment), unset=tuple(spec.unset))
    run.commands.append(command)
    # Later steps of this same advance see the change.
    run.profile = replace(run.profile, traits=apply_update(run.profile.traits, command))
    return Go("next")


def apply_update(traits: Mapping[str, object], command: UpdateProfile) -> dict[str, object]:
    new = dict(traits)
    new.update(command.set)
    for name, amount in command.increment.items():
        current = new.get(name)
        base = current if isinstance(current, int | float) and not isinstance(current, bool) else 0
        total = base + amount
        new[name] = int(total) if float(total).is_integer() else total
    for name in command.unset:
        new.pop(name, None)
    return new
