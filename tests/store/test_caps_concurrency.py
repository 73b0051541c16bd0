"""Caps that hold across processes: several dispatchers (each with a store of its own on
one database, as separate worker processes have) claim one outbox at the same instant.
Each profile has three sends due at once from journeys of different priority, under a
cap of one e-mail a week: every profile gets exactly one, the highest priority's."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from engine.ports import OutboxEntry
from engine.runtime.dispatch import Dispatcher
from engine.runtime.policy import PolicyGate
from engine.store import SqlStore
from engine.testing import FakeClock, RecordingChannel
from journeys.model import Cap, Policy
from journeys.templating import Rendered
from tests.store.helpers import T0

PRIORITIES = {"high": 10, "mid": 5, "low": 0}
PROFILES = 24


def send(profile: str, journey: str, n: int) -> OutboxEntry:
    rendered = Rendered("note", "email", subject="Hi", html="<p>Hi</p>", text="Hi")
    # queued low priority first, so the order they were queued in never decides alone
    return OutboxEntry(f"{profile}:{journey}", f"e-{profile}-{journey}", profile, journey,
                       "note", "email", f"{profile}@example.com", rendered,
                       T0 - timedelta(seconds=1) + timedelta(microseconds=n))


@pytest.mark.parametrize("dispatchers", [2, 4])
def test_concurrent_dispatchers_never_over_send_a_cap(sql_store: SqlStore,
                                                      dispatchers: int) -> None:
    clock = FakeClock(T0)
    n = 0
    for p in range(PROFILES):
        for journey in ("low", "mid", "high"):
            sql_store.enqueue_send(send(f"p{p}", journey, n))
            n += 1
    policy = Policy(consent_required=[],  # consent is not what this test is about
                    frequency_caps={"email": Cap(max=1, per=timedelta(days=7))})
    channel = RecordingChannel()
    stores = [SqlStore(sql_store.url, clock=clock) for _ in range(dispatchers)]
    workers = [Dispatcher(s, {"email": channel}, clock, batch=2,
                          gate=PolicyGate(policy, priorities=PRIORITIES)) for s in stores]
    start = threading.Barrier(dispatchers)
    errors: list[BaseException] = []

    def run(worker: Dispatcher) -> None:
        try:
            start.wait()
            for _ in range(50):  # until the outbox is empty (a profile may be busy)
                worker.dispatch_due()
                if sql_store.next_outbox_at() is None:
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        for s in stores:
            s.close()
    assert errors == []
    per_profile = Counter(m.profile_id for m in channel.messages)
    assert per_profile == {f"p{p}": 1 for p in range(PROFILES)}
    assert {m.journey for m in channel.messages} == {"high"}
    assert sql_store.outbox_counts() == {"sent": PROFILES, "skipped": 2 * PROFILES}
    capped = [d for d in sql_store.recorded_decisions() if d.reason == "frequency_cap"]
    assert Counter(d.journey for d in capped) == {"mid": PROFILES, "low": PROFILES}
    assert sum(w.stats.sent for w in workers) == PROFILES
