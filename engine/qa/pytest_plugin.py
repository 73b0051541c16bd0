"""The pytest plugin (entry point `pytest11: journeyman`), on by itself once journeyman
is installed; `-p no:journeyman` turns it off. See docs/testing.md.

- Every `*.scenario.yaml` that pytest's paths reach is a test item (one per file); a
  failure shows the same expected-vs-actual timeline as `journeyman test`. Each carries
  the marker `journeyman_scenario` (`pytest -m "not journeyman_scenario"` leaves them
  out, `-m journeyman_scenario` runs only them).
- The `journeyman_engine` fixture is a factory:

      def test_nudge(journeyman_engine):
          eng = journeyman_engine("journeys", start="2026-03-02T09:00:00Z")
          eng.identify("u1", {"email": "u1@example.com", "consent": {"email": True}})
          eng.track("u1", "Product Viewed", {"price": 50})
          eng.advance("3d")
          assert [m.template for m in eng.sent] == ["browse_nudge"]

  It returns an `engine.testing.InMemoryEngine` on a fake clock. Without `start`, the
  clock starts at the current time, which under `freezegun.freeze_time` or
  `time_machine.travel` is the frozen time; and while one of them is active, every move
  of the engine's clock (`advance`, `advance_to`, `run_until_idle`, an event with a later
  timestamp) moves the frozen clock to the same instant, so the code under test and the
  engine agree on "now".

The module imports nothing heavy until a fixture or a scenario runs: pytest loads it in
every session of a project that has journeyman installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from engine.qa.scenarios import LibraryCache, ScenarioResult
    from engine.testing import InMemoryEngine

SUFFIXES = (".scenario.yaml", ".scenario.yml")  # as engine/qa/scenario_file.py
MARKER = "journeyman_scenario"


def pytest_configure(config: pytest.Config) -> None:
    # registered, so a project that runs with --strict-markers can select by it
    config.addinivalue_line("markers", f"{MARKER}: a journeyman *.scenario.yaml file")


# --- scenario files as test items ----------------------------------------------------------

def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIXES):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFailed(Exception):  # noqa: N818 - pytest shows the report, never this name
    """Raised by a scenario item that did not pass; carries the result to report."""

    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(result.file)
        self.result = result


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        name = self.path.name
        item = ScenarioItem.from_parent(self, name=name[:name.rindex(".scenario.")])
        item.add_marker(MARKER)
        yield item


_libraries: LibraryCache | None = None


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        global _libraries  # noqa: PLW0603 - one cache of journeys folders per session
        from engine.qa.scenarios import LibraryCache, run_file

        if _libraries is None:
            _libraries = LibraryCache()
        result = run_file(self.path, libraries=_libraries, display=self._display())
        if not result.passed:
            raise ScenarioFailed(result)

    def _display(self) -> str:
        try:
            return str(self.path.relative_to(self.config.rootpath))
        except ValueError:
            return str(self.path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ScenarioFailed):
            from engine.qa.scenario_report import report_text

            return report_text(excinfo.value.result)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"scenario {self.name}"


# --- the engine fixture ---------------------------------------------------------------------

EngineFactory = Callable[..., "InMemoryEngine"]


@pytest.fixture
def journeyman_engine() -> EngineFactory:
    """A factory: `journeyman_engine(journeys_folder, start=None, only=None,
    backend="durable")` returns an `engine.testing.InMemoryEngine` on a fake clock."""
    # Import the engine now, while the test (and any freeze_time around it) has not
    # started: modules first imported under freezegun would see its FakeDatetime.
    import engine.qa.scenarios  # noqa: F401

    def make(journeys: str | Path, start: datetime | str | None = None, *,
             only: list[str] | None = None, backend: str = "durable") -> InMemoryEngine:
        from engine.core.times import parse_timestamp
        from engine.qa.scenarios import engine_for, load_journeys

        if start is None:
            when = frozen_now() or datetime.now(UTC)
        else:
            parsed = parse_timestamp(start)
            if parsed is None:
                raise ValueError(f"start={start!r}: give a datetime or an ISO 8601 time")
            when = parsed
        eng = engine_for(load_journeys(Path(journeys)), when, only, backend)
        eng.clock.watch(move_frozen_clock)
        return eng

    return make


def frozen_now() -> datetime | None:
    """The frozen time of an active freezegun or time-machine clock, else None."""
    if _freezegun_factories():
        return datetime.now(UTC)  # freezegun's datetime, patched in this module too
    if _time_machine_travellers():
        return datetime.now(UTC)
    return None


def move_frozen_clock(now: datetime) -> None:
    """Move an active freezegun or time-machine clock to `now` (the engine's clock moved)."""
    factories = _freezegun_factories()
    if factories:
        factories[-1].move_to(now)
    travellers = _time_machine_travellers()
    if travellers:
        travellers[-1].move_to(now)


def _freezegun_factories() -> list[Any]:
    api = sys.modules.get("freezegun.api")
    return list(getattr(api, "freeze_factories", None) or [])


def _time_machine_travellers() -> list[Any]:
    module = sys.modules.get("time_machine")
    # `traveller_stack` since time-machine 3; `coordinates_stack` before
    stack = getattr(module, "traveller_stack", None) or getattr(module, "coordinates_stack", None)
    return list(stack or [])


__all__ = ["ScenarioFile", "ScenarioItem", "frozen_now", "journeyman_engine",
           "move_frozen_clock"]
