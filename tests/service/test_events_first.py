"""Events first (engine/service.py `EVENTS_FIRST`, `journeyman serve/worker
--events-first`): a send queued while the event loop works through a burst waits for
that run to end, at most `events_first` seconds, then goes out with the sends queued
meanwhile. A real service on a SQLite file, its loops on the wall clock, a channel that
records what the inbox held when each message reached it."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.ports import Message
from engine.service import Service
from tests.engine.helpers import HELLO, stub_email, write_folder
from tests.store.helpers import outbox_entry, timer

PEOPLE = 200  # each identified (an e-mail address), then Signed Up: a send each
BURST = 2 * PEOPLE  # events accepted at once
STORM = 40_000  # timers due at once: seconds of firing


class InboxAtDelivery:
    """An email channel that notes, for each message, the events still in the inbox."""

    name = "email"

    def __init__(self) -> None:
        self.service: Service | None = None
        self.pending_at_send: list[int] = []
        self.sent_at: list[float] = []
        self.all_sent = threading.Event()
        self.expect = PEOPLE

    def send(self, message: Message) -> None:
        assert self.service is not None
        self.pending_at_send.append(sum(self.service.store.inbox_counts().values()))
        self.sent_at.append(time.monotonic())
        if len(self.sent_at) >= self.expect:
            self.all_sent.set()


@contextmanager
def running(tmp_path: Path, channel: InboxAtDelivery, **options: float) -> Iterator[Service]:
    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": stub_email("welcome")})
    # As `journeyman worker` on SQLite (batches handled outside the write lock, which
    # the dispatcher can take meanwhile), with a batch budget of 1 ms: the burst takes
    # many batches, each waking the dispatcher
    service = Service(folder, f"sqlite:///{tmp_path / 'e.db'}", channels={"email": channel},
                      batch_budget=0.001, optimistic=True, **options)
    channel.service = service
    try:
        yield service
    finally:
        service.stop()


def burst(service: Service, people: int = PEOPLE) -> None:
    events: list[dict[str, object]] = []
    for i in range(people):
        events += [{"type": "identify", "userId": f"p{i}", "messageId": f"i{i}",
                    "traits": {"email": f"p{i}@example.com"}},
                   {"type": "track", "event": "Signed Up", "userId": f"p{i}",
                    "messageId": f"s{i}"}]
    service.store.accept_events(events)
    service.wake_events()


def start_settled(service: Service) -> None:
    """Start the service and wait until its loops' first runs (at start) are over, so a
    burst meets no loop still in its first run (until 3d8a19f a timer loop in its first
    run when the first sends were queued meant no wait at all; on a loaded machine the
    burst met it 3 times in 10)."""
    service.start()
    for loop in service._loops.values():
        until(lambda loop=loop: loop._last_start > float("-inf") and loop.idle.is_set(),
              f"the {loop.name} loop's first run did not end")


def events_left_at_each_send(tmp_path: Path, events_first: float, *, people: int = PEOPLE,
                             **options: float) -> list[int]:
    """The burst (of `people`) through a started service: the events still in the inbox
    as each of its sends reached the channel."""
    channel = InboxAtDelivery()
    channel.expect = people
    with running(tmp_path, channel, events_first=events_first, **options) as service:
        start_settled(service)
        burst(service, people)
        assert channel.all_sent.wait(30), f"{len(channel.sent_at)} of {people} sent"
    return channel.pending_at_send


def test_sends_wait_for_the_burst_of_events_that_queued_them(tmp_path: Path) -> None:
    # Every send went out after the last event was handled, though the first batch
    # queued its sends and woke the dispatcher while hundreds of events waited
    left = events_left_at_each_send(tmp_path, 30.0)
    assert max(left) == 0, left[:20]


def test_the_timer_loop_looking_for_due_timers_does_not_end_the_wait(tmp_path: Path) -> None:
    """The safety tick runs the timer loop every `tick` seconds with nothing due: such a
    run holds the runner for a moment, not the event loop for a storm, so the sends
    still wait for the whole burst (looking at whether the timer loop ran at all ended
    most waits early)."""
    left = events_left_at_each_send(tmp_path, 30.0, people=5 * PEOPLE, tick=0.01)
    assert max(left) == 0, left[:20]


def test_without_events_first_sends_go_out_during_the_burst(tmp_path: Path) -> None:
    """The control: `--events-first 0` sends as each batch queues (as before)."""
    assert max(events_left_at_each_send(tmp_path, 0.0)) > 0


def test_a_long_burst_holds_sends_back_no_longer_than_events_first(tmp_path: Path) -> None:
    """A burst that lasts longer than `events_first`: its sends go out while it goes on
    (with an unbounded wait none would before the inbox is empty)."""
    assert max(events_left_at_each_send(tmp_path, 0.02)) > 0


def test_sends_do_not_wait_for_an_event_loop_stuck_behind_a_timer_storm(
        tmp_path: Path) -> None:
    """A storm of due timers holds the runner, so the event loop's run only waits for
    it: a send queued meanwhile goes at once, not after `events_first`."""
    channel = InboxAtDelivery()
    channel.expect = 1
    with running(tmp_path, channel, events_first=10.0) as service:
        now = service.clock.now()
        service.store.add_timers([timer(f"t{i}", now, enrollment=f"gone{i}")
                                  for i in range(STORM)])  # no enrollment: fired, dropped
        service.start()
        loops = service._loops
        until(lambda: not loops["timers"].idle.is_set(), "the timer loop did not start")
        burst(service)
        until(lambda: not loops["events"].idle.is_set(), "the event loop did not start")
        service.store.enqueue_send(outbox_entry("k1", now))
        queued = time.monotonic()
        service._loops["outbox"].wake()
        assert channel.all_sent.wait(5), "the send waited for the event loop"
        assert not loops["timers"].idle.is_set(), "the storm ended too soon to tell"
        assert channel.sent_at[0] - queued < 3.0


def until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def test_a_timer_storm_that_starts_during_the_wait_ends_it(tmp_path: Path) -> None:
    """A dispatcher already waiting for a burst of events stops waiting when a storm of
    due timers starts firing: the event loop's run then only waits for the runner, which
    the storm holds, so the wait would last as long as the storm (up to the bound, here
    10 s). The safety tick is a minute, so only the wake-up below starts the storm."""
    channel = InboxAtDelivery()
    channel.expect = 1
    with running(tmp_path, channel, events_first=10.0, tick=60.0) as service:
        now = service.clock.now()
        start_settled(service)
        loops = service._loops
        service.store.add_timers([timer(f"t{i}", now, enrollment=f"gone{i}")
                                  for i in range(STORM)])  # due; the timer loop not woken
        burst(service, people=5 * PEOPLE)
        until(lambda: not loops["events"].idle.is_set(), "the event loop did not start")
        service.store.enqueue_send(outbox_entry("k1", now))
        loops["outbox"].wake()
        until(lambda: not loops["outbox"].idle.is_set(), "the dispatcher did not start")
        # the dispatcher waits for the burst
        assert not channel.sent_at, "the burst ended too soon to tell"
        assert not loops["events"].idle.is_set(), "the burst ended too soon to tell"
        started = time.monotonic()
        loops["timers"].wake()
        assert channel.all_sent.wait(5), "the send waited out the bound"
        assert channel.sent_at[0] - started < 3.0, "the send waited for the storm"
        assert service.worker.firing.is_set(), "the storm ended too soon to tell"


def test_serve_and_worker_default_to_the_service_bound() -> None:
    """`journeyman serve` and `worker` wait as long as `Service` does by default."""
    from engine.cli.running import serve, worker
    from engine.service import EVENTS_FIRST

    for command in (serve, worker):
        default = inspect.signature(command).parameters["events_first"].default
        assert default == EVENTS_FIRST, (command.__name__, default)
