"""An operator's configuration mistakes are one clear line and an exit code, never a
traceback (found in an operator's trial, 2026-12-07): a `--db` or `JOURNEYMAN_DB` that
is not a URL at all (a forgotten scheme) was SQLAlchemy's `ArgumentError` traceback
from every command that opens the store, and a port out of range (`--port -5`,
`--http-port 99999`, a typo in a systemd instance name) was `OverflowError` from bind,
and a `--public-url` without its scheme was taken as is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, cwd=tmp_path, check=False, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", ["migrate", "worker", "serve --port 0", "outbox",
                                     "keys list"])
def test_a_store_url_that_is_not_a_url_is_one_line_and_exit_1(tmp_path: Path,
                                                              command: str) -> None:
    # the password of a URL gone wrong is not echoed back into the logs
    done = _run(tmp_path, *command.split(), "--db", "journeyman:s3cretpw@db/journeyman")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "is not a database URL" in done.stderr, done.stderr
    assert "s3cretpw" not in done.stderr + done.stdout
    # the same from the environment, as the systemd units pass it
    by_env = _run(tmp_path, *command.split(), env={"JOURNEYMAN_DB": "localhost/journeyman"})
    assert by_env.returncode == 1, by_env.stderr
    assert "Traceback" not in by_env.stderr, by_env.stderr
    assert "is not a database URL" in by_env.stderr, by_env.stderr


@pytest.mark.parametrize("args", [("serve", "--port", "-5"), ("serve", "--port", "70000"),
                                  ("worker", "--http-port", "99999"),
                                  ("worker", "--http-port", "-1")])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = _run(tmp_path, *args, "--db", f"sqlite:///{tmp_path / 'j.db'}")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert args[1] in done.stderr, done.stderr


@pytest.mark.parametrize(("args", "env"), [
    (("worker", "--public-url", "journeys.example.com"), {}),
    (("serve", "--port", "0", "--public-url", "notaurl"), {}),
    (("worker",), {"JOURNEYMAN_PUBLIC_URL": "ftp://journeys.example.com"})])
def test_a_public_url_that_is_not_http_is_a_usage_error(tmp_path: Path, args: tuple[str, ...],
                                                        env: dict[str, str]) -> None:
    """Every unsubscribe and tracked link starts with it: without a scheme, a worker
    started and sent every message with links that lead nowhere."""
    done = _run(tmp_path, *args, "--db", f"sqlite:///{tmp_path / 'j.db'}", env=env)
    assert done.returncode == 2, done.stderr
    assert "--public-url" in done.stderr, done.stderr
    assert "https://" in done.stderr, done.stderr
    assert "running" not in done.stderr


def test_links_no_recipient_can_reach_are_warned_about(tmp_path: Path) -> None:
    """`serve --host 0.0.0.0` without `--public-url` put http://0.0.0.0:8000 in every
    unsubscribe and tracked link, and a worker on PostgreSQL (its API on another machine)
    http://127.0.0.1:8000, without a word. Each now warns at start."""
    from engine.cli.running import public_url_warning

    assert public_url_warning(None, host="0.0.0.0") is not None
    assert public_url_warning(None, host="::") is not None
    assert public_url_warning(None, host="127.0.0.1") is None
    assert public_url_warning("https://j.example", host="0.0.0.0") is None
    assert public_url_warning(None, db="sqlite:///journeyman.db") is None
    assert public_url_warning("https://j.example", db="postgresql://db/j") is None
    # a real worker, whose database cannot be reached: the warning comes first
    done = _run(tmp_path, "worker", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert done.returncode == 1, done.stderr
    assert ("warning: no --public-url: the links in what this worker sends point at "
            "http://127.0.0.1:8000") in done.stderr, done.stderr
    given = _run(tmp_path, "worker", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/none",
                 env={"JOURNEYMAN_PUBLIC_URL": "https://journeys.example.com"})
    assert "no --public-url" not in given.stderr, given.stderr
    served = _run(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0", "--db",
                  "postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert served.returncode == 1, served.stderr
    assert "warning: no --public-url: the links in what is sent point at http://0.0.0.0:PORT" \
        in served.stderr, served.stderr


def test_a_warning_at_start_is_a_warning_line_in_json(tmp_path: Path) -> None:
    """With --log-format json (both recipes of docs/deploy.md), the missing --public-url
    warning was a line of level `error`, counted by any alert on the log's errors, beside
    the real error of a database that cannot be reached."""
    import json

    done = _run(tmp_path, "worker", "--db", "postgresql+psycopg://postgres@127.0.0.1:1/none",
                "--log-format", "json")
    assert done.returncode == 1, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["level"], line["message"].split(":")[0]) for line in lines] == [
        ("warning", "warning"), ("error", "cannot open the store at postgresql+psycopg")]
    # ...whose host is named, not redacted as an e-mail address
    assert "postgres@127.0.0.1:1/none" in lines[1]["message"], lines


def test_journeys_sending_on_a_channel_with_no_adapter_are_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/deploy.md's recipe: the bundled library (`cp -r journeys/library
    deploy/journeys`) under deploy/channels.yaml, e-mail and webhook alone. The NPS
    escalation sends by SMS: every one failed (`no_channel`) a week after its entry, and
    nothing said so at start."""
    import signal

    from channels.config import load
    from engine.cli.running import unconfigured_channels_warning
    from journeys.library import bundled_library
    from journeys.loader import load_path
    from tests.conftest import ROOT

    monkeypatch.setenv("SMTP_PASSWORD", "x")
    monkeypatch.setenv("HOOK_SECRET", "x")
    library = load_path(bundled_library())
    deployed = load(ROOT / "deploy" / "channels.yaml")
    warning = unconfigured_channels_warning(library, deployed)
    assert warning is not None
    assert "sms (nps_detractors.escalate)" in warning, warning
    assert unconfigured_channels_warning(library, {**deployed, "sms": deployed["email"]}) is None
    # a worker says it at start, as a warning line, and runs
    worker = subprocess.Popen(
        [sys.executable, "-m", "engine", "worker", "--db", f"sqlite:///{tmp_path / 'j.db'}",
         "--channels", str(ROOT / "deploy" / "channels.yaml"), "--log-format", "json"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert worker.stderr is not None
    try:
        lines = []
        for line in worker.stderr:
            lines.append(line)
            if "running" in line:
                break
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    warned = [line for line in lines if "no adapter" in line]
    assert len(warned) == 1, lines
    assert '"level": "warning"' in warned[0], warned
    assert "sms (nps_detractors.escalate)" in warned[0]
