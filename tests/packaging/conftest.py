"""One fresh virtualenv with the built wheel (not editable) for the whole session, shared
by the packaging tests: building and installing it is the slow part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# What a user's project adds to test journeys with the plugin (tests/packaging/test_plugin_wheel.py).
USER_TEST_DEPS = ("pytest>=8", "freezegun>=1.4", "time-machine>=2.10")


def run(*args: str | Path, cwd: Path, timeout: float = 600, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)
    if check:
        assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this checkout installed in it (and
    pytest, freezegun and time-machine, as a user's project has them)."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
        "-w", tmp / "dist", ROOT, cwd=tmp)
    [wheel] = (tmp / "dist").glob("journeyman-*.whl")
    run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    run(tmp / "venv" / "bin" / "pip", "install", "-q", wheel, *USER_TEST_DEPS, cwd=tmp)
    return tmp / "venv" / "bin"
