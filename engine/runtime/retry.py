"""How long a send that failed waits before it is tried again (the outbox dispatcher,
engine/runtime/dispatch.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits base * 2**(n-1), capped, times a
    factor in [0.5, 1). The factor comes from a hash of the send key and the attempt, so
    retries of many sends spread out, yet a replay of the same history is identical."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=6)
    max_attempts: int = 8

    def delay(self, key: str, attempt: int) -> timedelta:
        raw = min(self.base * 2 ** max(attempt - 1, 0), self.cap)
        digest = hashlib.blake2b(f"{key}#{attempt}".encode(), digest_size=8).digest()
        factor = 0.5 + int.from_bytes(digest) / 2 ** 65
        return timedelta(seconds=raw.total_seconds() * factor)


__all__ = ["RetryPolicy"]
