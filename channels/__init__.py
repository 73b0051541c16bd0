"""Delivery adapters behind the Channel port (engine/ports.py), one module each.

To add a channel: write `channels/<name>.py` with a class that has `name` and
`send(message)` (raise `engine.ports.DeliveryError(permanent=True)` when retrying cannot
help, anything else to be retried), then add it to `ADAPTERS` below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from channels.console import ConsoleChannel
from channels.file import FileChannel
from engine.ports import Channel

ADAPTERS: dict[str, Callable[..., Channel]] = {
    "console": ConsoleChannel,
    "file": FileChannel,
}


def build(kind: str, **options: Any) -> Channel:
    """An adapter by kind, e.g. `build("file", path="sends.jsonl")`."""
    try:
        factory = ADAPTERS[kind]
    except KeyError:
        raise ValueError(f"unknown channel adapter {kind!r}; known: "
                         f"{', '.join(sorted(ADAPTERS))}") from None
    return factory(**options)


def console_for(names: Mapping[str, Any] | tuple[str, ...]) -> dict[str, Channel]:
    """One console adapter serving every channel named (the demo's setup)."""
    console = ConsoleChannel()
    return dict.fromkeys(names, console)


__all__ = ["ADAPTERS", "ConsoleChannel", "FileChannel", "build", "console_for"]
