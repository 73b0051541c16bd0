"""A running worker stops claiming while the database's schema is not the one its code
needs, and starts again when it is.

The schema can change under a running process: an operator rolls a release back with
`alembic downgrade`, or a newer journeyman's `migrate` runs while an older worker is
still up (docs/deploy.md says to stop them first; not everyone does). `/readyz` says 503
then (`the schema is at revision X, this needs Y`), but the loops went on claiming
events, timers and sends, writing what this code writes into a schema that may lack its
tables and columns (batches failing until their events were parked) or, on SQLite, the
stamps that keep lanes' batches apart (migration 0018). So every loop asks the gate
before it claims: while the schema is apart, nothing is claimed (what is queued waits
in the store, nothing is lost), one error line says why when it closes and one line
when it opens again.

The store is asked at most every `every` seconds (one small read of the revision, as
`/readyz` makes), whichever loop asks; a look the database does not answer leaves the
gate as it was (open, the loops meet the error as a transient one, as before; closed, it
stays closed until a look says the schema is current: it opened, said the schema was
current again and let the loops claim on the old schema until the next look).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from engine.ports import Clock

log = logging.getLogger("journeyman.service")

SCHEMA_LOOK_EVERY = 5.0  # seconds between looks at the schema's revision
RETRY_S = 0.05  # wall seconds at least between a loop's runs while the gate is closed


class SchemaGate:
    def __init__(self, apart: Callable[[], str | None], every: float = SCHEMA_LOOK_EVERY
                 ) -> None:
        self._apart = apart  # the store's `schema_apart`: why not, or None
        self.every = every
        self.reason: str | None = None  # why the gate is closed; None while open
        self._looked = float("-inf")
        self._lock = threading.Lock()

    def closed_until(self, clock: Clock) -> datetime | None:
        """None while the gate is open; while it is closed, when a loop should run again
        (a clock time): at the next look, at least RETRY_S of the wall away. Not at its
        safety tick: nothing else wakes it when the schema is current again, and with
        `--tick 30` the work accepted meanwhile waited 30 s after the upgrade."""
        if self.closed() is None:
            return None
        wall = max(RETRY_S, self._looked + self.every - time.monotonic())
        return clock.now() + clock.from_wall(wall)  # the demo's clock: a longer span

    def closed(self) -> str | None:
        """Why the loops must not claim now, else None; looks at the store again when
        the last look is `every` seconds old."""
        if time.monotonic() - self._looked < self.every:
            return self.reason
        with self._lock:  # one look for the loops that ask together
            if time.monotonic() - self._looked >= self.every:
                try:
                    reason = self._apart()
                except Exception as exc:  # the database did not answer
                    self._looked = time.monotonic()
                    log.debug("the look at the schema failed (%s): the gate stays %s",
                              type(exc).__name__, "closed" if self.reason else "open")
                    return self.reason
                self._looked = time.monotonic()
                if reason is not None and self.reason is None:
                    log.error("%s: not claiming events, timers or sends until it is "
                              "(`journeyman migrate` of this version, or stop this process "
                              "if the database was rolled back)", reason)
                elif reason is None and self.reason is not None:
                    log.warning("the schema is current again: claiming events, timers and "
                                "sends again")
                self.reason = reason
            return self.reason
