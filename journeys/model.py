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
from journeys.link_hosts import check_host_pattern
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
    # A dotted path to the goal's worth, summed by attribution (docs/engagement.md):
    # `event.properties.revenue`.
    value: str | None = Field(default=None, pattern=r"^(event|profile)(\.[A-Za-z0-9_$-]+)+$")


BUILTIN_KPIS = ("sends", "delivered", "open_rate", "ctr", "click_to_open", "conversion",
                "attributable_revenue", "opt_out_rate", "bounce_rate", "completion_rate",
                "median_time_to_goal")


# The counts of a journey's report (engine/runtime/kpis.py), which custom KPIs divide.
KPI_COUNTS = ("entered", "completed", "drop_offs", "sends", "delivered", "skipped",
              "suppressed", "failed", "opened", "opens", "clicked", "clicks", "scanner_clicks",
              "opt_outs", "bounces", "soft_bounces", "complaints", "conversions",
              "attributed_conversions", "revenue", "attributable_revenue")


class CustomKpi(Strict):
    """A ratio of two counts of the journey's report (docs/engagement.md): for example
    `{name: drop_offs_per_buyer, ratio: [drop_offs, conversions]}`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    ratio: tuple[str, str]
    description: str | None = None

    @field_validator("ratio")
    @classmethod
    def _known_counts(cls, value: tuple[str, str]) -> tuple[str, str]:
        unknown = [name for name in value if name not in KPI_COUNTS]
        if unknown:
            raise ValueError(f"unknown count {unknown[0]!r}: use one of {', '.join(KPI_COUNTS)}")
        return value


def _kpi_tag(value: Any) -> str:
    return "kpi:custom" if isinstance(value, dict | CustomKpi) else "kpi:builtin"


def _builtin_kpi(value: Any) -> str:
    if value not in BUILTIN_KPIS:
        raise ValueError(f"unknown KPI {value!r}: the built-ins are {', '.join(BUILTIN_KPIS)}; "
                         "a custom one is {name: ..., ratio: [count, count]}")
    return str(value)


Kpi = Annotated[
    Annotated[str, BeforeValidator(_builtin_kpi), Tag("kpi:builtin")]
    | Annotated[CustomKpi, Tag("kpi:custom")],
    Discriminator(_kpi_tag),
]


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


class Tracking(Strict):
    """Click and open tracking (docs/engagement.md); on by default for email."""

    clicks: bool = True
    opens: bool = True
    # A click this soon after delivery is a link scanner's prefetch, not a person's
    # (default 5 s; false: no timing rule, only the User-Agent and HEAD rules).
    scanner_window: Literal[False] | Duration | None = Field(default=None,
                                                             union_mode="left_to_right")
    # Hosts a link built from data may be tracked to, besides those the template writes
    # (`*.shop.example`: its subdomains); any other such link is sent untracked
    # (journeys/template_links.py: an open redirect otherwise).
    hosts: list[str] = Field(default_factory=list)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [check_host_pattern(host) for host in value]


class PolicyOverride(Strict):
    """A journey's own `policy:`; `quiet_hours: false` turns quiet hours off for it."""

    quiet_hours: QuietHours | Literal[False] | None = None
    frequency_caps: dict[str, Cap] | None = None
    ignore_frequency_caps: bool = False
    consent_required: list[str] | None = None
    on_cap: OnCap | None = None  # this journey's sends over a cap: delay or drop
    tracking: Tracking | None = None


class Migrate(Strict):
    """How a new version takes over the enrollments of an older one (`plan`/`apply`):
    `steps` maps an old step id to a new one; steps kept under the same id move to
    themselves; enrollments of other versions finish where they are."""

    from_version: int = Field(ge=1)
    steps: dict[str, str] = Field(default_factory=dict)


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
    migrate: Migrate | None = None
    priority: int = 0  # when sends compete for a frequency cap, the higher one goes first
    kpis: list[Kpi] = Field(default_factory=list)
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


# Marketing channels: a send on one needs the person's consent unless a policy says
# otherwise (`consent_required: []` says so). A journeys folder without a `policy.yaml`
# runs under the bundled one (journeys/loader.py).
MARKETING_CHANNELS = ("email", "sms", "push")


class Retention(Strict):
    """How long the store keeps what it holds about people (enforced by the worker)."""

    events: Duration | None = None  # the event log; None: kept until the person is erased


class Policy(Strict):
    """The global `policy.yaml`."""

    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    frequency_caps: dict[str, Cap] = Field(default_factory=dict)
    consent_required: list[str] = Field(default_factory=lambda: list(MARKETING_CHANNELS))
    # Country calling codes SMS may go to (e.g. ["34", "1"]); empty: any. Keeps a leaked
    # or abused key from pumping texts to premium numbers abroad.
    sms_country_codes: list[str] = Field(default_factory=list)
    # How long the store keeps what it holds, e.g. {events: 400d} (default: forever).
    retention: Retention = Field(default_factory=Retention)
    tracking: Tracking = Field(default_factory=Tracking)

    @field_validator("sms_country_codes")
    @classmethod
    def _codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if not re.fullmatch(r"[1-9][0-9]{0,2}", code):
                raise ValueError(f"country code {code!r}: 1 to 3 digits without '+', like '34'")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


def check_zone(value: str) -> str:
    """An IANA time zone name, like Europe/Madrid (with "did you mean")."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    from rules import did_you_mean

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}"
                         + did_you_mean(value, available_timezones())) from None
    return value


def check_hhmm(value: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"bad time {value!r}: use 24-hour HH:MM, like 09:00")
    return value


def language_keys() -> set[str]:
    """Every key the language knows, for "did you mean" suggestions."""
    keys: set[str] = set()
    models: list[type[BaseModel]] = [
        Journey, Entry, SegmentSpec, ReEntryAfter, ExitWhen, Goal, QuietHours, Cap,
        PolicyOverride, Policy, Retention, Migrate, CustomKpi, Tracking,
        *STEP_MODELS.values(),
    ]
    for model in models:
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
    keys.update(INNER_KEYS)
    from journeys.computed import SCHEMA_MODELS  # the folder's data files

    for data_model in SCHEMA_MODELS:
        keys.update(info.alias or name for name, info in data_model.model_fields.items())
    return keys
