"""Install journeyman as a user does (a built wheel, not editable, in a fresh virtualenv)
and run it from another folder: everything it needs at run time (migrations, the
bundled journeys and templates, the demo events) must ship inside the packages."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.net import free_port
from tests.packaging.conftest import run as _run

pytestmark = pytest.mark.slow


def test_the_wheel_runs_from_another_folder(installed: Path, tmp_path: Path) -> None:
    where = _run(installed / "python", "-c",
                 "import engine, journeys.library as lib; print(engine.__file__); "
                 "print(lib.bundled_library())", cwd=tmp_path).stdout.split()
    assert all("site-packages" in line and str(ROOT) not in line for line in where), where
    library = Path(where[1])
    assert (library / "templates").is_dir()
    assert (library / "policy.yaml").is_file()

    done = _run(installed / "journeyman", "validate", library, cwd=tmp_path)
    assert "ok: 12 journey(s) valid" in done.stdout

    db = f"sqlite:///{tmp_path / 'jm.db'}"
    key = _run(installed / "journeyman", "keys", "create", "site", "--db", db,
               cwd=tmp_path).stdout.splitlines()[-1]
    assert key.startswith("jm_")

    port = free_port()
    server = subprocess.Popen([str(installed / "journeyman"), "serve", "--db", db, "--port",
                               str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer within 60 s"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert "/v1/track" in answer.json()["paths"]
        accepted = httpx.post(f"http://127.0.0.1:{port}/v1/track", auth=(key, ""), timeout=5,
                              json={"userId": "u1", "event": "Signed Up"})
        assert accepted.json() == {"success": True}
    finally:
        server.terminate()
        server.communicate(timeout=30)
