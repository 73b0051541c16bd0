"""A claim's lease, kept while its sends go out (engine/runtime/dispatch.py).

The admission leases the rows it claims until `now + lease`; the sends then go out one by
one (or in chunks) outside any transaction, and their outcomes are written later. A
provider slow on every answer could hold the claim past its lease: another dispatcher
(another worker, or this one's next run) then claimed the rows not yet written and sent
them again. So before each send, or chunk of a `send_batch`, the dispatcher asks whether
the lease still covers the longest that send can take (the adapter's `longest_send`,
engine/ports.py Channel) plus a margin for its own work. When it does not, one short
UPDATE pushes the lease of the claim's rows forward -- only those still pending and
leased until exactly our time, that is, still this claim's. A row it does not touch was
taken over once the lease had run out: it is not sent, and nothing is written for it.

The new lease is `now + lease + longest + margin`, so the next `lease` of sending needs no
other; with sends of milliseconds and the service's 60 s lease no UPDATE ever runs. The
check reads the dispatcher's clock; on a fast clock (the demo's time-lapse) it extends
before nearly every send, and the send goes out after it all the same: an extension that
kept the rows is progress (half-lease rules that put rows back instead never sent on it).

Also the other guard against an adapter's bugs on this path: `batch_results`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from engine.ports import BatchChannel, Channel, DeliveryError, Message, Store

log = logging.getLogger("journeyman.dispatch")

# The longest one message may take on an adapter that states no `longest_send` (a user's
# own channel): three times the built-in adapters' default timeout of 10 s, as their own
# deadline (docs/channels.md).
DEFAULT_SEND_SECONDS = 30.0
MOST_SECONDS = 86400.0 * 365  # a bound beyond (or NaN) is an adapter's bug: the default
# Beyond the adapter's longest: our own work between the check and the outcomes' write
# (a message's bookkeeping, the write's transaction), a quarter of a short lease.
MARGIN = timedelta(seconds=5)


class SendBounds:
    """`bounds(channel, count)`: the adapter's `longest_send(count)`, or the default for
    one that states none; looked up once per adapter, not once per send."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Channel, Callable[[int], float]]] = {}

    def __call__(self, channel: Channel, count: int) -> float:
        known = self._known.get(id(channel))  # holding the adapter: its id stays its
        if known is None or known[0] is not channel:
            stated = getattr(channel, "longest_send", None)
            known = self._known[id(channel)] = (
                channel, stated if callable(stated) else _default_bound)
        try:  # an adapter's bug must not stop the delivery: the default, then
            seconds = float(known[1](count))
        except Exception:
            seconds = math.nan
        return seconds if 0 <= seconds < MOST_SECONDS else _default_bound(count)


def _default_bound(count: int) -> float:
    return DEFAULT_SEND_SECONDS * count


@dataclass
class ClaimLease:
    """The lease of a claim's rows to deliver: until when (`until`, the value their
    `next_attempt_at` holds while they are ours), and which rows another dispatcher took
    over (`lost`). `keys` are all the rows delivered: one written already is untouched by
    an extension, and is never looked at again."""

    store: Store
    lease: timedelta
    until: datetime
    keys: Collection[str]
    lost: set[str] = field(default_factory=set)
    # leases an extension that failed may have set all the same (its COMMIT failed)
    maybe: list[datetime] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.margin = min(MARGIN, self.lease / 4)

    def look(self, keys: Collection[str]) -> bool | None:
        """Before a write again of these rows' outcomes (outcomes.py), in its transaction:
        True if none of them is still pending at our lease (the write that failed
        committed, or another dispatcher claimed them, whose they are then), False if
        all are, None if some are and some not. Asked by extending the lease to where it
        is: an UPDATE waits for the row locks of a COMMIT still under way, and holds
        them to the transaction's end; a read would do neither."""
        for ours in (self.until, *self.maybe):
            still = self.store.extend_outbox_lease(keys, ours, ours)
            if still:
                return False if len(still) == len(set(keys)) else None
        return True

    def keep(self, now: datetime, seconds: float) -> bool:
        """Make sure the lease covers a send starting now that takes up to `seconds`:
        extend it if not (True; rows found taken over go to `lost`)."""
        longest = timedelta(seconds=seconds) + self.margin
        if self.until >= now + longest:
            return False
        ours = [key for key in self.keys if key not in self.lost]
        if not ours:  # none left to extend: `until` stays the time the rows hold, which
            return False  # `look` asks for (a failed extension's rows may hold it still)
        until = now + self.lease + longest
        try:
            kept = self.store.extend_outbox_lease(ours, self.until, until)
        except Exception as exc:  # the database is away: send nothing more on this claim
            log.warning("extending the lease of %d sends failed (%s); they wait for it to "
                        "end", len(self.keys), type(exc).__name__)
            self.lost.update(self.keys)
            self.maybe.append(until)
            return False
        self.lost.update(key for key in self.keys if key not in kept)
        self.until = until
        return True


def batch_results(channel: BatchChannel, messages: list[Message]) -> list[Exception | None]:
    """`send_batch`'s results, one per message. An adapter must settle each message
    itself and never raise (channels/email.py does); one that raises anyway, or answers
    with the wrong number of results, fails the chunk transiently here, so the exception
    cannot escape `dispatch_due` and leave the rows leased."""
    try:
        results = channel.send_batch(messages)
    except Exception as exc:  # an adapter's bug: retried with backoff like any failure
        return [exc] * len(messages)
    if len(results) != len(messages):
        error = DeliveryError(f"{channel.name} answered {len(results)} results for "
                              f"{len(messages)} messages")
        return [error] * len(messages)
    return results
