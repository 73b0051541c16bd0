"""`journeyman demo` (the README's first command) runs the real service end to end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from engine.ports import Message
from engine.qa.demo import run_demo
from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_plays_the_stream_through_the_service() -> None:
    proc = subprocess.run([sys.executable, "-m", "engine", "demo", "--speed", "3000000",
                           "--synthetic", "4", "--days", "70"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    console = [line for line in lines if re.match(r"\[ *(email|sms|push|webhook)\] ", line)]
    assert any("ana@example.com  welcome/welcome_newsletter" in line for line in console), lines
    assert any("visitor000@example.com" in line for line in console), lines
    [headline] = [line for line in lines if " events, " in line and " profiles, " in line]
    assert headline.startswith("25 events, 7 profiles"), headline
    assert f"{len(console)} messages" in headline, (headline, len(console))
    assert lines[-1].startswith("  outbox: "), lines[-1]  # sent, maybe some deferred
    assert " sent " in lines[-1] + " "
    entered = [line for line in lines if line.startswith("[  enter]")]
    assert any(line.endswith("ana  -> welcome") for line in entered), lines


def test_demo_with_unreadable_events_fails_clearly() -> None:
    proc = subprocess.run([sys.executable, "-m", "engine", "demo", "--events",
                           "/nonexistent/events.jsonl", "--synthetic", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr == "/nonexistent/events.jsonl:1:1: cannot read: No such file or directory\n"
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_demo_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """SIGTERM mid-stream ends the demo as the end of its stream does: the summary, exit
    0, its temporary folder removed (the signal killed it, leaving the folder behind)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where its temporary folder goes
    proc = subprocess.Popen([sys.executable, "-m", "engine", "demo", "--speed", "86400"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("journeyman-demo-*/demo.db")):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.1)
        time.sleep(2)  # playing the stream
        proc.send_signal(signal.SIGTERM)
        out, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors[-3000:]
    assert out.splitlines()[-1].startswith("  outbox: "), out[-2000:]
    assert "Traceback" not in errors, errors[-3000:]
    assert list(tmp_path.glob("journeyman-demo-*")) == []


@pytest.mark.postgres
def test_demo_runs_on_postgresql_with_the_configured_secret(pg_database: str,
                                                            tmp_path: Path) -> None:
    """On PostgreSQL every process needs a configured secret; the demo took none, so it
    failed whatever was set (it reads JOURNEYMAN_SECRET and --secret-file now)."""
    from tests.store.conftest import make_pg_store

    make_pg_store(pg_database).close()  # emptied
    events = tmp_path / "one.jsonl"
    events.write_text('{"type": "identify", "userId": "ana", "timestamp": '
                      '"2026-03-02T09:00:00Z", "traits": {"email": "ana@example.com", '
                      '"consent": {"email": true}}}\n')
    command = [sys.executable, "-m", "engine", "demo", "--events", str(events),
               "--synthetic", "0", "--days", "1", "--speed", "3000000", "--db", pg_database]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYMAN_SECRET")}
    unset = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                           check=False, env=env)
    assert unset.returncode == 1
    assert "no secret to sign unsubscribe links with" in unset.stderr
    secret = tmp_path / "secret"
    secret.write_text("a-demo-secret-of-thirty-two-characters-or-more\n")
    secret.chmod(0o600)
    done = subprocess.run([*command, "--secret-file", str(secret)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(line.startswith("1 events, 1 profiles") for line in done.stdout.splitlines())


class _Printed:
    """A channel printing into the demo's own list of lines, as the console does."""

    name = "email"

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def send(self, message: Message) -> None:
        self.lines.append(f"[  email] {message.at:%Y-%m-%d %H:%M} {message.step}")


def test_a_deferral_by_a_timer_is_printed_before_the_send_it_deferred(tmp_path: Path) -> None:
    """A wait that ends at 22:00 is deferred by the quiet hours to 08:00; both happen while
    the demo's loop sleeps until the next event, days later. The loop printed the
    deferral at its next look, after the send it deferred had been printed."""
    library = tmp_path / "journeys"
    (library / "templates").mkdir(parents=True)
    (library / "policy.yaml").write_text(
        'timezone: UTC\nquiet_hours: {start: "21:00", end: "08:00"}\n')
    (library / "templates" / "late.yaml").write_text(
        'channel: email\nsubject: "Late"\nhtml: "<p>Hi</p>"\n')
    (library / "late.yaml").write_text(
        "journey: late\nversion: 1\nentry:\n  event: Signed Up\nsteps:\n"
        "  - {id: pause, wait: 10h}\n"
        "  - id: hello\n    send: {channel: email, template: late}\n")
    events = [
        {"type": "identify", "userId": "ana", "timestamp": "2026-03-02T11:59:00Z",
         "traits": {"email": "ana@example.com", "consent": {"email": True}}},
        {"type": "track", "userId": "ana", "event": "Signed Up",
         "timestamp": "2026-03-02T12:00:00Z"},
        {"type": "track", "userId": "bo", "event": "Page Viewed",
         "timestamp": "2026-03-06T12:00:00Z"}]
    lines: list[str] = []
    run_demo(library, events, db=f"sqlite:///{tmp_path / 'demo.db'}",
             channels={"email": _Printed(lines)}, speed=400_000, run_on=timedelta(days=1),
             show=lines.append)
    [deferral] = [i for i, line in enumerate(lines) if line.startswith("[  defer]")]
    [send] = [i for i, line in enumerate(lines) if line.startswith("[  email]")]
    assert deferral < send, lines
    assert lines[send].endswith(" hello"), lines
