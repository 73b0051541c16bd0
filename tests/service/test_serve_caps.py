"""The three-journeys cap test, end to end: `journeyman serve` with a real SMTP server
(aiosmtpd). One purchase enrolls a person in three journeys at once, each sending an
e-mail at its first step, under a cap of one e-mail a week: exactly one is delivered,
the highest priority's; the one with `on_cap: delay` waits for the cap, the other is
dropped, and the decision log says which and why."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller

from engine.store import SqlStore
from tests.channels.test_email import Sink
from tests.channels.test_email import free_port as free_smtp_port
from tests.engine.helpers import ONE_EMAIL_A_WEEK, capped_journey, write_folder
from tests.service import test_serve
from tests.service.test_serve import Served, create_key, serve

__all__ = ["serve"]

pytestmark = pytest.mark.slow

POLICY = ONE_EMAIL_A_WEEK


def journey(jid: str, priority: int, policy: str = "") -> str:
    return capped_journey(jid, priority, policy, event="Order Completed",
                          template=f"{jid}_email")


def test_three_journeys_one_cap_one_email(tmp_path: Path, store_url: str,
                                          serve: Callable[..., Served],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # a loaded machine (CI, several suites at once) may take longer than 20 s to start
    monkeypatch.setattr(test_serve, "START_TIMEOUT", 60.0)
    sink, port = Sink(), free_smtp_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        folder = write_folder(tmp_path / "j", {
            "cross_sell": journey("cross_sell", 1),
            "how_to": journey("how_to", 5, "policy: {on_cap: delay}"),
            "receipt": journey("receipt", 10),
        }, {f"{j}_email": f"channel: email\nsubject: '{j}'\ntext: 'hi'\n"
            for j in ("cross_sell", "how_to", "receipt")}, policy=POLICY)
        (tmp_path / "channels.yaml").write_text(
            f"email: {{adapter: email, host: 127.0.0.1, port: {port}, start_tls: false,\n"
            "        timeout: 5, from_addr: \"Shop <hi@shop.example>\"}\n")
        (tmp_path / "journeyman.secret").write_text("caps-test-" + "x" * 32)
        key = create_key(store_url, "web", tmp_path)
        server = serve(store_url, "--journeys", str(folder), "--channels",
                       str(tmp_path / "channels.yaml"), "--secret-file",
                       str(tmp_path / "journeyman.secret"))
        with httpx.Client(base_url=server.url, auth=(key, "")) as client:
            client.post("/v1/identify", json={"userId": "ana", "traits": {
                "email": "ana@example.com", "consent": {"email": True}}}).raise_for_status()
            client.post("/v1/track", json={"userId": "ana", "event": "Order Completed",
                                           "properties": {"revenue": 10}}).raise_for_status()
        store = SqlStore(store_url)
        try:
            def settled() -> dict[str, int] | None:
                counts = store.outbox_counts()
                return counts if counts.get("sent") and counts.get("skipped") else None

            server.eventually(settled, "one sent and one skipped send")
            server.eventually(lambda: sink.delivered or None, "the e-mail at the SMTP sink")
            assert store.outbox_counts() == {"sent": 1, "skipped": 1, "pending": 1}
            decisions = {d.journey: d for d in store.recorded_decisions(
                "ana", kinds=("skipped", "deferred"))}
            assert set(decisions) == {"cross_sell", "how_to"}
            dropped, delayed = decisions["cross_sell"], decisions["how_to"]
            assert (dropped.what, dropped.reason, dropped.details["on_cap"]) == (
                "skipped", "frequency_cap", "drop")
            assert (delayed.what, delayed.reason, delayed.details["on_cap"]) == (
                "deferred", "frequency_cap", "delay")
            [sent] = store.outbox_records(status="sent")
            assert sent.entry.journey == "receipt"
            [waiting] = store.outbox_records(status="pending")
            assert waiting.entry.journey == "how_to"
            assert waiting.next_attempt_at == sent.entry.admitted_at + timedelta(days=7)
        finally:
            store.close()
        [mail] = sink.parsed()
        assert (mail["To"], mail["Subject"]) == ("ana@example.com", "receipt")
        assert len(sink.delivered) == 1, server.output()
    finally:
        controller.stop()
