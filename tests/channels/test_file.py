"""The file channel: one JSON line per message, a chunk appended with one fsync, and a
message that cannot be written failing alone (permanently)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels import FileChannel
from engine.ports import DeliveryError, Message
from journeys.templating import Rendered

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def message(key: str, payload: dict[str, Any] | None = None) -> Message:
    return Message(key=key, profile_id="p1", journey="welcome", step="hello",
                   channel="webhook", to=None,
                   rendered=Rendered(template="hello", channel="webhook", payload=payload),
                   at=AT)


def test_a_chunk_is_appended_in_order_with_one_fsync(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    channel = FileChannel(tmp_path / "sends.jsonl")
    channel.send(message("k0"))
    assert channel.send_batch([message(f"k{i}") for i in range(1, 4)]) == [None] * 3
    lines = [json.loads(line) for line in (tmp_path / "sends.jsonl").read_text().splitlines()]
    assert [line["key"] for line in lines] == ["k0", "k1", "k2", "k3"]
    assert lines[1]["rendered"]["template"] == "hello"
    assert len(synced) == 2  # one for send(), one for the chunk


def test_a_message_that_cannot_be_written_fails_alone_and_permanently(tmp_path: Path) -> None:
    looped: dict[str, Any] = {}
    looped["self"] = looped  # JSON cannot write a cycle
    channel = FileChannel(tmp_path / "sends.jsonl")
    results = channel.send_batch([message("good-1"), message("bad", looped),
                                  message("good-2")])
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], DeliveryError)
    assert results[1].permanent
    keys = [json.loads(line)["key"]
            for line in (tmp_path / "sends.jsonl").read_text().splitlines()]
    assert keys == ["good-1", "good-2"]
    with pytest.raises(DeliveryError):
        channel.send(message("bad-again", looped))
