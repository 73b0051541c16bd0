"""The in-memory store's engagement records (clicks, opens, bounces, ...) and the
suppression list."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from engine.ports import Engagement, OutboxRecord, Suppression
from engine.store.memory.queues import MemoryQueues


class MemoryEngagement(MemoryQueues):
    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.engagement_rows: list[Engagement] = []
        self.suppression_rows: dict[str, Suppression] = {}  # by lowercased address

    def sent_message(self, key: str) -> OutboxRecord | None:
        return self.outbox.get(key)

    def record_engagement(self, engagement: Engagement) -> None:
        self.engagement_rows.append(engagement)

    def engagements(self, journey: str | None = None) -> list[Engagement]:
        return [e for e in self.engagement_rows if journey is None or e.journey == journey]

    def suppress(self, suppression: Suppression) -> bool:
        address = suppression.address.strip().lower()
        if address in self.suppression_rows:
            return False
        self.suppression_rows[address] = Suppression(
            address, suppression.reason, suppression.at, suppression.source,
            dict(suppression.details))
        return True

    def unsuppress(self, address: str) -> bool:
        return self.suppression_rows.pop(address.strip().lower(), None) is not None

    def suppressed(self, addresses: Collection[str]) -> dict[str, Suppression]:
        return {a: self.suppression_rows[a.strip().lower()] for a in addresses
                if a.strip().lower() in self.suppression_rows}

    def suppressions(self) -> list[Suppression]:
        return [self.suppression_rows[a] for a in sorted(self.suppression_rows)]
