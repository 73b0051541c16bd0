"""Every channel a journey may send on (CHANNEL_KINDS, journeys/templating.py) has an
adapter wherever journeyman builds one for every channel: the in-memory engine that
`simulate`, `journeyman test` and the pytest plugin run on, and `serve`/`worker`/`demo`
without a channels.yaml. Both kept a list of their own: a channel added to
CHANNEL_KINDS, as the README says, validated, then every send on it in `simulate` failed
for good with "no channel adapter"."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.cli.running import channels_for
from engine.testing import InMemoryEngine
from journeys.loaded import Library
from journeys.templating import CHANNEL_KINDS


def test_the_in_memory_engine_has_an_adapter_for_every_channel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHANNEL_KINDS, "pager", "body")
    engine = InMemoryEngine(Library(None), start=datetime(2026, 3, 2, tzinfo=UTC))
    assert set(engine.dispatcher.channels) == set(CHANNEL_KINDS)


def test_serve_without_channels_yaml_has_an_adapter_for_every_channel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CHANNEL_KINDS, "pager", "body")
    assert set(channels_for("console")) == set(CHANNEL_KINDS)
