"""What loading gives: a `LoadedJourney` (a shape-valid journey with its parsed
conditions and source positions) and a `Library` (a whole journeys folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journeys.model import Journey, Policy
from journeys.templating import TemplateLibrary
from journeys.yamlsrc import Source, Where
from rules import Condition


@dataclass(frozen=True)
class LoadedJourney:
    """A journey that passed shape validation, with its parsed conditions and source."""

    model: Journey
    source: Source
    conditions: dict[Where, Condition]

    @property
    def id(self) -> str:
        return self.model.journey

    @property
    def file(self) -> str:
        return self.source.file


@dataclass
class Library:
    """A journeys folder: its journeys, templates and global policy."""

    folder: Path | None
    journeys: dict[str, LoadedJourney] = field(default_factory=dict)
    templates: TemplateLibrary = field(default_factory=lambda: TemplateLibrary(None))
    policy: Policy = field(default_factory=Policy)
    computed_config: dict[str, Any] | None = None
    known_traits: frozenset[str] | None = None  # traits.yaml's, when the folder has one
    known_events: dict[str, frozenset[str]] | None = None  # event -> declared properties
