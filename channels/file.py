"""The file channel: append each message as one JSON line (for audits and replays)."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path

from engine.ports import Message


class FileChannel:
    name = "file"

    def __init__(self, path: str | Path = "sends.jsonl") -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        record = {"key": message.key, "profile_id": message.profile_id,
                  "journey": message.journey, "step": message.step,
                  "channel": message.channel, "to": message.to, "at": message.at.isoformat(),
                  "rendered": asdict(message.rendered)}
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())  # an audit line that a crash can lose is no audit
