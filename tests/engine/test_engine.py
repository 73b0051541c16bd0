"""The engine on a fake clock: every step kind, entries, re-entry, exits, goals."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.testing import ExitRecord, InMemoryEngine, SentMessage
from tests.engine.helpers import stub_email, write_folder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CART = """
journey: cart
version: 1
entry:
  event: Checkout Started
  when:
    event.properties.cart_value: {gt: 0}
re_entry: {after: 7d}
exit_when:
  - event: Order Completed
goal: {event: Order Completed, within: 7d}
steps:
  - id: grace
    wait: 1h
  - id: reminder
    send: {channel: email, template: cart_reminder}
  - id: clicked
    wait_for:
      event: Email Clicked
      timeout: 24h
      on_event: done
      on_timeout: offer
  - id: offer
    branch:
      - when: {profile.traits.vip: {eq: true}}
        goto: vip_offer
      - else: plain_offer
  - id: vip_offer
    send: {channel: email, template: cart_vip}
    next: done
  - id: plain_offer
    send: {channel: email, template: cart_plain}
  - id: done
    exit: completed
"""


@pytest.fixture
def cart(tmp_path: Path) -> InMemoryEngine:
    folder = write_folder(tmp_path / "j", {"cart": CART}, {
        t: stub_email(t) for t in ("cart_reminder", "cart_vip", "cart_plain")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("u1", {"email": "u1@example.com"})
    return eng


def msg(template: str, step: str, at: datetime, profile: str = "u1") -> tuple[str, str, str, datetime]:
    return (profile, step, template, at)


def sent(eng: InMemoryEngine) -> list[tuple[str, str, str, datetime]]:
    return [(m.profile, m.step, m.template, m.at) for m in eng.sent]


def test_timeout_path_takes_the_plain_offer(cart: InMemoryEngine) -> None:
    cart.track("u1", "Checkout Started", {"cart_value": 10})
    cart.run_until_idle()
    assert sent(cart) == [msg("cart_reminder", "reminder", T0 + timedelta(hours=1)),
                          msg("cart_plain", "plain_offer", T0 + timedelta(hours=25))]
    assert cart.exits == [ExitRecord("u1", "cart", "done", "completed", T0 + timedelta(hours=25))]


def test_vip_branch(cart: InMemoryEngine) -> None:
    cart.identify("u1", {"vip": True})
    cart.track("u1", "Checkout Started", {"cart_value": 10})
    cart.run_until_idle()
    assert [m.template for m in cart.sent] == ["cart_reminder", "cart_vip"]


def test_wait_for_matched_goes_to_on_event(cart: InMemoryEngine) -> None:
    cart.track("u1", "Checkout Started", {"cart_value": 10})
    cart.track("u1", "Email Clicked", at=T0 + timedelta(hours=2))
    cart.run_until_idle()
    assert [m.template for m in cart.sent] == ["cart_reminder"]
    assert cart.exits == [ExitRecord("u1", "cart", "done", "completed", T0 + timedelta(hours=2))]


def test_an_event_before_the_wait_for_does_not_count(cart: InMemoryEngine) -> None:
    cart.track("u1", "Checkout Started", {"cart_value": 10})
    cart.track("u1", "Email Clicked", at=T0 + timedelta(minutes=30))  # still in `grace`
    cart.run_until_idle()
    assert [m.template for m in cart.sent] == ["cart_reminder", "cart_plain"]


def test_exit_when_cancels_pending_timers_and_records_the_goal(cart: InMemoryEngine) -> None:
    cart.track("u1", "Checkout Started", {"cart_value": 10})
    cart.track("u1", "Order Completed", {"revenue": 10}, at=T0 + timedelta(minutes=30))
    cart.run_until_idle()
    assert cart.sent == []
    assert cart.exits == [ExitRecord("u1", "cart", "grace", "exit_when:Order Completed",
                                     T0 + timedelta(minutes=30))]
    assert len(cart.store.goals) == 1
    assert cart.store.timers == {}


def test_entry_condition_filters(cart: InMemoryEngine) -> None:
    cart.track("u1", "Checkout Started", {"cart_value": 0})
    cart.run_until_idle()
    assert cart.sent == []


def test_re_entry_after_seven_days(cart: InMemoryEngine) -> None:
    cart.track("u1", "Checkout Started", {"cart_value": 10})
    cart.run_until_idle()
    cart.track("u1", "Checkout Started", {"cart_value": 10}, at=T0 + timedelta(days=3))
    cart.run_until_idle()
    assert len(cart.enrollments("u1", "cart")) == 1
    cart.track("u1", "Checkout Started", {"cart_value": 10}, at=T0 + timedelta(days=7))
    cart.run_until_idle()
    assert len(cart.enrollments("u1", "cart")) == 2
    assert len(cart.sent) == 4


def test_a_week_of_simulated_time_for_many_profiles_is_fast(cart: InMemoryEngine) -> None:
    # CPU time, not wall time: the promise is about the engine's work, and a shared CI
    # machine can stretch wall time several-fold.
    started = time.process_time()
    for i in range(100):
        cart.identify(f"p{i}", {"email": f"p{i}@example.com"})
        cart.track(f"p{i}", "Checkout Started", {"cart_value": 5})
    cart.advance(timedelta(days=7))
    elapsed = time.process_time() - started
    assert len(cart.sent) == 200
    assert elapsed < 1.0, f"a week for 100 profiles took {elapsed:.2f} s of CPU"


DRIP = """
journey: drip
version: 1
entry: {event: Lead Created}
steps:
  - id: mark
    set_data: {source: "{{ event.properties.source }}"}
  - id: points
    update_profile: {set: {lead_source: "{{ enrollment.data.source }}"}, increment: {points: 5}}
  - id: morning
    wait: {until: "10:00", tz: profile}
  - id: hello
    send: {channel: email, template: hello}
  - id: tell_friend
    emit: {event: Friend Nudged, to: "{{ event.properties.friend }}", properties: {by: "{{ profile.id }}"}}
