"""Schemathesis against a real `journeyman serve` (issue 13): the live /openapi.json
describes every request body and every answer honestly enough that a schema-driven
fuzzer, with all of its checks, finds nothing: no 500, no undocumented status or content
type, no answer off its schema, no schema-valid request refused, no schema-violating
request accepted, no endpoint that ignores its key.

Run once with a write key and once with an admin key (which may read profiles). A fixed
seed keeps CI reproducible; run it by hand without `--seed` (and a longer `--max-time`)
to explore further.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.service.test_serve import Served, create_key, serve

pytestmark = pytest.mark.slow
__all__ = ["serve"]  # the fixture, imported for its use here

SEED = "20260302"


def schemathesis(url: str, key: str, cwd: Path, max_time: int) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
         "--checks", "all", "--auth", f"{key}:", "--max-time", str(max_time), "--seed", SEED,
         "--generation-database", "none", "--request-timeout", "10", "--no-color"],
        cwd=cwd, capture_output=True, text=True, timeout=max_time + 60, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(("kind", "max_time"), [("write", 25), ("admin", 15)])
def test_schemathesis_finds_nothing(tmp_path: Path, serve: Callable[..., Served], kind: str,
                                    max_time: int) -> None:
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    key = create_key(db, kind, tmp_path, admin=kind == "admin")
    server = serve(db)
    document = httpx.get(f"{server.url}/openapi.json", timeout=5).json()
    assert "/v1/track" in document["paths"]

    code, output = schemathesis(server.url, key, tmp_path, max_time)
    tail = output[-6000:]
    assert code == 0, server.why(f"schemathesis failed:\n{tail}")
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts, tail
    generated, passed = (int(n) for n in counts.groups())
    assert generated == passed, tail
    # it really ran (a slow machine makes ~500 in 15 s, a quick one thousands)
    assert generated > 200, tail
    assert "failure" not in output.rsplit("SUMMARY", 1)[-1].lower(), tail
    assert server.proc.poll() is None, server.why("the server died under the fuzzer")
