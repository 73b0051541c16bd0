"""A send's own webhook URL (`allow_to_override`: the profile's text) whose host can
never be a name (a label over 63 characters, an empty one): the lookup's encoding
refused it with a bare `UnicodeError`, which the dispatcher took for an adapter's bug:
the whole channel held for the claim, the send retried to its last attempt."""

from __future__ import annotations

from dataclasses import replace

import pytest

from channels.webhook import WebhookChannel
from engine.ports import DeliveryError
from engine.runtime.dispatch import Dispatcher
from engine.testing import FakeClock, InMemoryStore
from tests.channels.raw_server import RawServer
from tests.channels.test_recipient_failures import _created
from tests.channels.test_webhook import SECRET, message, webhook_entry
from tests.store.helpers import T0

LONG_LABEL = "http://" + "a" * 64 + ".example.com/hook"


@pytest.mark.parametrize("url", [LONG_LABEL, "http://a..example.com/hook"])
def test_a_host_that_cannot_be_a_name_fails_for_good(url: str) -> None:
    with WebhookChannel("http://127.0.0.1:9/hook", secret=SECRET, timeout=1.0,
                        allow_to_override=True) as hook, \
            pytest.raises(DeliveryError) as failed:
        hook.send(message(to=url))
    assert failed.value.permanent
    assert "cannot build the request" in str(failed.value)


def test_it_does_not_hold_the_channels_other_sends() -> None:
    store, clock = InMemoryStore(), FakeClock(T0)
    with RawServer(_created) as live:
        for key, to in (("h0", LONG_LABEL), ("h1", None)):
            store.enqueue_send(replace(webhook_entry(f"{key}:hook:0", to), profile_id=key))
        with WebhookChannel(live.url, secret=SECRET, timeout=1.0,
                            allow_to_override=True) as hook:
            Dispatcher(store, {"webhook": hook}, clock).dispatch_due()
    assert [r.status for r in store.outbox_records()] == ["failed", "sent"]
