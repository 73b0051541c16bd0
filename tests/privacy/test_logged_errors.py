"""A template that fails to render for a person logs no value of theirs (docs/privacy.md,
"Logs"): Jinja2's words quote the value that failed (`'dict object' has no attribute
'Zebulonius'`), and the worker logged them with every retry of the event or timer, a
first name in the log where only e-mail addresses and phone numbers are redacted. The
log line says where and what kind of error; its words are kept with the failure only
(`journeyman failures`)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.testing import InMemoryEngine
from tests.api.test_api import NOW
from tests.engine.helpers import write_folder

GREET = """
journey: greet
version: 1
entry: {event: Signed Up}
steps:
  - id: mark
    update_profile:
      set:
        greeting: "{{ {'es': 'Hola', 'en': 'Hi'}[profile.traits.first_name] }}"
"""
LATER = """
journey: later
version: 1
entry: {event: Order Completed}
steps:
  - id: pause
    wait: 1h
  - id: tell
    emit:
      event: Ranked
      properties:
        rank: "{{ ['a', 'b'].index(profile.traits.city) }}"
"""


def test_a_failing_template_logs_no_value_of_the_person(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eng = InMemoryEngine.from_folder(write_folder(tmp_path, {"greet": GREET, "later": LATER}),
                                     start=NOW)
    with caplog.at_level(logging.DEBUG, logger="journeyman"):
        eng.identify("zeb-7731", {"first_name": "Zebulonius"})
        eng.track("zeb-7731", "Signed Up")
        eng.identify("ida-99", {"city": "Villarrubia"})  # not held behind Zeb's event
        eng.track("ida-99", "Order Completed")
        eng.advance("7d")  # every retry, then parked
    failed = [r.getMessage() for r in caplog.records if "TemplateRenderError" in r.getMessage()]
    assert any(m.startswith("event ") for m in failed), failed
    assert any(m.startswith("timer ") for m in failed), failed
    assert any("'dict object'" not in m and "UndefinedError" in m for m in failed), failed
    assert any("ValueError" in m for m in failed), failed
    for value in ("Zebulonius", "Villarrubia"):
        assert value not in caplog.text
    # what failed, in its own words, is kept with the failure for the operator
    parked = eng.store.failures()
    assert {f.kind for f in parked} == {"event", "timer"}
    assert any("Zebulonius" in f.error for f in parked)


def test_an_e_mail_trait_that_is_no_address_is_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    """A person typed their name where the e-mail goes: the send fails for good, and the
    log said `invalid email address 'Zebulonius Quill'` (the filter redacts what looks
    like an address, and this does not). The value is kept with the send only."""
    from dataclasses import replace

    from engine.runtime.dispatch import Dispatcher
    from engine.testing import FakeClock, InMemoryStore
    from tests.channels.test_email import make_channel
    from tests.net import free_port
    from tests.store.helpers import T0, outbox_entry

    store, adapter = InMemoryStore(), make_channel(free_port())
    for key, to in (("e1:send:0", "Zebulonius Quill"),
                    ("e2:send:0", "Zebulonius Quill <z@example.org>, Bea Trice <b@example.org>")):
        store.enqueue_send(replace(outbox_entry(key), to=to))
    with caplog.at_level(logging.DEBUG, logger="journeyman"):
        Dispatcher(store, {"email": adapter}, FakeClock(T0)).dispatch_due()
    adapter.close()
    assert {r.status for r in store.outbox_records()} == {"failed"}
    assert "failed for good: invalid email address" in caplog.text
    assert "failed for good: more than one email address" in caplog.text
    assert "Zebulonius" not in caplog.text
    assert all("Zebulonius Quill" in (r.last_error or "") for r in store.outbox_records())
