"""The deployment files (deploy/) and docs/deploy.md agree with each other and with the
command line: every file is shown in the doc as it is, every `journeyman` command they
run parses, and compose passes PostgreSQL the settings of journeyman.conf."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
DOC = (ROOT / "docs" / "deploy.md").read_text()
COMPOSE = YAML(typ="safe").load((DEPLOY / "docker-compose.yml").read_text())
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def _systemd_commands() -> list[list[str]]:
    commands = []
    for unit in UNITS:
        text = unit.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0].endswith("/journeyman"), unit
                commands.append(argv[1:])
    return commands


def _compose_commands() -> list[list[str]]:
    return [[str(a) for a in service["command"]] for name, service in COMPOSE["services"].items()
            if name != "db"]


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
    assert services["api"]["command"][0] == "serve"
    assert services["worker"]["command"][0] == "worker"
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}}
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["db"]["image"] == "postgres:15"


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
