"""`serve`/`worker` without `--journeys` never deploy the bundled library over a store
that runs journeys of its own (found in a QA trial, 2026-12-07): after `journeyman
apply --journeys mine --db X`, a `journeyman serve --db X` (the restart a runbook
would do, §5 of the QA contract: "serve/worker run what is deployed") applied the
bundled library instead, marked the operator's journeys `removed`, so they took no one
new, and went on serving twelve demo journeys, exit 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from journeys.library import bundled_library

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, cwd=tmp_path, check=False, timeout=120,
                          env={**os.environ, "JOURNEYMAN_DB": ""})


def _start(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A serve or worker that should be refused: killed if still running after 30 s."""
    process = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "JOURNEYMAN_DB": ""})
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"{args[0]} started instead of refusing: {err}")
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def _statuses(tmp_path: Path, db: str) -> dict[str, str]:
    listed = _run(tmp_path, "journeys", "--db", db, "--json")
    assert listed.returncode == 0, listed.stderr
    return {row["journey"]: row["status"] for row in json.loads(listed.stdout)}


@pytest.mark.parametrize("command", [("serve", "--port", "0"), ("worker",), ("demo",)])
def test_without_journeys_a_store_of_other_journeys_is_refused(tmp_path: Path,
                                                               command: tuple[str, ...]
                                                               ) -> None:
    mine = tmp_path / "mine"
    shutil.copytree(bundled_library(), mine, ignore=shutil.ignore_patterns("scenarios"))
    for path in mine.glob("*.yaml"):
        if path.name not in ("abandoned_cart.yaml", "policy.yaml", "computed_traits.yaml",
                             "traits.yaml"):
            path.unlink()
    cart = mine / "abandoned_cart.yaml"
    cart.rename(mine / "my_cart.yaml")
    text = (mine / "my_cart.yaml").read_text(encoding="utf-8")
    (mine / "my_cart.yaml").write_text(text.replace("journey: abandoned_cart",
                                                    "journey: my_cart"), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert _run(tmp_path, "migrate", "--db", db).returncode == 0
    applied = _run(tmp_path, "apply", "--journeys", str(mine), "--db", db)
    assert applied.returncode == 0, applied.stderr

    started = _start(tmp_path, *command, "--db", db)
    assert started.returncode == 1, started.stdout + started.stderr
    assert "Traceback" not in started.stderr, started.stderr
    assert ("my_cart: deployed to this store and not in the bundled library "
            "(serve and worker run it without --journeys)") in started.stderr, started.stderr
    assert "give --journeys" in started.stderr, started.stderr
    assert _statuses(tmp_path, db) == {"my_cart": "active"}  # nothing written

    # with its folder it starts (checked by `plan`: nothing to refuse)
    planned = _run(tmp_path, "plan", "--journeys", str(mine), "--db", db)
    assert planned.returncode == 0, planned.stderr


def test_the_bundled_library_restarts_on_its_own_store(tmp_path: Path) -> None:
    # the demo and quickstart path: a store the bundled library was applied to
    db = f"sqlite:///{tmp_path / 'store.db'}"
    assert _run(tmp_path, "migrate", "--db", db).returncode == 0
    applied = _run(tmp_path, "apply", "--db", db)
    assert applied.returncode == 0, applied.stderr
    with subprocess.Popen([sys.executable, "-m", "engine", "worker", "--db", db],
                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "JOURNEYMAN_DB": ""}) as started:
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                started.wait(timeout=8)  # still running: not refused
        finally:
            started.terminate()
            started.wait(timeout=30)
    assert set(_statuses(tmp_path, db).values()) == {"active"}
