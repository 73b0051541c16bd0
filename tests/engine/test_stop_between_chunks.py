"""A process asked to stop (SIGTERM: engine/service.py sets the worker's and the
dispatcher's `stopping`) ends a storm of due timers after the chunk it is firing, and a
dispatcher's run at its next send (the claim's unsent rows put back, due now), instead
of working through the whole backlog first: systemd's `TimeoutStopSec=60` and compose's `stop_grace_period: 60s`
SIGKILL a worker still busy after a minute (an operator's trial, 2026-12-07; the same
for a real process and an SMTP server: tests/service/test_worker_stop.py). What is left
stays due, unclaimed, for the other workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.testing import InMemoryEngine
from tests.engine.helpers import stub_email, write_folder
from tests.store.helpers import T0
from tests.store.test_isolation import LATER

PEOPLE = 300


def _engine(tmp_path: Path) -> InMemoryEngine:
    folder = write_folder(tmp_path / "j", {"later": LATER}, {"hello": stub_email("hello")})
    engine = InMemoryEngine.from_folder(folder, start=T0)
    for i in range(PEOPLE):
        engine.identify(f"u{i}", {"email": f"u{i}@example.com"})
    engine.store.accept_events([{
        "type": "track", "event": "Ordered", "userId": f"u{i}", "messageId": f"m{i}",
        "timestamp": T0.isoformat(), "properties": {}} for i in range(PEOPLE)], "test")
    while engine.worker.handle_events():
        pass
    return engine


def _stop_after_first(store: Any, name: str, stop: Callable[[], None]) -> None:
    claim = getattr(store, name)

    def first_then_stop(*args: Any, **kwargs: Any) -> Any:
        stop()
        return claim(*args, **kwargs)

    setattr(store, name, first_then_stop)


def test_a_stop_ends_a_storm_of_timers_after_its_chunk(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    assert engine.store.pending_timers() == PEOPLE
    engine.clock.advance(timedelta(seconds=2))
    _stop_after_first(engine.store, "claim_due_timers", engine.worker.stopping.set)
    fired = engine.worker.fire_timers()
    assert 0 < fired < PEOPLE
    assert engine.store.pending_timers() == PEOPLE - fired  # left for the other workers


def test_a_stop_ends_a_dispatch_run_after_its_claim(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.clock.advance(timedelta(seconds=2))
    while engine.worker.fire_timers():
        pass
    assert engine.store.outbox_counts() == {"pending": PEOPLE}
    stopping = engine.dispatcher.stopping = threading.Event()
    _stop_after_first(engine.store, "claim_outbox", stopping.set)
    tried = engine.dispatcher.dispatch_due()
    assert 0 < tried < PEOPLE  # one claim, no other
    # asked during its admission: the claim's rows go back unsent, due now
    # (tests/store/test_claim_lease.py: a stop during a claim's sends)
    assert engine.dispatcher.stats.released == tried
    assert engine.store.outbox_counts() == {"pending": PEOPLE}
    assert engine.store.next_outbox_at() <= engine.clock.now()
