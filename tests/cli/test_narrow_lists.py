"""`keys list`, `users list` and `suppressions list` in a terminal of 80 columns, or
piped (rich assumes 80 there): the table cut the key's scopes and times to "…"
(`track,identi…`, `2026-12-07T2…`); like `outbox`, a list too wide for the terminal
prints one block per row, every value whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ADDRESS = "a.rather.long.mailbox.name.for.testing@subdomain.example.com"


def cli(db: str, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "engine", *args, "--db", db], input=stdin,
                          capture_output=True, text=True, env=env, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_lists_too_wide_for_80_columns_keep_every_value_whole(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    cli(db, "keys", "create", "website-production")
    cli(db, "suppressions", "add", ADDRESS, "--reason", "complaint")
    cli(db, "users", "create", "marketing-lead", "--password-stdin",
        stdin="a long enough password\n")
    keys = cli(db, "keys", "list")
    assert keys.splitlines()[0] == "website-production"
    assert "  scopes   track,identify,alias,consent" in keys
    suppressed = cli(db, "suppressions", "list")
    assert ADDRESS in suppressed
    users = cli(db, "users", "list")
    assert "marketing-lead" in users
    for text in (keys, suppressed, users):
        assert "…" not in text, text
        assert all(len(line) <= 80 for line in text.splitlines()), text
