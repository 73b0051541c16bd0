"""The journeys bundled with journeyman: the YAML files beside this one, `templates/`,
`policy.yaml`, `computed_traits.yaml` and `traits.yaml` (the default of every `--journeys` option).

A package only so that `importlib.resources` finds the folder the same way in a
checkout, an editable install and a wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# What names the bundled journeys wherever journeyman is installed: a scenario file's
# `journeys: journeyman:bundled`, `InMemoryEngine.from_folder("journeyman:bundled")`,
# the pytest fixture (the commands' `--journeys` leaves them out to mean them). A path of
# the installed package differs on every machine and virtualenv; this does not.
BUNDLED = "journeyman:bundled"


def bundled_library() -> Path:
    """The bundled journeys folder, inside the installed package."""
    return Path(str(files("journeys.library")))


def journeys_path(name: str | Path) -> Path:
    """The folder (or journey file) `name` gives: `journeyman:bundled` is the bundled
    journeys' folder; anything else is a path, as given."""
    return bundled_library() if str(name).strip() == BUNDLED else Path(name)


__all__ = ["BUNDLED", "bundled_library", "journeys_path"]
