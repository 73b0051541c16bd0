"""The one place that wires a runtime: `wire()` loads and compiles a journeys folder,
sets up computed traits, the policy gate, the `Runner` and the `Dispatcher` over a
store. `Service` (`journeyman serve` and `worker`), the testing kit
(`engine.testing.InMemoryEngine`) and `journeyman preview` all build on it, so what a
test runs is what production runs.

`Service` is one journeyman process: the event API, the event worker, the timer ticker
and the outbox dispatcher over a SqlStore (`journeyman serve`; `journeyman worker` is
the same without the API).

Threads, and why:
- uvicorn serves the API on the main thread; it only writes event + inbox rows.
- one event thread claims the inbox and handles events, each in its own transaction;
- APScheduler 3.11 runs two interval jobs: the timer ticker (claims due timer rows in
  batches; cron entries are timer rows too, see engine/runtime/runner.py) and the
  outbox dispatcher. `misfire_grace_time=None, coalesce=True, max_instances=1`: a late
  tick still runs, once, never twice at the same time (design.md).
The runner is not thread-safe, so the event thread and the timer ticker take turns on
it (the Worker's lock); the dispatcher does not touch the runner.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from engine.core.profiles import ComputedTraits
from engine.core.times import iso
from engine.ports import Channel, Clock, IdGenerator, Store, SystemClock, UuidIds
from engine.runtime.dispatch import Dispatcher
from engine.runtime.policy import PolicyGate
from engine.runtime.runner import Runner
from engine.runtime.signing import secrets_for
from engine.runtime.unsubscribe import SigningSecret, UnsubscribeLinks
from engine.runtime.worker import Worker
from engine.store import DEFAULT_URL, SqlStore
from journeys.compiler import CompiledJourney, compile_library
from journeys.loaded import Library
from journeys.loader import load_path

log = logging.getLogger("journeyman.service")


@dataclass
class Wiring:
    """A runtime, wired: the library and its compiled journeys, the computed traits,
    the runner and the dispatcher over one store, clock and set of channels."""

    library: Library
    compiled: dict[str, CompiledJourney]
    computed: ComputedTraits
    runner: Runner
    dispatcher: Dispatcher


def wire(library: Library, *, store: Store, clock: Clock, ids: IdGenerator,
         channels: Mapping[str, Channel], unsubscribe: UnsubscribeLinks,
         identify_by: Sequence[str] = (), backend: str = "durable",
         lease: timedelta = timedelta(minutes=5)) -> Wiring:
    """Compile `library` and build the runner and the dispatcher over `store`."""
    compiled = compile_library(library, backend=backend)
    computed = ComputedTraits(library.computed_config)
    runner = Runner(compiled, store=store, clock=clock, ids=ids, computed=computed,
                    policy=library.policy, identity_traits=tuple(identify_by),
                    unsubscribe=unsubscribe)
    gate = PolicyGate(library.policy, {jid: j.model.policy for jid, j in compiled.items()})
    dispatcher = Dispatcher(store, channels, clock, lease=lease, gate=gate)
    return Wiring(library, compiled, computed, runner, dispatcher)


class Service:
    def __init__(self, journeys: str | Path, db: str = DEFAULT_URL, *,
                 channels: Mapping[str, Channel], clock: Clock | None = None,
                 identify_by: Sequence[str] = (), tick: float = 0.5, backend: str = "durable",
                 name: str | None = None, lease: float = 60.0,
                 secrets: Sequence[SigningSecret] | None = None,
                 public_url: str = "http://127.0.0.1:8000") -> None:
        self.clock: Clock = clock or SystemClock()
        self.library: Library = load_path(journeys)  # InvalidJourney: the CLI prints it
        self.store = SqlStore(db, create=True, clock=self.clock)
        # Unsubscribe links are signed with the configured secrets, else (SQLite) with
        # the generated file beside the database, so links in mail already sent stay
        # valid across restarts; never with a secret kept in clear in the database.
        try:
            signing = secrets_for(db, self.store, secrets, self.clock.now())
        except BaseException:
            self.store.close()
            raise
        self.unsubscribe = UnsubscribeLinks(signing, public_url)
        # A lease is how long a crashed process holds what it claimed (inbox events,
        # outbox rows) before another takes over.
        wiring = wire(self.library, store=self.store, clock=self.clock, ids=UuidIds(),
                      channels=channels, unsubscribe=self.unsubscribe,
                      identify_by=identify_by, backend=backend,
                      lease=timedelta(seconds=lease))
        self.computed = wiring.computed
        self.runner = wiring.runner
        self.dispatcher = wiring.dispatcher
        self.worker = Worker(self.runner, self.store, self.clock,
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
