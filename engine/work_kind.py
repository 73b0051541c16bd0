"""Which work a thread of the store is doing, and who waits for the store's write lock.

The service's loops (events, timers, outbox) mark their store work as background work;
a store whose writers take turns (engine/store/sql/turns.py) lets a waiting foreground
writer (an API request) go first, and background work holding the lock checks
`ForegroundWaits` between items and commits early. Below both the runtime and the
stores, which must not import each other.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_work_kind = threading.local()


@contextmanager
def background_work() -> Iterator[None]:
    """Marks the store work this thread does in the block as background work (the
    service's loops: events, timers, outbox). A store whose writers take turns lets a
    waiting foreground writer (an API request) go first (engine/store/sql/db.py)."""
    before = getattr(_work_kind, "background", False)
    _work_kind.background = True
    try:
        yield
    finally:
        _work_kind.background = before


def is_background_work() -> bool:
    return bool(getattr(_work_kind, "background", False))


class ForegroundWaits:
    """How many foreground writers (API requests) of this process wait for the store's
    write lock now (counted by a store whose writers take turns): background work
    holding the lock checks it between items and commits early."""

    _lock = threading.Lock()
    _count = 0

    @classmethod
    def add(cls, delta: int) -> None:
        with cls._lock:
            cls._count += delta

    @classmethod
    def any(cls) -> bool:
        return cls._count > 0
