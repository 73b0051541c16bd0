"""The schemas of a journeys folder's data files: `computed_traits.yaml` (the
thresholds and lifecycle stages behind `profile.computed.*`, read by
engine/core/profiles.py) and `traits.yaml` (the profile traits the folder knows, which
templates and conditions are checked against).

Every part is optional and every band has its default, so a partial override
(`rfm: {recency: {short: 14}}`) keeps the rest; unknown keys are errors with "did you
mean"; a lifecycle stage's condition may only read computed traits that exist.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from journeys.base import Strict

# What `profile.computed.<name>` can be: the stored traits and those derived as of now
# (kept in step with engine/core/profiles.py by tests/language/test_computed_schema.py).
COMPUTED_TRAITS = (
    "orders_count", "total_spent", "first_order_at", "last_order_at", "referrals_count",
    "last_nps_score", "visits", "identified", "average_order_value", "last_seen_at",
    "days_since_last_order", "rfm_recency", "rfm_recency_name", "rfm_frequency",
    "rfm_frequency_name", "rfm_monetary", "rfm_monetary_name", "birthday_today",
    "lifecycle_stage",
)


class RecencyBands(Strict):
    """Days since the last order: <= short is short, <= medium is medium, else long."""

    short: int = Field(default=30, ge=0)
    medium: int = Field(default=90, ge=0)


class FrequencyBands(Strict):
    """Orders: >= often is often, >= regular is regular, else casual."""

    often: int = Field(default=5, ge=0)
    regular: int = Field(default=2, ge=0)


class MonetaryBands(Strict):
    """Total spent: >= spender is spender, >= average is average, else saver."""

    spender: float = Field(default=500, ge=0)
    average: float = Field(default=100, ge=0)


class Rfm(Strict):
    recency: RecencyBands = Field(default_factory=RecencyBands)
    frequency: FrequencyBands = Field(default_factory=FrequencyBands)
    monetary: MonetaryBands = Field(default_factory=MonetaryBands)


class LifecycleStage(Strict):
    stage: str
    when: Any = None  # a condition, parsed with positions by the loader


# Events the computed traits always read, whatever computed_traits.yaml says
# (engine/core/profiles.py): a visit, and an NPS score.
VISIT_EVENT = "Session Started"
NPS_EVENT = "NPS Submitted"


class ComputedTraitsConfig(Strict):
    """`computed_traits.yaml`."""

    order_events: list[str] = Field(default_factory=lambda: ["Order Completed"])
    referral_events: list[str] = Field(default_factory=lambda: ["Referral Reward Earned"])
    rfm: Rfm = Field(default_factory=Rfm)
    lifecycle_stages: list[LifecycleStage] | None = None  # None: the built-in five stages

    def as_config(self) -> dict[str, Any]:
        """The dict engine.core.profiles.ComputedTraits takes (every band filled in)."""
        config = self.model_dump(exclude_none=True)
        if self.lifecycle_stages is not None:
            config["lifecycle_stages"] = [{"stage": s.stage, "when": s.when or {}}
                                          for s in self.lifecycle_stages]
        return config


class TraitSpec(Strict):
    type: Literal["string", "number", "boolean", "date", "object", "list"] | None = None
    description: str | None = None


class EventSpec(Strict):
    description: str | None = None
    properties: dict[str, TraitSpec | None] = Field(default_factory=dict)


class TraitsFile(Strict):
    """`traits.yaml`: `traits: {name: {type: ..., description: ...}}` (the spec may be
    empty). When the file exists, `profile.traits.<name>` in templates and conditions
    must name one of them (nested keys such as `consent.email` are free). `events:`
    optionally declares events' properties: a journey entered by a declared event may
    read only those as `event.properties.<name>`."""

    traits: dict[str, TraitSpec | None] = Field(default_factory=dict)
    events: dict[str, EventSpec] = Field(default_factory=dict)

    def event_properties(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(spec.properties) for name, spec in self.events.items()}


SCHEMA_MODELS = (ComputedTraitsConfig, Rfm, RecencyBands, FrequencyBands, MonetaryBands,
                 LifecycleStage, TraitSpec, EventSpec, TraitsFile)
