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


def test_a_channel_with_an_address_trait_skips_a_send_without_an_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The trait that holds a person's address on a channel (ADDRESS_TRAITS,
    engine/runtime/rendering.py) is the one list of channels that need one: the
    dispatcher skipped `no_address` by a list of its own (ADDRESSED_CHANNELS), so a
    channel given an address trait went on to its adapter with no address."""
    from dataclasses import replace

    from engine.runtime.dispatch import Dispatcher
    from engine.runtime.rendering import ADDRESS_TRAITS
    from engine.testing import FakeClock, InMemoryStore, RecordingChannel
    from tests.store.helpers import T0, outbox_entry

    monkeypatch.setitem(ADDRESS_TRAITS, "pager", "pager_id")
    store, channel = InMemoryStore(), RecordingChannel()
    store.enqueue_send(replace(outbox_entry("e1:page:0"), channel="pager", to=None))
    Dispatcher(store, {"pager": channel}, FakeClock(T0)).dispatch_due()
    assert not channel.messages
    record = store.outbox_records()[0]
    assert (record.status, record.last_error) == ("skipped", "no_address")
