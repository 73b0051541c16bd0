"""Pydantic models of the journey language (contract: shared/journey-language.md).

These validate the *shape* of a file. Meaning (step references, reachability,
templates, conditions) is checked by `journeys.lint`. Conditions stay raw here and
are parsed by `rules.parse_condition` in the loader, which knows their file positions.

Where to add a step kind: a model in `journeys/steps.py` (with its `Tag`) and a handler
module in `engine/core/steps/`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from journeys.base import Strict
from journeys.steps import INNER_KEYS, STEP_MODELS, Duration, Step

ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PHASES = ("awareness", "acquisition", "onboarding", "engagement", "retention", "advocacy")


RawCondition = Any  # parsed and checked by rules.parse_condition, with positions, in the loader


class SegmentSpec(Strict):
    when: RawCondition


class Entry(Strict):
    """Exactly one of `event`, `segment`, `schedule`; `when` narrows it."""

    event: str | None = None
    segment: SegmentSpec | None = None
    schedule: str | None = None
    when: RawCondition = None

    @property
    def kind(self) -> Literal["event", "segment", "schedule"]:
        if self.segment is not None:
            return "segment"
        if self.schedule is not None:
            return "schedule"
        return "event"


class ReEntryAfter(Strict):
    after: Duration


def _re_entry_tag(value: Any) -> str:
    return "re_entry:after" if isinstance(value, dict | ReEntryAfter) else "re_entry:word"


def _re_entry_word(value: Any) -> str:
    if value not in ("never", "always"):
        raise ValueError(f"must be 'never', 'always' or {{after: <duration>}}, not {value!r}")
    return str(value)


ReEntry = Annotated[
    Annotated[Literal["never", "always"], BeforeValidator(_re_entry_word), Tag("re_entry:word")]
    | Annotated[ReEntryAfter, Tag("re_entry:after")],
    Discriminator(_re_entry_tag),
]


class ExitWhen(Strict):
    event: str | None = None
    when: RawCondition = None


class Goal(Strict):
    event: str | None = None
    when: RawCondition = None
    within: Duration | None = None
    description: str | None = None


class QuietHours(Strict):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        return check_hhmm(value)


OnCap = Literal["delay", "drop"]


class Cap(Strict):
    """At most `max` sends per `per` on a channel; a send over it is dropped (`on_cap:
    drop`, the default) or delayed until the cap allows it (`on_cap: delay`)."""

    max: int = Field(ge=0)
    per: Duration
    on_cap: OnCap = "drop"


class PolicyOverride(Strict):
    """A journey's own `policy:`; `quiet_hours: false` turns quiet hours off for it."""

    quiet_hours: QuietHours | Literal[False] | None = None
    frequency_caps: dict[str, Cap] | None = None
    ignore_frequency_caps: bool = False
    consent_required: list[str] | None = None
    on_cap: OnCap | None = None  # this journey's sends over a cap: delay or drop


class Journey(Strict):
    journey: str
    version: int = Field(ge=1)
    name: str | None = None
    description: str | None = None
    phase: Literal[
        "awareness", "acquisition", "onboarding", "engagement", "retention", "advocacy"
    ] | None = None
    entry: Entry
    re_entry: ReEntry = "never"
    exit_when: list[ExitWhen] = Field(default_factory=list)
    goal: Goal | None = None
    policy: PolicyOverride | None = None
    priority: int = 0  # when sends compete for a frequency cap, the higher one goes first
    steps: list[Step] = Field(min_length=1)

    @field_validator("journey")
    @classmethod
    def _snake(cls, value: str) -> str:
        if not ID_RE.match(value):
            raise ValueError(f"journey id {value!r} must be snake_case (a-z, 0-9, _)")
        return value

    @property
    def title(self) -> str:
        return self.name or self.journey.replace("_", " ").capitalize()


class Policy(Strict):
    """The global `policy.yaml`."""

    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    frequency_caps: dict[str, Cap] = Field(default_factory=dict)
    consent_required: list[str] = Field(default_factory=list)


def check_hhmm(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"bad time {value!r}: use 24-hour HH:MM, like 09:00")
    return value


def language_keys() -> set[str]:
    """Every key the language knows, for "did you mean" suggestions."""
    keys: set[str] = set()
    models: list[type[BaseModel]] = [
        Journey, Entry, SegmentSpec, ReEntryAfter, ExitWhen, Goal, QuietHours, Cap,
        PolicyOverride, Policy, *STEP_MODELS.values(),
    ]
    for model in models:
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
    keys.update(INNER_KEYS)
    return keys
