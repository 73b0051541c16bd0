from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/qa/test_plugin.py runs pytest sessions in process

# A store URL of the developer's shell is no test's: every command's --db defaults to it
os.environ.pop("JOURNEYMAN_DB", None)

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "journeys" / "library"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def contract_path() -> Path:
    """The language contract: shared/ beside the checkout, else the copy in docs/."""
    shared = ROOT.parent / "shared" / "journey-language.md"
    return shared if shared.is_file() else ROOT / "docs" / "journey-language.md"


@pytest.fixture
def library_dir() -> Path:
    return LIBRARY
