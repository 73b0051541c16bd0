"""The deployment files (deploy/) and docs/deploy.md agree with each other and with the
command line: every file is shown in the doc as it is, every `journeyman` command they
run parses, both recipes migrate once before an API alone (`serve --no-worker`) and the
workers, compose passes PostgreSQL the settings of journeyman.conf, and every metric
the doc names exists."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import ROOT
from tests.store.conftest import pg_database, pg_server

__all__ = ["pg_database", "pg_server"]  # fixtures

DEPLOY = ROOT / "deploy"
DOC = (ROOT / "docs" / "deploy.md").read_text()
COMPOSE = YAML(typ="safe").load((DEPLOY / "docker-compose.yml").read_text())
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _unit_commands(unit: Path) -> list[list[str]]:
    """The `journeyman` argv of each ExecStart (instance and host specifiers filled in)."""
    commands = []
    text = unit.read_text().replace("\\\n", " ").replace("%i", "9101").replace("%H", "host")
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
            assert argv[0].endswith("/journeyman"), unit
            commands.append(argv[1:])
    return commands


def _systemd_commands() -> list[list[str]]:
    return [argv for unit in UNITS for argv in _unit_commands(unit)]


def _journeyman_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in COMPOSE["services"].items()
            if service.get("image") == "journeyman:latest"}


def _compose_commands() -> list[list[str]]:
    return [[str(a) for a in service["command"]] for service in _journeyman_services().values()]


def _parses(argv: list[str]) -> None:
    """`journeyman <argv> --help` exits 0 only if every option before --help exists."""
    # Values that only exist on the target host or come from the environment.
    argv = [re.sub(r"\$\{[A-Z_]+(:-[^}]*)?\}", "x", a) for a in argv]
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, (argv, result.output)


def test_every_deploy_file_is_shown_in_the_doc_as_it_is() -> None:
    # What we ship; deploy/.env and deploy/journeys are the operator's own.
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p.name != ".env"
             and "journeys" not in p.relative_to(DEPLOY).parts]
    assert len(files) >= 9
    for path in files:
        assert path.read_text().rstrip("\n") in DOC, f"{path} differs from docs/deploy.md"


@pytest.mark.parametrize("argv", _compose_commands() + _systemd_commands(),
                         ids=lambda argv: " ".join(argv[:1]))
def test_every_command_the_deploy_files_run_parses(argv: list[str]) -> None:
    _parses(argv)


def test_a_wrong_option_would_be_caught() -> None:
    result = CliRunner().invoke(app, ["worker", "--no-such-option", "x", "--help"])
    assert result.exit_code != 0


def test_compose_runs_the_api_workers_a_migration_first_and_postgres() -> None:
    services = COMPOSE["services"]
    assert set(_journeyman_services()) == {"migrate", "api", "worker"}
    assert services["migrate"]["command"][0] == "migrate"
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["api"]["command"][:2] == ["serve", "--no-worker"]
    assert services["worker"]["command"][0] == "worker"
    for name in ("api", "worker", "tune"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}}
    assert services["db"]["image"] == "postgres:15"
    # The queue tables' settings, applied after every migration.
    assert services["tune"]["command"][-1] == "/queue-tables.sql"
    assert services["tune"]["volumes"] == ["./postgresql/queue-tables.sql:/queue-tables.sql:ro"]


def test_compose_checks_readiness_and_serves_the_workers_metrics() -> None:
    services = COMPOSE["services"]
    worker = [str(a) for a in services["worker"]["command"]]
    port = worker[worker.index("--http-port") + 1]
    assert "http://127.0.0.1:8000/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(services["worker"]["healthcheck"]["test"])
    for name in ("api", "worker"):
        argv = [str(a) for a in services[name]["command"]]
        assert argv[argv.index("--log-format") + 1] == "json"


def test_systemd_migrates_once_before_the_api_alone_and_the_workers() -> None:
    units = {unit.name: unit.read_text() for unit in UNITS}
    [migrate] = _unit_commands(DEPLOY / "systemd" / "journeyman-migrate.service")
    assert migrate[0] == "migrate"
    assert float(migrate[migrate.index("--wait") + 1]) >= 60  # PostgreSQL may boot after it
    assert "Type=oneshot" in units["journeyman-migrate.service"]
    [api] = _unit_commands(DEPLOY / "systemd" / "journeyman-api.service")
    assert api[:2] == ["serve", "--no-worker"]
    [worker] = _unit_commands(DEPLOY / "systemd" / "journeyman-worker@.service")
    assert worker[0] == "worker"
    assert worker[worker.index("--http-port") + 1] == "9101"  # the instance name
    for name in ("journeyman-api.service", "journeyman-worker@.service"):
        assert "Requires=journeyman-migrate.service" in units[name]
        assert "After=journeyman-migrate.service" in units[name]


def test_the_doc_has_no_open_lead_lines_and_names_only_real_metrics() -> None:
    from engine.runtime.metrics import Metrics
    from engine.store import SqlStore

    assert "LEAD" not in DOC
    store = SqlStore("sqlite:///:memory:", create=True)
    try:
        families = list(Metrics(store).registry.collect())
    finally:
        store.close()
    names = {f.name for f in families}
    exposed = set(names)
    for family in families:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        exposed.update(family.name + s for s in suffixes.get(family.type, []))
    watching = DOC[DOC.index("## Watching it"):DOC.index("## Past one PostgreSQL")]
    named = set(re.findall(r"journeyman_[a-z_]+", watching))
    assert named - exposed == set()
    # ...and every metric is in the doc.
    assert {n for n in names if not any(m.startswith(n) for m in named)} == set()


def test_compose_gives_postgres_the_settings_of_journeyman_conf() -> None:
    conf = {}
    for raw in (DEPLOY / "postgresql" / "journeyman.conf").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, value = line.partition("=")
            conf[name.strip()] = value.strip().strip("'")
    flags = COMPOSE["services"]["db"]["command"][1:]
    assert flags[::2] == ["-c"] * len(conf)
    assert dict(flag.split("=", 1) for flag in flags[1::2]) == conf


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    journeyman = str(Path(sys.executable).with_name("journeyman"))  # the units need a real path
    for unit in (DEPLOY / "systemd").iterdir():
        text = unit.read_text().replace("/opt/journeyman/venv/bin/journeyman", journeyman)
        (tmp_path / unit.name.replace("@.service", "@1.service")).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if str(tmp_path) in line or "bad" in line.lower()]
    assert problems == [], problems


@pytest.mark.postgres
def test_the_sql_the_doc_gives_operators_runs_on_the_schema(pg_database: str) -> None:
    """queue-tables.sql and the retention statements name real tables and columns (the
    retention statements run in a transaction rolled back: the database is shared)."""
    import psycopg

    retention = DOC[DOC.index("### Retention"):DOC.index("## PostgreSQL settings")]
    block = retention.split("```sql\n", 1)[1].split("```", 1)[0]
    statements = "\n".join(line for line in block.splitlines()
                           if line.strip() not in ("BEGIN;", "COMMIT;"))
    # decisions and outbox rows: events have policy.yaml's retention.events (e7cc97f)
    assert statements.count("DELETE FROM") == 2
    url = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute((DEPLOY / "postgresql" / "queue-tables.sql").read_text())
        conn.commit()
        conn.execute(statements)
        conn.rollback()


def test_the_upgrade_backs_up_first_and_says_how_to_go_back(tmp_path: Path) -> None:
    """An old version at an upgraded schema says "run that version, or restore the
    backup taken before it" (engine/store/sql/migrate.py), but the upgrade's steps took
    no backup and named no way back. The way back the doc gives runs: the new version's
    `alembic downgrade` from its checkout, to the revision the old version names."""
    import os

    from engine.store.sql import migrate

    upgrades = DOC[DOC.index("Upgrades: stop the workers"):DOC.index("## docker compose")]
    assert upgrades.index("pg_dump -Fc") < upgrades.index("run `journeyman migrate`")
    assert "pg_restore --clean" in upgrades
    command = re.search(r"`JOURNEYMAN_DB=(\S+)\s+(\S+/alembic) downgrade (\d{4})`", upgrades)
    assert command is not None, upgrades
    assert command.group(2) == "/opt/journeyman/venv/bin/alembic"  # the systemd recipe's venv
    assert f"its newest is {command.group(3)}" in upgrades
    # ...and it works, in a checkout, on a store of this version
    db = f"sqlite:///{tmp_path / 'j.db'}"
    done = CliRunner().invoke(app, ["migrate", "--db", db])
    assert done.exit_code == 0, done.output
    before = f"{int(migrate.head()) - 1:04d}"
    alembic = str(Path(sys.executable).with_name("alembic"))
    down = subprocess.run([alembic, "downgrade", before], cwd=ROOT, capture_output=True,
                          text=True, check=False, env={**os.environ, "JOURNEYMAN_DB": db})
    assert down.returncode == 0, down.stderr
    current = subprocess.run([alembic, "current"], cwd=ROOT, capture_output=True, text=True,
                             check=False, env={**os.environ, "JOURNEYMAN_DB": db})
    assert current.stdout.split()[0] == before, current.stdout + current.stderr
