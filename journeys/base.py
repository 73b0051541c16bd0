"""The one base of every pydantic model of the language (journeys, steps, policy,
templates): unknown keys are errors (with "did you mean"), models are frozen, and a
key may be written by its alias (`else`, `from`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
