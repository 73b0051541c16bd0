"""SIGTERM of a `journeyman worker` with a backlog of sends: it exits within a claim's
worth of deliveries, not after the whole outbox. systemd's `TimeoutStopSec=60` and
compose's `stop_grace_period: 60s` (docs/deploy.md) SIGKILL a process still running after
a minute; the dispatcher's run delivered every due send before it looked at the stop, so
a worker with thousands of sends queued behind a slow provider (here 50 ms a message)
outlived its stop timeout, and its SIGKILL left its claim leased for `--lease` and sent
again what it had delivered but not yet marked. Found in an operator's trial (2026-12-07:
1,900 sends at ~20/s, still running 90 s after SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from engine.runtime.events import normalize
from engine.store import SqlStore
from engine.testing import TEST_SECRET
from tests.channels.test_email import free_port as free_smtp_port
from tests.engine.helpers import HELLO, stub_email, write_folder

pytestmark = pytest.mark.slow

SENDS = 600
PER_MESSAGE = 0.05  # seconds the SMTP server takes per message: 30 s for the backlog


class SlowSink:
    """An SMTP server that takes PER_MESSAGE seconds to accept each message."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(PER_MESSAGE)
        self.count += 1
        return "250 OK"


def test_sigterm_stops_a_worker_between_claims_of_a_backlog(tmp_path: Path,
                                                            store_url: str) -> None:
    folder = write_folder(tmp_path / "journeys", {"hello": HELLO},
                          {"welcome": stub_email("welcome")})
    sink, port = SlowSink(), free_smtp_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"email: {{adapter: email, host: 127.0.0.1, port: {port}, "
                        "start_tls: false, timeout: 5, from_addr: \"Shop <hi@shop.example>\"}\n")
    store = SqlStore(store_url, create=True)
    now = datetime.now(UTC)
    raw: list[dict[str, Any]] = []
    for n in range(SENDS):
        raw.append({"type": "identify", "userId": f"u{n}",
                    "traits": {"email": f"u{n}@example.com"}})
        raw.append({"type": "track", "userId": f"u{n}", "event": "Signed Up"})
    store.accept_events([normalize(r, now=now, message_id=f"m{i}")
                         for i, r in enumerate(raw)], "site")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker", "--journeys", str(folder),
             "--db", store_url, "--channels", str(channels), "--lease", "60"],
            stdout=out, stderr=out, env={**os.environ, "JOURNEYMAN_SECRET": TEST_SECRET})
    try:
        deadline = time.monotonic() + 60
        while sink.count < 10:  # delivering: the backlog is being worked through
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        try:
            code = proc.wait(15)  # the chunk under way (20 sends: 1 s), not the backlog (30 s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 15 s after SIGTERM, {sink.count} of {SENDS} sent")
        took = time.monotonic() - asked
        assert code == 0, log.read_text()[-3000:]
        assert log.read_text().rstrip().endswith("stopped"), log.read_text()[-3000:]
        assert sink.count < SENDS, f"it sent the whole backlog first ({took:.1f} s)"
        # what it sent was marked; the rest of its claim is back, due: nothing is leased
        counts = store.outbox_counts()
        assert counts.get("sent", 0) == sink.count, (counts, sink.count)
        leased = [r for r in store.outbox_records()
                  if r.status == "pending" and r.next_attempt_at is not None
                  and r.next_attempt_at > datetime.now(UTC)]
        assert leased == [], f"{len(leased)} sends left leased by the stopped worker"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        controller.stop()
        store.close()
