"""`InMemoryStore`: the whole Store port (engine/ports.py) in dicts and a heap, with the
same semantics as `SqlStore` (one contract test suite runs on both). For tests,
`journeyman simulate` and replays: fast, and gone when the process ends.

`state.py` holds what the runtime reads and writes (profiles, enrollments and their
entry stats, timers, segments, records, identities, unit-of-work changes); `queues.py`
holds the inbox, the outbox, parked failures and API keys; `privacy.py` a person's
rows (export, forget) and the event retention; `versions.py` the deployed journey
versions; `engagement.py` the clicks, opens, bounces and the suppression list.

Not thread-safe, and `transaction()` does not roll back: one engine per store, in one
thread.
"""

from __future__ import annotations

from engine.ports import Store
from engine.store.memory.engagement import MemoryEngagement
from engine.store.memory.privacy import MemoryPrivacy
from engine.store.memory.versions import MemoryVersions


class InMemoryStore(MemoryPrivacy, MemoryVersions, MemoryEngagement):
    """The in-memory Store: `InMemoryStore(clock)`."""


def _implements_the_port(store: InMemoryStore) -> Store:
    return store  # mypy checks that InMemoryStore is a whole Store


__all__ = ["InMemoryStore"]
