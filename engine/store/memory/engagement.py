"""The in-memory store's engagement records (clicks, opens, bounces, ...) and the
suppression list."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from engine.ports import Engagement, OutboxRecord, Suppression
from engine.store.memory.queues import MemoryQueues
from engine.values import forgotten_address


class MemoryEngagement(MemoryQueues):
    def __init__(self, clock: Any = None) -> None:
        super().__init__(clock)
        self.engagement_rows: list[Engagement] = []
        self.suppression_rows: dict[str, Suppression] = {}  # by lowercased address

    def sent_message(self, key: str) -> OutboxRecord | None:
        return self.outbox.get(key)

    def record_engagement(self, engagement: Engagement, limit: int = 0,
                          since: datetime | None = None) -> bool:
        e = engagement
        if limit > 0 and sum(
                1 for r in self.engagement_rows
                if (r.message_key, r.kind, r.position, r.human) == (
                    e.message_key, e.kind, e.position, e.human)
                and (since is None or r.at >= since)) >= limit:
            return False
        self.engagement_rows.append(engagement)
        return True

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
        gone = [self.suppression_rows.pop(form, None)
                for form in (address.strip().lower(), forgotten_address(address))]
        return any(row is not None for row in gone)

    def suppressed(self, addresses: Collection[str]) -> dict[str, Suppression]:
        found: dict[str, Suppression] = {}
        for address in addresses:  # as written, or as kept once its person was forgotten
            for form in (address.strip().lower(), forgotten_address(address)):
                if form in self.suppression_rows:
                    found[address] = self.suppression_rows[form]
        return found

    def suppressions(self) -> list[Suppression]:
        return [self.suppression_rows[a] for a in sorted(self.suppression_rows)]
