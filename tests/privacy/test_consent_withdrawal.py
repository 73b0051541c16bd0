"""A consent withdrawal stops sends even while it waits behind a failed event
(docs/privacy.md, "Consent records"). A person's events are handled in order, and a
parked event holds their later ones until an operator acts: an unsubscribe (an identify
setting `consent.email: false`) accepted after it waited there, the profile still said
`true`, and a send queued a day later by a wait went out to the person who had
withdrawn."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from engine.ports import Store
from engine.testing import InMemoryEngine
from tests.engine.helpers import write_folder

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = """
journey: later
version: 1
entry: {event: Signed Up}
steps:
  - id: pause
    wait: 1d
  - id: hi
    send: {channel: email, template: hi}
"""
BROKEN = """
journey: broken
version: 1
entry: {event: Bad Thing}
steps:
  - id: mark
    update_profile:
      set:
        x: "{{ {'a': 1}[profile.traits.first_name] }}"
"""


def test_a_withdrawal_waiting_behind_a_parked_event_stops_the_send(
        store: Store, tmp_path: Path) -> None:
    folder = write_folder(tmp_path, {"later": LATER, "broken": BROKEN},
                          {"hi": "channel: email\nsubject: Hi\ntext: hi\n"},
                          policy="timezone: UTC\nconsent_required: [email]\n")
    eng = InMemoryEngine.from_folder(folder, start=START)
    eng.use_store(store)
    for who in ("zeb-7731", "ann"):
        eng.identify(who, {"email": f"{who}@example.org", "first_name": "Zeb",
                           "consent": {"email": True}})
        eng.track(who, "Signed Up")
        eng.track(who, "Bad Thing")  # fails every attempt: parked, holds what follows
    eng.advance("1h")
    assert sorted(f.profile_id for f in store.failures()) == ["ann", "zeb-7731"]
    eng.post({"type": "identify", "userId": "zeb-7731",
              "traits": {"consent": {"email": False}}, "context": {"source": "unsubscribe"}})
    # Ann withdrew, then gave it again: her last word is yes
    for value in (False, True):
        eng.identify("ann", {"consent": {"email": value}})
    eng.advance("2d")
    assert [m.profile for m in eng.sent] == ["ann"]
    skipped = [d for d in store.recorded_decisions("zeb-7731") if d.what == "skipped"]
    assert [(d.step, d.reason) for d in skipped] == [("hi", "no_consent")]
