"""engine/runtime/shared_call.py: one call at a time, shared, with a bounded wait."""

from __future__ import annotations

import threading

import pytest

from engine.runtime.shared_call import SharedCall, SharedCallError


def test_callers_share_one_call_and_wait_at_most_the_timeout() -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        release.wait(10)
        return len(calls)

    shared = SharedCall(slow, timeout=0.05, fresh=60)
    for _ in range(5):  # each gives up after 50 ms; none starts a second call
        with pytest.raises(TimeoutError):
            shared()
    assert calls == [1]
    release.set()
    shared.timeout = 10  # the call that went on answers the next caller
    assert shared() == 1
    assert shared() == 1  # kept while fresh
    assert calls == [1]


def test_an_error_reaches_every_waiting_caller_and_is_not_kept_past_fresh() -> None:
    outcomes = iter([RuntimeError("down"), 7])

    def flaky() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    shared = SharedCall(flaky, timeout=5, fresh=0)
    with pytest.raises(SharedCallError, match="RuntimeError: down") as caught:
        shared()
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert shared() == 7


def test_a_call_that_ends_abnormally_does_not_wedge_the_next() -> None:
    """A BaseException (not an Exception) left the call marked running for good: every
    later /readyz timed out until the process restarted."""
    outcomes = iter([KeyboardInterrupt(), 3])

    def interrupted() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    shared = SharedCall(interrupted, timeout=5, fresh=0)
    with pytest.raises(SharedCallError, match="KeyboardInterrupt"):
        shared()
    assert shared() == 3
