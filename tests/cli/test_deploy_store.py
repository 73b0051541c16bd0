"""`plan`, `apply` and `journeys` on a SQLite `--db` that is not there (a typo): exit 1
naming the file, nothing created; `journeyman migrate` is how a new store is made, and
`apply` deploys to it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.store.conftest import pg_new_database, pg_server

__all__ = ["pg_new_database", "pg_server"]

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


def test_commands_that_read_a_store_never_upgrade_its_schema(tmp_path: Path) -> None:
    """A newer journeyman's `outbox`, `why` or `plan` on an operator's laptop upgraded
    the production database under its running workers (which then stop claiming work,
    engine/runtime/schema_gate.py): an older schema is an error naming `migrate`, and
    the schema stays where it was."""
    import sqlalchemy

    from engine.store import SqlStore
    from engine.store.sql import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = SqlStore(url, create=True)
    try:
        with store.sql_engine.begin() as conn:  # a database of the version before
            migrate.downgrade(conn, "-1")
            older = migrate.current(conn)
    finally:
        store.close()
    assert older != migrate.head()
    expected = (f"the database at {url} is at schema revision {older}, this journeyman "
                f"needs {migrate.head()}: run `journeyman migrate --db URL` first (this "
                "command does not change the schema: workers of the version before stop "
                "claiming work once it changes)")
    for args in (["outbox"], ["why", "ana"], ["failures"], ["plan"], ["apply"],
                 ["journeys"]):
        done = runner.invoke(app, [*args, "--db", url])
        assert done.exit_code == 1, (args, done.output)
        assert done.stderr == expected + "\n", args
    as_json = runner.invoke(app, ["plan", "--db", url, "--json"])
    assert as_json.exit_code == 1, as_json.output
    assert json.loads(as_json.stdout) == {"journeys": {}, "errors": [expected]}
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert migrate.current(conn) == older  # nothing upgraded it
    finally:
        engine.dispose()
    made = runner.invoke(app, ["migrate", "--db", url])
    assert made.exit_code == 0, made.output
    assert runner.invoke(app, ["outbox", "--db", url]).exit_code == 0


def test_commands_that_set_a_store_up_make_a_new_schema_but_never_upgrade_one(
        tmp_path: Path) -> None:
    """`keys create`, `users create` and `suppressions add` make the schema of a new
    database, but an older one is the same error as `outbox`'s: a newer journeyman's
    `keys create` on an operator's laptop upgraded the production database under its
    running workers, which then stop claiming work (engine/runtime/schema_gate.py)."""
    import sqlalchemy

    from engine.store import SqlStore
    from engine.store.sql import migrate

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = SqlStore(url, create=True)
    try:
        with store.sql_engine.begin() as conn:  # a database of the version before
            migrate.downgrade(conn, "-1")
            older = migrate.current(conn)
    finally:
        store.close()
    expected = (f"the database at {url} is at schema revision {older}, this journeyman "
                f"needs {migrate.head()}: run `journeyman migrate --db URL` first (this "
                "command does not change the schema: workers of the version before stop "
                "claiming work once it changes)")
    for args, given in ((["keys", "create", "web"], None),
                        (["users", "create", "ana", "--password-stdin"], "a-long-password\n"),
                        (["suppressions", "add", "ana@example.com"], None)):
        done = runner.invoke(app, [*args, "--db", url], input=given)
        assert done.exit_code == 1, (args, done.output)
        assert done.stderr == expected + "\n", args
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            assert migrate.current(conn) == older  # nothing upgraded it
    finally:
        engine.dispose()
    new = f"sqlite:///{tmp_path / 'new.db'}"  # a new database: its schema is made
    made = runner.invoke(app, ["keys", "create", "web", "--db", new])
    assert made.exit_code == 0, made.output
    assert runner.invoke(app, ["outbox", "--db", new]).exit_code == 0


def test_a_database_without_a_schema_is_told_as_new_not_as_an_older_version(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """An empty PostgreSQL database (or an empty SQLite file) named to `outbox` or
    `plan`: it said `at schema revision none ... workers of the version before stop
    claiming work`, as if an older journeyman ran on it; it is a new database, which
    `journeyman migrate` makes a store of."""
    empty = tmp_path / "empty.db"
    empty.touch()
    urls = [f"sqlite:///{empty}"]
    if os.environ.get("JOURNEYMAN_TEST_PG"):
        urls.append(request.getfixturevalue("pg_new_database")())
    for url in urls:
        said = (f"the database at {url} has no journeyman schema (a new database): "
                "`journeyman migrate --db URL` makes a new store")
        for args in (["outbox"], ["plan"], ["keys", "list"]):
            done = runner.invoke(app, [*args, "--db", url])
            assert done.exit_code == 1, (url, args, done.output)
            assert done.stderr == said + "\n", (url, args)
        as_json = runner.invoke(app, ["plan", "--db", url, "--json"])
        assert json.loads(as_json.stdout) == {"journeys": {}, "errors": [said]}


def test_plan_of_a_change_without_a_higher_version_does_not_read_as_a_version_change(
        tmp_path: Path) -> None:
    """A QA trial changed a wait and forgot the version: the plan said `~ abandoned_cart:
    changed, v1 -> v1` (the error only on stderr), and a folder older than the store's
    `v2 -> v1`, which reads as a rollback."""
    import shutil

    from journeys.library import bundled_library

    folder = tmp_path / "journeys"
    shutil.copytree(bundled_library(), folder, ignore=shutil.ignore_patterns("scenarios"))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert runner.invoke(app, ["migrate", "--db", url]).exit_code == 0
    assert runner.invoke(app, ["apply", "--journeys", str(folder), "--db", url]).exit_code == 0
    cart = folder / "abandoned_cart.yaml"
    cart.write_text(cart.read_text().replace("    wait: 1h\n", "    wait: 3h\n"))
    done = runner.invoke(app, ["plan", "--journeys", str(folder), "--db", url])
    assert done.exit_code == 1, done.output
    assert ("~ abandoned_cart: changed, v1 deployed, the folder's is v1: refused "
            "(a changed journey needs a higher version)") in done.stdout.splitlines()
    assert "v1 -> v1" not in done.stdout
    higher = cart.read_text().replace("version: 1\n", "version: 2\n", 1)
    cart.write_text(higher)
    assert runner.invoke(app, ["apply", "--journeys", str(folder), "--db", url]).exit_code == 0
    cart.write_text(higher.replace("version: 2\n", "version: 1\n", 1)
                    .replace("    wait: 3h\n", "    wait: 2h\n"))
    older = runner.invoke(app, ["plan", "--journeys", str(folder), "--db", url])
    assert older.exit_code == 1, older.output
    assert ("~ abandoned_cart: changed, v2 deployed, the folder's is v1: refused "
            "(a changed journey needs a higher version)") in older.stdout.splitlines()
    # a proper change still reads as before
    cart.write_text(higher.replace("version: 2\n", "version: 3\n", 1))
    fine = runner.invoke(app, ["plan", "--journeys", str(folder), "--db", url])
    assert fine.exit_code == 0, fine.output
    assert "~ abandoned_cart: changed, v2 -> v3" in fine.stdout.splitlines()


def test_the_commands_look_for_the_file_once(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan`, `apply` and `journeys` look for a SQLite `--db` once, there or not (they
    looked, then `existing_store` looked again: two answers that could differ, a file
    made or removed between them)."""
    from engine.cli import common

    looks: list[str] = []
    real = common._missing_sqlite_file

    def counted(db: str) -> object:
        looks.append(db)
        return real(db)

    monkeypatch.setattr(common, "_missing_sqlite_file", counted)
    typo = f"sqlite:///{tmp_path / 'typo.db'}"
    made = f"sqlite:///{tmp_path / 'made.db'}"
    assert runner.invoke(app, ["migrate", "--db", made]).exit_code == 0
    for args in (["plan"], ["plan", "--json"], ["apply"], ["journeys"]):
        for url, code in ((typo, 1), (made, 0)):
            looks.clear()
            done = runner.invoke(app, [*args, "--db", url])
            assert done.exit_code == code, (args, url, done.output)
            assert looks == [url], (args, url)
