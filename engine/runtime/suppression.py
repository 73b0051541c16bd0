"""Bounces, complaints and the suppression list (docs/engagement.md).

A hard bounce (a 5xx reply from the receiving SMTP server, or a provider's `bounce` of
type hard) and a complaint (someone marked a message as spam) put the address on the
suppression list: dispatch (engine/runtime/dispatch.py) skips every later send to it, in
every journey, with the decision `suppressed`. A soft bounce (mailbox full, greylisted)
is counted and nothing else: the SMTP path retries it like any transient failure.
`journeyman suppressions` shows and edits the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.ports import Engagement, Store, Suppression

HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT = "bounce", "soft_bounce", "complaint"
REASONS = {HARD_BOUNCE: "hard_bounce", COMPLAINT: "complaint"}


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event of `POST /v1/deliverability`, in the generic shape."""

    kind: str  # bounce (hard), soft_bounce, complaint
    address: str
    message_key: str | None = None
    reason: str | None = None


def record_delivery_problem(store: Store, event: ProviderEvent, *, source: str,
                            now: datetime, details: Mapping[str, Any] | None = None) -> bool:
    """Count a bounce or complaint against its message (when named and known) and, for
    a hard bounce or a complaint, suppress the address. True if newly suppressed. Call
    inside a transaction to make both one unit."""
    record = store.sent_message(event.message_key) if event.message_key else None
    if record is not None:
        entry = record.entry
        store.record_engagement(Engagement(event.kind, entry.key, entry.profile_id,
                                           entry.journey, entry.step, now,
                                           reason=(event.reason or "")[:64] or None))
    reason = REASONS.get(event.kind)
    if reason is None:
        return False
    return store.suppress(Suppression(event.address, reason, now, source, {
        **({"message": event.message_key} if event.message_key else {}),
        **({"detail": event.reason} if event.reason else {}), **(details or {})}))