"""
NUDGED = """
journey: nudged
version: 1
entry: {event: Friend Nudged}
steps:
  - id: thanks
    send: {channel: email, template: nudge}
"""


def test_every_instant_step_kind_and_emit_to_another_profile(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"drip": DRIP, "nudged": NUDGED},
                          {"hello": stub_email("hello"), "nudge": stub_email("nudge")})
    eng = InMemoryEngine.from_folder(folder, start=T0)  # 09:00 UTC = 10:00 Madrid
    eng.identify("f1", {"email": "f1@example.com"})
    eng.identify("u1", {"email": "u1@example.com", "timezone": "Europe/Madrid", "points": 1})
    eng.track("u1", "Lead Created", {"source": "webinar", "friend": "f1"})
    eng.run_until_idle()
    assert eng.profile("u1").traits["lead_source"] == "webinar"
    assert eng.profile("u1").traits["points"] == 6
    assert eng.sent[0] == SentMessage("u1", "drip", "hello", "email", "hello",
                                      datetime(2026, 3, 3, 9, 0, tzinfo=UTC), "u1@example.com",
                                      "hello for u1", "hi u1")
    assert [(m.profile, m.template) for m in eng.sent] == [("u1", "hello"), ("f1", "nudge")]
    assert eng.emitted[0]["properties"] == {"by": "u1"}


SPLIT = """
journey: ab
version: 1
entry: {event: Go}
steps:
  - id: test
    split:
      holdout: 20
      variants:
        - {name: a, weight: 50, goto: send_a}
        - {name: b, weight: 50, goto: send_b}
  - id: send_a
    send: {channel: email, template: a}
    next: end
  - id: send_b
    send: {channel: email, template: b}
  - id: end
    exit: done
"""


def test_split_with_holdout(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"ab": SPLIT}, {"a": stub_email("a"),
                                                         "b": stub_email("b")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    for i in range(300):
        eng.identify(f"u{i}", {"email": f"u{i}@example.com"})
        eng.track(f"u{i}", "Go")
    reasons = [e.reason for e in eng.exits]
    assert 30 < reasons.count("holdout") < 90
    templates = [m.template for m in eng.sent]
    assert 90 < templates.count("a") < 150
    assert len(templates) + reasons.count("holdout") == 300


BIRTHDAY = """
journey: birthday
version: 1
entry:
  schedule: "0 9 * * *"
  when:
    profile.computed.birthday_today: {eq: true}
re_entry: {after: 300d}
steps:
  - id: card
    send: {channel: email, template: card}
