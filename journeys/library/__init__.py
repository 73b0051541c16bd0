"""The journeys bundled with journeyman: the YAML files beside this one, `templates/`,
`policy.yaml`, `computed_traits.yaml` and `traits.yaml` (the default of every `--journeys` option).

A package only so that `importlib.resources` finds the folder the same way in a
checkout, an editable install and a wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled_library() -> Path:
    """The bundled journeys folder, inside the installed package."""
    return Path(str(files("journeys.library")))


__all__ = ["bundled_library"]
