"""The file channel: append each message as one JSON line (for audits and replays)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from engine.ports import DeliveryError, Message


class FileChannel:
    name = "file"

    def __init__(self, path: str | Path = "sends.jsonl") -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @staticmethod
    def longest_send(count: int) -> float:
        """One write and one fsync: no provider to wait for (engine/ports.py Channel)."""
        del count
        return 0.0

    def send(self, message: Message) -> None:
        error = self.send_batch([message])[0]
        if error is not None:
            raise error

    def send_batch(self, messages: list[Message]) -> list[Exception | None]:
        """Append the chunk with one write and one fsync: the fsync, not the write, is
        what a line costs. A message that cannot be serialized fails alone."""
        lines: list[str] = []
        results: list[Exception | None] = []
        for message in messages:
            try:
                lines.append(_line(message))
                results.append(None)
            except Exception as exc:  # never retried: it would fail again
                results.append(DeliveryError(f"cannot write the message: {exc}",
                                             permanent=True))
        if lines:
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write("".join(lines))
                out.flush()
                os.fsync(out.fileno())  # an audit line that a crash can lose is no audit
        return results


def _line(message: Message) -> str:
    record = {"key": message.key, "profile_id": message.profile_id,
              "journey": message.journey, "step": message.step,
              "channel": message.channel, "to": message.to, "at": message.at.isoformat(),
              "rendered": message.rendered.document()}
    return json.dumps(record, sort_keys=True, default=str) + "\n"
