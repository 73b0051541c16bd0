"""What failed transiently in one claim of the dispatcher (engine/runtime/dispatch.py),
and so which of the claim's later sends wait, unattempted, for the backoff.

A channel that failed (`(name, None)`: down, timing out) holds all its later sends in
the claim, so a claim cannot outlast its lease while a server swallows connections.
A recipient that failed (`(name, to)`, `DeliveryError.recipient`: a greylisted
address, a send's own webhook URL) holds only its own later sends, and the channel's
other sends go on; but `RECIPIENT_STREAK` recipients failing one after another, none
delivered between, are the channel's failure: a relay answering 450 to every RCPT TO
(a recipient rate limit, full storage), a resolver failing every name. Each of them was
otherwise tried, an attempt and a soft bounce apiece, against a relay that asked for a
pause.
"""

from __future__ import annotations

from engine.ports import OutboxEntry
from engine.values import CHANNEL_UNAVAILABLE, RECIPIENT_UNAVAILABLE

Failed = tuple[str, str | None]  # (channel, None): the channel; (channel, to): a recipient
RECIPIENT_STREAK = 3  # recipients failing in a row, none delivered between: the channel


class Failing:
    """The channels and recipients that failed transiently in a claim so far."""

    def __init__(self) -> None:
        self._failed: set[Failed] = set()
        self._streak: dict[str, set[str]] = {}  # a channel's recipients failed in a row

    def note(self, channel: str, failed: Failed | None) -> None:
        """A send of `channel` was settled: `failed` is what failed transiently, if
        anything (None: delivered, or failed for good, an answer of a working server)."""
        if failed is None:
            self._streak.pop(channel, None)
            return
        self._failed.add(failed)
        to = failed[1]
        if to is None:
            return
        streak = self._streak.setdefault(channel, set())
        streak.add(to)
        if len(streak) >= RECIPIENT_STREAK:
            self._failed.add((channel, None))

    def channel_down(self, channel: str) -> bool:
        return (channel, None) in self._failed

    def held(self, entry: OutboxEntry) -> str | None:
        """Why this send waits unattempted, if it does: its channel or its recipient
        failed earlier in the claim (the store keeps the row's earlier error after it:
        engine/values.py `held_error`)."""
        if not self._failed:
            return None
        if (entry.channel, None) in self._failed:
            return CHANNEL_UNAVAILABLE
        if (entry.channel, entry.to) in self._failed:
            return RECIPIENT_UNAVAILABLE
        return None


__all__ = ["RECIPIENT_STREAK", "Failed", "Failing"]