"""


def test_cron_entry_in_profile_time_zones(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"birthday": BIRTHDAY}, {"card": stub_email("card")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("mad", {"email": "m@example.com", "timezone": "Europe/Madrid",
                         "birthday": "1990-03-04"})
    eng.identify("ny", {"email": "n@example.com", "timezone": "America/New_York",
                        "birthday": "1985-03-04"})
    eng.advance(timedelta(days=5))
    assert [(m.profile, m.at) for m in eng.sent] == [
        ("mad", datetime(2026, 3, 4, 8, 0, tzinfo=UTC)),   # 09:00 CET
        ("ny", datetime(2026, 3, 4, 14, 0, tzinfo=UTC)),   # 09:00 EST
    ]


def test_bad_template_render_skips_the_send_and_records_why(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"drip": DRIP, "nudged": NUDGED}, {
        "hello": "channel: email\nsubject: 'Hi {{ profile.traits.first_name }}'\ntext: x\n",
        "nudge": stub_email("nudge")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("f1", {"email": "f1@example.com"})
    eng.track("u1", "Lead Created", {"source": "x", "friend": "f1"})
    eng.run_until_idle()
    assert [m.template for m in eng.sent] == ["nudge"]  # the journey went on
    (decision,) = [d for d in eng.decisions if d.what in ("skipped", "deferred", "failed")]
    assert decision.reason == "template_error"
    assert "first_name" in decision.details["error"]


def test_overdue_timers_fire_once_and_record_their_lateness(cart: InMemoryEngine) -> None:
    """Downtime: the clock jumps past a timer's due time without firing it; the next
    tick fires it once, late, and the decision log says how late."""
    cart.identify("u1", {"email": "u1@example.com"})
    cart.track("u1", "Checkout Started", {"cart_value": 40})
    cart.clock.advance(timedelta(hours=3))  # the service was down: nothing fired
    assert cart.worker.fire_timers() == 1
    assert cart.worker.fire_timers() == 0
    cart.dispatcher.dispatch_due()
    assert [m.template for m in cart.sent] == ["cart_reminder"]
    [late] = [d for d in cart.decisions if d.what == "fired_late"]
    assert (late.step, late.reason) == ("grace", "timer_overdue")
    assert late.details["late_seconds"] == 2 * 3600


def test_the_core_explains_its_decisions_only_when_asked(tmp_path: Path) -> None:
    """`advance(..., explain=False)` makes the same moves without a single Note."""
    from engine.core import advance, new_enrollment
    from engine.core.model import Enter, Note, Profile
    from journeys.compiler import compile_library
    from journeys.loader import load_path

    folder = write_folder(tmp_path, {"j": """\
        journey: j
        version: 1
        entry: {event: Go}
        steps:
          - id: check
            branch:
              - when: {profile.traits.plan: premium}
                goto: pause
              - else: pause
          - id: pause
            wait: 1d
        """})
    journey = compile_library(load_path(folder), backend="python")["j"]
    profile = Profile("ana", {"plan": "premium"})
    start = new_enrollment(journey, profile, {"event": "Go"}, 0, T0)
    told = advance(journey, start, Enter(profile), T0)
    quiet = advance(journey, start, Enter(profile), T0, explain=False)
    notes = [c for c in told.commands if isinstance(c, Note)]
    assert [(n.kind, n.step, n.reason) for n in notes] == [
        ("branch", "check", "case 1 -> pause (profile.traits.plan 'premium')"),
        ("waiting", "pause", "until 2026-03-03T09:00:00Z")]
    assert not any(isinstance(c, Note) for c in quiet.commands)
    assert told.enrollment == quiet.enrollment
    assert [c for c in told.commands if not isinstance(c, Note)] == list(quiet.commands)


UPGRADE = """
journey: a_upgrade
version: 1
entry: {event: Upgraded}
steps:
  - id: mark
    update_profile: {set: {tier: gold}}
"""
GOLD = """
journey: b_gold
version: 1
entry:
  event: Upgraded
  when:
    profile.traits.tier: {eq: gold}
steps:
  - id: welcome
    send: {channel: email, template: hello}
"""


@pytest.mark.parametrize("order", [("a_upgrade", "b_gold"), ("b_gold", "a_upgrade")])
def test_a_journey_sees_the_profile_an_earlier_journey_changed_for_the_same_event(
        tmp_path: Path, order: tuple[str, str]) -> None:
    """The journeys an event reaches are matched one after another against one view of
    the profile, its facts shared; a step that changes the profile makes a new view, so
    the next journey reads the change (journeys in the order of their ids: a_upgrade
    first, then b_gold enters on the same event; the other way round, b_gold is matched
    before the change and does not)."""
    first, second = order
    bodies = {"a_upgrade": UPGRADE, "b_gold": GOLD}
    folder = write_folder(tmp_path / "j", {
        "p_" + first: bodies[first].replace(f"journey: {first}", f"journey: p_{first}"),
        "q_" + second: bodies[second].replace(f"journey: {second}", f"journey: q_{second}")},
        {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("u1", {"email": "u1@example.com"})
    eng.track("u1", "Upgraded")
    assert eng.profile("u1").traits["tier"] == "gold"
    entered = [m.profile for m in eng.sent if m.template == "hello"]
    assert entered == (["u1"] if first == "a_upgrade" else [])


def test_a_template_sees_the_step_it_is_sent_from(tmp_path: Path) -> None:
    """`enrollment.state` in a template names the send step, whether it runs right after
    another step of the same advance or after a wait (an advance copies the enrollment
    once at its end, not at each step: engine/core/steps/base.py `StepRun.state`)."""
    where = "channel: email\nsubject: x\ntext: 'at {{ enrollment.state }} ({{ enrollment.status }})'\n"
    folder = write_folder(tmp_path / "j", {"steps_seen": """
        journey: steps_seen
        version: 1
        entry: {event: Bought}
        steps:
          - id: first
            send: {channel: email, template: where}
          - id: also
            send: {channel: email, template: where}
          - id: pause
            wait: 1h
          - id: last
            send: {channel: email, template: where}
        """}, {"where": where})
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("u1", {"email": "u1@example.com"})
    eng.track("u1", "Bought")
    eng.run_until_idle()
    assert [m.rendered.text for m in eng.channel.messages] == [
        "at first (active)", "at also (active)", "at last (active)"]
