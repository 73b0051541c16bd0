"""One journeyman process: the event API, the event worker, the timer ticker and the
outbox dispatcher over a SqlStore (`journeyman serve`; `journeyman worker` is the same
without the API).

Threads, and why:
- uvicorn serves the API on the main thread; it only writes event + inbox rows.
- one event thread claims the inbox and handles events, each in its own transaction;
- APScheduler 3.11 runs two interval jobs: the timer ticker (claims due timer rows in
  batches; cron entries are timer rows too, see engine/runtime.py) and the outbox
  dispatcher. `misfire_grace_time=None, coalesce=True, max_instances=1`: a late tick
  still runs, once, never twice at the same time (design.md).
The engine is not thread-safe, so the event thread and the timer ticker take turns on
it (the Worker's lock); the dispatcher does not touch the engine.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from engine.dispatch import Dispatcher
from engine.events import iso
from engine.policy import PolicyGate
from engine.ports import Channel, Clock
from engine.profiles import ComputedTraits
from engine.runtime import Engine
from engine.store import SqlStore
from engine.store.sql import SystemClock
from engine.unsubscribe import UnsubscribeLinks
from engine.worker import Worker
from journeys.compiler import compile_library
from journeys.loader import Library, load_path

log = logging.getLogger("journeyman.service")

DEFAULT_DB = "sqlite:///journeyman.db"


class UuidIds:
    """The production IdGenerator (tests use engine.testing.SequentialIds)."""

    def new_id(self) -> str:
        return uuid.uuid4().hex  # noqa: TID251 - the one real source of random ids


class Service:
    def __init__(self, journeys: str | Path, db: str = DEFAULT_DB, *,
                 channels: Mapping[str, Channel], clock: Clock | None = None,
                 identify_by: Sequence[str] = (), tick: float = 0.5, backend: str = "durable",
                 name: str | None = None, lease: float = 60.0, secret: str | None = None,
                 public_url: str = "http://127.0.0.1:8000") -> None:
        self.clock: Clock = clock or SystemClock()
        self.library: Library = load_path(journeys)  # InvalidJourney: the CLI prints it
        compiled = compile_library(self.library, backend=backend)
        self.store = SqlStore(db, create=True, clock=self.clock)
        self.computed = ComputedTraits(self.library.computed_config)
        # Unsubscribe links are signed with the configured secret, else with one the
        # store keeps, so links in mail already sent stay valid across restarts.
        self.unsubscribe = UnsubscribeLinks(secret or self.store.secret("unsubscribe"),
                                            public_url)
        self.engine = Engine(compiled, store=self.store, clock=self.clock, ids=UuidIds(),
                             computed=self.computed, policy=self.library.policy,
                             identity_traits=tuple(identify_by), unsubscribe=self.unsubscribe)
        # A lease is how long a crashed process holds what it claimed (inbox events,
        # outbox rows) before another takes over.
        gate = PolicyGate(self.library.policy,
                          {jid: j.model.policy for jid, j in compiled.items()})
        self.dispatcher = Dispatcher(self.store, channels, self.clock,
                                     lease=timedelta(seconds=lease), gate=gate)
        self.worker = Worker(self.engine, self.store, self.clock,
                             name=name or f"{socket.gethostname()}:{os.getpid()}",
                             lease=timedelta(seconds=lease))
        self.tick = tick
        self._stop = threading.Event()
        self._events: threading.Thread | None = None
        self._scheduler = BackgroundScheduler(timezone=UTC, job_defaults={
            "misfire_grace_time": None, "coalesce": True, "max_instances": 1})

    # --- the loops -----------------------------------------------------------------

    def start(self) -> None:
        """Start the event thread, the timer ticker and the dispatcher (not the API)."""
        self._stop.clear()
        self._events = threading.Thread(target=self._event_loop, name="journeyman-events",
                                        daemon=True)
        self._events.start()
        self._scheduler.add_job(self._guarded(self.worker.fire_timers), "interval",
                                seconds=self.tick, id="timers")
        self._scheduler.add_job(self._guarded(self.dispatcher.dispatch_due), "interval",
                                seconds=self.tick, id="outbox")
        self._scheduler.start()

    def stop(self) -> None:
        self.stop_loops()
        for channel in {id(c): c for c in self.dispatcher.channels.values()}.values():
            close = getattr(channel, "close", None)  # SMTP connections, HTTP clients
            if callable(close):
                close()
        self.store.close()

    def stop_loops(self) -> None:
        """Stop the event thread and the scheduled jobs, waiting for running ones."""
        self._stop.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._events is not None:
            self._events.join(30)

    def wait(self) -> None:
        """Block until `stop()` (or a signal handler sets the stop event)."""
        while not self._stop.wait(1):
            pass

    def request_stop(self) -> None:
        self._stop.set()

    def _event_loop(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.worker.handle_events()
            except Exception:  # a database hiccup: log, back off, go on
                log.exception("the event loop failed; retrying")
                handled = 0
            if handled == 0:
                self._stop.wait(min(self.tick, 0.2))

    @staticmethod
    def _guarded(job: Any) -> Any:
        def run() -> None:
            try:
                job()
            except Exception:  # APScheduler would log it too, but without our context
                log.exception("%s failed; it runs again on the next tick", job.__name__)

        run.__name__ = job.__name__
        return run

    # --- the API -------------------------------------------------------------------

    def app(self) -> Any:
        from engine.api import create_app

        return create_app(self.store, self.clock.now, new_id=UuidIds().new_id,
                          profiles=self.profile, unsubscribe=self.unsubscribe)

    def profile(self, user_id: str) -> dict[str, Any] | None:
        """The admin view of a profile: traits, computed traits, identities, enrollments."""
        pid = (self.store.profile_for("user_id", user_id)
               or self.store.profile_for("anonymous_id", user_id) or user_id)
        stored = self.store.get_profile(pid)
        if stored is None:
            return None
        view = self.computed.view(stored, self.clock.now(), self.library.policy.timezone)
        return {
            "id": pid,
            "traits": dict(view.traits),
            "computed": dict(view.computed),
            "identities": [{"kind": k, "value": v} for k, v in self.store.identities_of(pid)],
            "enrollments": [{"journey": e.journey, "version": e.version, "step": e.state,
                             "status": e.status, "entered_at": iso(e.entered_at),
                             "exit_reason": e.exit_reason}
                            for e in self.store.profile_enrollments(pid)],
        }

    def serve(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        """Run everything until SIGINT/SIGTERM (uvicorn handles the signals)."""
        import uvicorn

        self.start()
        try:
            uvicorn.run(self.app(), host=host, port=port, log_level="warning",
                        access_log=False)
        finally:
            self.stop()
