"""`plan`, `apply` and `journeys` on a SQLite `--db` that is not there (a typo): exit 1
naming the file, nothing created; `journeyman migrate` is how a new store is made, and
`apply` deploys to it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from engine.cli import app

runner = CliRunner()


def test_plan_and_apply_at_a_typo_create_no_database(tmp_path: Path) -> None:
    """A QA trial: `plan --db sqlite:///typo.db` showed every journey `new` and `apply`
    said "Applied: 12 new", both exit 0, leaving a new database (and its `-turn` file)
    at the typo while the real one stayed on the old versions."""
    typo = tmp_path / "typo.db"
    url = f"sqlite:///{typo}"
    expected = (f"no SQLite database at {typo} (--db or $JOURNEYMAN_DB); "
                "`journeyman migrate --db URL` makes a new one")
    for command in ("plan", "apply"):
        done = runner.invoke(app, [command, "--db", url])
        assert done.exit_code == 1, (command, done.output)
        assert done.stderr == expected + "\n", command
        assert done.stdout == "", command
        as_json = runner.invoke(app, [command, "--db", url, "--json"])
        assert as_json.exit_code == 1, (command, as_json.output)
        # qa-contract §5: with --json the document, its errors saying why
        assert json.loads(as_json.stdout) == {"journeys": {}, "errors": [expected]}
        assert list(tmp_path.iterdir()) == [], command
    # the deployed journeys' commands read or change a store: no file made either
    for args in (["journeys"], ["journeys", "list"], ["journeys", "pause", "welcome"],
                 ["journeys", "resume", "welcome"], ["journeys", "archive", "welcome"]):
        done = runner.invoke(app, [*args, "--db", url])
        assert done.exit_code == 1, (args, done.output)
        assert done.stderr == f"no SQLite database at {typo} (--db or $JOURNEYMAN_DB)\n", args
        assert list(tmp_path.iterdir()) == [], args


def test_a_new_store_is_made_by_migrate_then_applied_to(tmp_path: Path) -> None:
    """A fresh deployment: `journeyman migrate` makes the database (as the deploy
    recipes do before anything starts), then `plan` and `apply` work on it."""
    db = tmp_path / "new.db"
    url = f"sqlite:///{db}"
    made = runner.invoke(app, ["migrate", "--db", url])
    assert made.exit_code == 0, made.output
    shown = runner.invoke(app, ["plan", "--db", url, "--json"])
    assert shown.exit_code == 0, shown.output
    plan = json.loads(shown.stdout)
    assert plan["errors"] == []
    assert plan["journeys"]["welcome"]["status"] == "new"
    applied = runner.invoke(app, ["apply", "--db", url])
    assert applied.exit_code == 0, applied.output
    assert "Applied: " in applied.stdout
    listed = runner.invoke(app, ["journeys", "--db", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert "welcome" in [row["journey"] for row in json.loads(listed.stdout)]
