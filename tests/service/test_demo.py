"""`journeyman demo` (the README's first command) runs the real service end to end."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

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
    assert "cannot read the demo events" in proc.stderr
    assert "Traceback" not in proc.stderr
