"""`journeyman users create` and `users list`: one real process, the rest in process
(Typer's runner) to stay fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from engine.api.dashboard.auth import verify_password
from engine.cli import app
from engine.store import SqlStore


def process(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "users", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd, check=False, timeout=60)


class Done:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


def users(*args: str, stdin: str = "", cwd: Path) -> Done:
    result = CliRunner().invoke(app, ["users", *args], input=stdin)
    return Done(result.exit_code, result.stdout, result.stderr)


def test_users_create_hashes_the_password_and_refuses_bad_input(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jm.db'}"
    made = process("create", "ann", "--role", "editor", "--password-stdin", "--db", db,
                 stdin="long enough pw\n", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "created editor 'ann'" in made.stderr
    again = users("create", "ann", "--password-stdin", "--db", db, stdin="long enough pw\n",
                  cwd=tmp_path)
    assert again.returncode == 1
    assert "exists" in again.stderr
    short = users("create", "bob", "--password-stdin", "--db", db, stdin="short\n",
                  cwd=tmp_path)
    assert short.returncode == 1
    assert "at least 8" in short.stderr
    role = users("create", "bob", "--role", "admin", "--password-stdin", "--db", db,
                 stdin="long enough pw\n", cwd=tmp_path)
    assert role.returncode == 2
    listed = users("list", "--db", db, cwd=tmp_path)
    assert "ann" in listed.stdout
    assert "bob" not in listed.stdout
    store = SqlStore(db)
    try:
        ann = store.get_user("ann")
    finally:
        store.close()
    assert ann is not None
    assert ann.role == "editor"
    assert verify_password("long enough pw", ann.password_hash)
    assert "long enough pw" not in ann.password_hash
