"""What a key may send: its scopes (per event) and its rate (events per second).

Scopes (engine/ports.py `SCOPES`): `track` for track/page/screen/group, `identify`,
`alias` for alias calls and for `email`/`phone` traits (identifiers that can join
profiles), `consent` for `consent.*` traits. A request with one event its key may not
send is refused whole (403), like any other bad event: nothing of it is stored.

Rates: a token bucket per key, refilled at the key's events per second and holding ten
seconds of them; each event of a request takes a token. An empty bucket answers 429 with
`Retry-After` (whole seconds until the request would fit). The buckets live in the API
process: with several API processes behind a balancer, each allows the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from engine.api.auth import ApiError
from engine.ports import KeyInfo
from engine.values import IDENTIFIER_TRAITS  # need the alias scope: they can join profiles

BURST_SECONDS = 10
_EVENT_SCOPE = {"track": "track", "page": "track", "screen": "track", "group": "track",
                "identify": "identify", "alias": "alias"}


class RateLimitedError(ApiError):
    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(429, reason)
        self.retry_after = retry_after


def _traits(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """The traits an event would apply (an identify without traits takes context.traits,
    as engine/runtime/events.py `normalize` does)."""
    traits = item.get("traits")
    if isinstance(traits, Mapping) and traits:
        return traits
    if item.get("type") != "identify":
        return {}
    context = item.get("context")
    inner = context.get("traits") if isinstance(context, Mapping) else None
    return inner if isinstance(inner, Mapping) else {}


def check_scopes(info: KeyInfo, items: list[Any]) -> None:
    """403 unless the key may send every event of the request."""
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue  # the event rules answer 400 for it
        where = f"batch[{index}]: " if len(items) > 1 else ""
        kind = item.get("type", "track")
        needed = _EVENT_SCOPE.get(kind) if isinstance(kind, str) else None
        if needed is not None and needed not in info.scopes:
            raise ApiError(403, f"{where}key {info.name!r} may not send {kind} "
                                f"(it needs the {needed!r} scope)")
        traits = _traits(item)
        if "consent" in traits and "consent" not in info.scopes:
            raise ApiError(403, f"{where}key {info.name!r} may not set consent (it needs "
                                "the 'consent' scope: consent comes from your server or "
                                "an unsubscribe link)")
        named = [t for t in IDENTIFIER_TRAITS if t in traits]
        if named and "alias" not in info.scopes:
            raise ApiError(403, f"{where}key {info.name!r} may not set {named[0]} (an "
                                "identifier; it needs the 'alias' scope)")


class Quotas:
    """A token bucket per key name (see the module doc)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def _level(self, info: KeyInfo, now: float) -> tuple[float, float, float]:
        rate = float(info.events_per_second)
        capacity = rate * BURST_SECONDS
        tokens, at = self._buckets.get(info.name, (capacity, now))
        return min(capacity, tokens + (now - at) * rate), rate, capacity

    def check(self, info: KeyInfo) -> None:
        """429 at once when the key has nothing left (before its body is read)."""
        with self._lock:
            tokens, rate, _ = self._level(info, self.clock())
        if tokens < 1:
            raise RateLimitedError(f"key {info.name!r} is over its rate of {int(rate)} events "
                              "per second", math.ceil((1 - tokens) / rate))

    def take(self, info: KeyInfo, events: int) -> None:
        """Take `events` tokens, or answer 429 (taking none)."""
        with self._lock:
            now = self.clock()
            tokens, rate, capacity = self._level(info, now)
            if events > capacity:
                raise RateLimitedError(f"a request of {events} events is more than key "
                                  f"{info.name!r} may send in {BURST_SECONDS} s; split it",
                                  BURST_SECONDS)
            if events > tokens:
                self._buckets[info.name] = (tokens, now)
                raise RateLimitedError(f"key {info.name!r} is over its rate of {int(rate)} "
                                  "events per second", math.ceil((events - tokens) / rate))
            self._buckets[info.name] = (tokens - events, now)
