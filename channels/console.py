"""The console channel: print each message as one readable line (the demo uses it)."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from engine.ports import Message


class ConsoleChannel:
    name = "console"

    def __init__(self, stream: TextIO | None = None, *, width: int = 60) -> None:
        self.stream = stream  # None: whatever sys.stdout is at the time (rich Live swaps it)
        self.width = width
        self.count = 0
        self._lock = threading.Lock()  # the dispatcher may run in several threads

    @staticmethod
    def longest_send(count: int) -> float:
        """A line printed: no provider to wait for (engine/ports.py Channel)."""
        del count
        return 0.0

    def send(self, message: Message) -> None:
        rendered = message.rendered
        lines = rendered.summary.strip().splitlines()
        text = rendered.subject or (lines[0] if lines else "")
        if len(text) > self.width:
            text = text[: self.width - 1] + "…"
        line = (f"[{message.channel:>7}] {message.at:%Y-%m-%d %H:%M} "
                f"{message.to or message.profile_id}  {message.journey}/{message.step}: {text}")
        with self._lock:
            stream = self.stream or sys.stdout
            stream.write(line + "\n")  # one write: lines other threads print stay whole
            stream.flush()
            self.count += 1
