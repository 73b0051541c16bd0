"""One call at a time, shared by everyone who asks meanwhile, with a bounded wait:
what `/readyz` and `/metrics` read from the database.

An orchestrator probes `/readyz` every few seconds and retries a probe that hangs, and
each probe ran its own query on the API's connection pool: with a lock held on the
schema table (a long migration), twenty waiting probes took every pooled connection
and event ingest failed with the pool's timeout after 30 s (2026-12-07, an operator's
trial). Now at most one read runs; a caller waits for it at most `timeout` seconds
(then `TimeoutError`, while the read goes on and its answer serves the next caller),
and an answer is kept `fresh` seconds for the callers after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedCall(Generic[T]):
    def __init__(self, work: Callable[[], T], *, timeout: float, fresh: float = 0.0,
                 name: str = "shared-call") -> None:
        self.work = work
        self.timeout = timeout
        self.fresh = fresh
        self.name = name
        self._lock = threading.Lock()
        self._running: threading.Event | None = None
        self._answer: tuple[float, T | BaseException] | None = None  # (monotonic, outcome)

    def __call__(self) -> T:
        """The answer of a call that started now or is under way (or one `fresh`
        seconds old at most); raises what the work raised, or TimeoutError."""
        with self._lock:
            answer = self._answer
            if answer is not None and time.monotonic() - answer[0] <= self.fresh:
                return self._unwrap(answer[1])
            running = self._running
            if running is None:
                running = self._running = threading.Event()
                threading.Thread(target=self._run, args=(running,), name=self.name,
                                 daemon=True).start()
        if not running.wait(self.timeout):
            raise TimeoutError(f"no answer within {self.timeout:g} s")
        with self._lock:
            assert self._answer is not None
            return self._unwrap(self._answer[1])

    def _run(self, done: threading.Event) -> None:
        outcome: T | BaseException = RuntimeError(f"{self.name}: the call ended abnormally")
        try:
            outcome = self.work()
        except BaseException as exc:  # handed to every caller waiting for this call
            outcome = exc
        finally:  # whatever happened, the next caller may start a call again
            with self._lock:
                self._answer = (time.monotonic(), outcome)
                self._running = None
            done.set()

    @staticmethod
    def _unwrap(outcome: T | BaseException) -> T:
        if isinstance(outcome, BaseException):
            # a new error each time, the call's as its cause: one exception raised in
            # many threads would gather every raise's frames in its traceback
            raise SharedCallError(f"{type(outcome).__name__}: {outcome}") from outcome
        return outcome


class SharedCallError(Exception):
    """The shared call failed; its error is the `__cause__`."""
