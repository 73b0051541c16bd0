"""The step kinds of the language: one model per kind, keyed on its kind key.

A step is a mapping with an `id`, optional `next`, and exactly one kind key. The
kind decides the model (a pydantic callable discriminator), so an error in a `send`
step is reported against the `send` model only.

Adding a kind: a model here, registered in `STEP_MODELS`, the `Step` union and
`AnyStep` (its inner spec model in `INNER_MODELS`), a handler in
`engine/core/steps/<kind>.py`, and the other places the README's "Where to add things"
names.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag

from journeys.base import Strict
from rules import DurationError, parse_duration


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except DurationError as exc:
        raise ValueError(str(exc)) from None


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _StepBase(Strict):
    id: str
    next: str | None = None
    name: str | None = None
    description: str | None = None


# --- wait ---------------------------------------------------------------------------

class WaitUntil(Strict):
    """`until: "09:00"` (a local time, next occurrence) or `until: <path to a timestamp>`."""

    until: str
    tz: str | None = None  # "profile" (the default for HH:MM) or an IANA zone name

    @property
    def is_local_time(self) -> bool:
        is_path = self.until.startswith(("event.", "profile.", "enrollment."))
        return ":" in self.until and not is_path


def _wait_tag(value: Any) -> str:
    return "wait:until" if isinstance(value, dict | WaitUntil) else "wait:duration"


WaitSpec = Annotated[
    Annotated[Duration, Tag("wait:duration")] | Annotated[WaitUntil, Tag("wait:until")],
    Discriminator(_wait_tag),
]


class WaitStep(_StepBase):
    wait: WaitSpec


# --- wait_for -----------------------------------------------------------------------

class WaitFor(Strict):
    event: str
    when: Any = None
    timeout: Duration
    on_event: str | None = None
    on_timeout: str | None = None


class WaitForStep(_StepBase):
    wait_for: WaitFor


# --- send ---------------------------------------------------------------------------

class SendSpec(Strict):
    channel: str
    template: str
    to: str | None = None


class SendStep(_StepBase):
    send: SendSpec


# --- branch -------------------------------------------------------------------------

class BranchCase(Strict):
    when: Any
    goto: str


class BranchElse(Strict):
    else_: str = Field(alias="else")


def _case_tag(value: Any) -> str:
    is_else = (isinstance(value, dict) and "else" in value) or isinstance(value, BranchElse)
    return "branch:else" if is_else else "branch:case"


BranchItem = Annotated[
    Annotated[BranchCase, Tag("branch:case")] | Annotated[BranchElse, Tag("branch:else")],
    Discriminator(_case_tag),
]


class BranchStep(_StepBase):
    branch: list[BranchItem] = Field(min_length=1)


# --- split --------------------------------------------------------------------------

class Variant(Strict):
    name: str
    weight: float = Field(ge=0, le=100)
    goto: str


class Split(Strict):
    variants: list[Variant] = Field(min_length=1)
    holdout: float = Field(default=0, ge=0, lt=100)


class SplitStep(_StepBase):
    split: Split


# --- update_profile, set_data, emit, exit -------------------------------------------

class UpdateProfileSpec(Strict):
    set: dict[str, Any] = Field(default_factory=dict)
    increment: dict[str, float] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)


class UpdateProfileStep(_StepBase):
    update_profile: UpdateProfileSpec


class SetDataStep(_StepBase):
    """Extension: write `enrollment.data.<key>` (values are Jinja2 templates)."""

    set_data: dict[str, Any]


class EmitSpec(Strict):
    event: str
    properties: dict[str, Any] = Field(default_factory=dict)
    to: str | None = None


class EmitStep(_StepBase):
    emit: EmitSpec


class ExitStep(_StepBase):
    exit: str


STEP_MODELS: dict[str, type[_StepBase]] = {
    "wait": WaitStep,
    "wait_for": WaitForStep,
    "send": SendStep,
    "branch": BranchStep,
    "split": SplitStep,
    "update_profile": UpdateProfileStep,
    "set_data": SetDataStep,
    "emit": EmitStep,
    "exit": ExitStep,
}
STEP_KINDS = tuple(STEP_MODELS)
COMMON_KEYS = ("id", "next", "name", "description")
INNER_MODELS: tuple[type[BaseModel], ...] = (WaitUntil, WaitFor, SendSpec, BranchCase, Variant,
                                              Split, UpdateProfileSpec, EmitSpec)
INNER_KEYS = {"else"} | {name for model in INNER_MODELS for name in model.model_fields}


def step_kinds_in(raw: Any) -> list[str]:
    if isinstance(raw, dict):
        return [k for k in raw if k in STEP_MODELS]
    if not isinstance(raw, _StepBase):
        return []
    return [k for k in STEP_MODELS if getattr(raw, k, None) is not None]


def _step_tag(value: Any) -> str | None:
    if isinstance(value, _StepBase):
        return "step:" + next(k for k, m in STEP_MODELS.items() if isinstance(value, m))
    kinds = step_kinds_in(value)
    return f"step:{kinds[0]}" if len(kinds) == 1 else None


Step = Annotated[
    Annotated[WaitStep, Tag("step:wait")]
    | Annotated[WaitForStep, Tag("step:wait_for")]
    | Annotated[SendStep, Tag("step:send")]
    | Annotated[BranchStep, Tag("step:branch")]
    | Annotated[SplitStep, Tag("step:split")]
    | Annotated[UpdateProfileStep, Tag("step:update_profile")]
    | Annotated[SetDataStep, Tag("step:set_data")]
    | Annotated[EmitStep, Tag("step:emit")]
    | Annotated[ExitStep, Tag("step:exit")],
    Discriminator(
        _step_tag,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one kind key",
    ),
]

AnyStep = (
    WaitStep | WaitForStep | SendStep | BranchStep | SplitStep | UpdateProfileStep
    | SetDataStep | EmitStep | ExitStep
)


def kind_of(step: AnyStep) -> str:
    return _KIND_BY_MODEL[type(step)]


_KIND_BY_MODEL = {model: kind for kind, model in STEP_MODELS.items()}

