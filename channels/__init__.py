"""Delivery adapters behind the Channel port (engine/ports.py), one module each.

To add a channel: write `channels/<name>.py` with a class that has `name` and
`send(message)` (raise `engine.ports.DeliveryError(permanent=True)` when retrying cannot
help, anything else to be retried), then add it to `ADAPTERS` below; a new channel name
is an entry in `CHANNEL_KINDS` (journeys/templating.py); the README's "Where to add
things" names the rest (docs, tests, address traits, consent). Configure the
adapters per channel in `channels.yaml` (channels/config.py); its options are checked
against the class's `__init__` annotations (channels/options.py), so annotate them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.console import ConsoleChannel
from channels.email import EmailChannel
from channels.file import FileChannel
from channels.sms import SmsChannel
from channels.webhook import WebhookChannel
from engine.ports import Channel

ADAPTERS: dict[str, Callable[..., Channel]] = {
    "console": ConsoleChannel,
    "email": EmailChannel,
    "file": FileChannel,
    "sms": SmsChannel,
    "webhook": WebhookChannel,
}


def build(kind: str, **options: Any) -> Channel:
    """An adapter by kind, e.g. `build("file", path="sends.jsonl")`."""
    try:
        factory = ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown channel adapter {kind!r}; known: "
                         f"{', '.join(sorted(ADAPTERS))}") from None
    return factory(**options)


__all__ = ["ADAPTERS", "ConsoleChannel", "EmailChannel", "FileChannel", "SmsChannel",
           "WebhookChannel", "build"]
