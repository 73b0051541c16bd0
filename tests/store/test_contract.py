"""The Store contract, run on InMemoryStore (the reference), SqlStore/SQLite and
SqlStore/PostgreSQL. A behaviour the in-memory store has must hold on the databases."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from engine.core.model import Exit, Profile, RecordGoal
from engine.ports import Decision
from tests.store.helpers import (
    T0,
    enrollment,
    later,
    outbox_entry,
    timer,
)

# --- profiles ------------------------------------------------------------------------


def test_profiles_round_trip(store: Any) -> None:
    assert store.get_profile("p1") is None
    assert list(store.profile_ids()) == []
    store.put_profile(Profile("p1", {"email": "a@example.com", "tags": ["x", "y"]},
                              {"orders_count": 2, "total_spent": 12.5}))
    store.put_profile(Profile("p2"))
    assert store.get_profile("p1") == Profile("p1", {"email": "a@example.com",
                                                     "tags": ["x", "y"]},
                                              {"orders_count": 2, "total_spent": 12.5})
    store.put_profile(Profile("p1", {"email": "b@example.com"}))  # replaces
    assert store.get_profile("p1") == Profile("p1", {"email": "b@example.com"})
    assert sorted(store.profile_ids()) == ["p1", "p2"]


# --- enrollments ---------------------------------------------------------------------


def test_enrollment_round_trip_every_field(store: Any) -> None:
    full = enrollment("e1", data={"coupon": "X1", "n": 3}, visits={"wait": 2},
                      variants={"split": "a"}, trigger_event={"event": "Clicked"},
                      exit_reason=None, goal_reached_at=later(1))
    store.put_enrollment(full)
    assert store.get_enrollment("e1") == full
    done = replace(full, status="exited", state="__exited__", exit_reason="exit_when:x",
                   ended_at=later(2), updated_at=later(2))
    store.put_enrollment(done)
    assert store.get_enrollment("e1") == done
    assert store.get_enrollment("nope") is None


def test_enrollment_outlines_say_whose_and_how_it_stands(store: Any) -> None:
    """What a timer's owner and a send's check read, without the documents: the same
    on every store as the whole enrollment's fields."""
    active = enrollment("e1", data={"coupon": "X1"})
    done = replace(enrollment("e2", profile="p2"), status="exited", state="__exited__",
                   exit_reason="exit_when:x", ended_at=later(2), updated_at=later(3))
    store.put_enrollment(active)
    store.put_enrollment(done)
    outlines = store.enrollment_outlines(["e1", "e2", "none"])
    assert outlines == {"e1": active.outline(), "e2": done.outline()}
    assert outlines["e2"].profile_id == "p2"
    assert outlines["e2"].exit_reason == "exit_when:x"
    assert outlines["e2"].ended_at == later(2)
    assert outlines["e2"].updated_at.tzinfo is not None
    assert store.enrollment_outlines([]) == {}


def test_enrollments_in_entry_order_and_active(store: Any) -> None:
    assert store.active_enrollment("p1", "j") is None
    assert store.enrollments("p1", "j") == []
    first = enrollment("e1", status="completed", state="__completed__")
    second = enrollment("e2", entered=later(24))
    store.put_enrollment(first)
    store.put_enrollment(second)
    store.put_enrollment(enrollment("e3", journey="other"))
    store.put_enrollment(enrollment("e4", profile="p2"))
    assert [e.id for e in store.enrollments("p1", "j")] == ["e1", "e2"]
    assert store.active_enrollment("p1", "j") == second
    store.put_enrollment(replace(second, status="completed", state="__completed__"))
    assert store.active_enrollment("p1", "j") is None
    assert [e.id for e in store.enrollments("p1", "j")] == ["e1", "e2"]  # update keeps order


def test_same_instant_entries_keep_insertion_order(store: Any) -> None:
    for eid in ("e-b", "e-a", "e-c"):
        store.put_enrollment(enrollment(eid, status="completed"))
    assert [e.id for e in store.enrollments("p1", "j")] == ["e-b", "e-a", "e-c"]


# --- timers --------------------------------------------------------------------------


def test_add_timer_is_idempotent_on_key(store: Any) -> None:
    store.add_timer(timer("k1", later(1)))
    store.add_timer(timer("k1", later(5)))  # same key: ignored
    assert store.has_timer("k1")
    assert store.next_timer_at() == later(1)
    assert store.claim_due_timers(later(10), 10) == [timer("k1", later(1))]
    assert store.claim_due_timers(later(10), 10) == []
    assert not store.has_timer("k1")


def test_cancel_and_has_timer(store: Any) -> None:
    store.add_timer(timer("k1", later(1)))
    store.add_timer(timer("k2", later(2)))
    store.cancel_timer("k1")
    store.cancel_timer("never-was")
    assert not store.has_timer("k1")
    assert store.has_timer("k2")
    assert store.next_timer_at() == later(2)
    assert store.claim_due_timers(later(3), 10) == [timer("k2", later(2))]


def test_claim_due_timers_oldest_first_with_limit(store: Any) -> None:
    for i, hours in enumerate([5, 1, 3, 2, 4, 9]):
        store.add_timer(timer(f"k{i}", later(hours)))
    first = store.claim_due_timers(later(4), 2)
    assert [t.due_at for t in first] == [later(1), later(2)]
    rest = store.claim_due_timers(later(4), 10)
    assert [t.due_at for t in rest] == [later(3), later(4)]  # due exactly now is due
    assert store.claim_due_timers(later(4), 10) == []
    assert store.next_timer_at() == later(5)


def test_claim_ties_in_key_order(store: Any) -> None:
    """Timers due at the same instant come in key order (the SQL table is keyed
    (due_at, key)), whatever order they were added in."""
    for key in ("b", "a", "c"):
        store.add_timer(timer(key, later(1)))
    assert [t.key for t in store.claim_due_timers(later(1), 10)] == ["a", "b", "c"]


def test_next_timer_at_with_and_without_cron(store: Any) -> None:
    assert store.next_timer_at() is None
    store.add_timer(timer("cron:j:p1", later(1), step="__cron__", enrollment=""))
    assert store.next_timer_at() == later(1)
    assert store.next_timer_at(include_cron=False) is None
    store.add_timer(timer("k", later(3)))
    assert store.next_timer_at(include_cron=False) == later(3)
    assert store.next_timer_at(include_cron=True) == later(1)


def test_the_last_timer_due_by_a_time(store: Any) -> None:
    """When a window of timers ends (the timer loop fires them together then)."""
    assert store.last_timer_due_by(later(9)) is None
    for key, hours in (("b", 2), ("a", 1), ("c", 4)):
        store.add_timer(timer(key, later(hours)))
    store.add_timer(timer("cron:j:p1", later(3), step="__cron__", enrollment=""))
    assert store.last_timer_due_by(later(0)) is None
    assert store.last_timer_due_by(later(1)) == later(1)  # at `by` itself: in
    assert store.last_timer_due_by(later(2) + timedelta(minutes=59)) == later(2)
    assert store.last_timer_due_by(later(3)) == later(3)  # a cron timer fires there too
    assert store.last_timer_due_by(later(99)) == later(4)
    # of the `most` earliest only: the window closes at the most-th (cron timers count)
    assert store.last_timer_due_by(later(99), most=1) == later(1)
    assert store.last_timer_due_by(later(99), most=3) == later(3)
    assert store.last_timer_due_by(later(99), most=9) == later(4)
    assert store.last_timer_due_by(later(2), most=9) == later(2)  # `by` still bounds it
    assert store.last_timer_due_by(later(0), most=9) is None
    store.add_timer(timer("a2", later(1)))  # a tie: both due at once, counted by key
    assert store.last_timer_due_by(later(99), most=2) == later(1)
    # counted from `since` (the window's start) on: older timers are not in it
    assert store.last_timer_due_by(later(99), most=1, since=later(2)) == later(2)
    assert store.last_timer_due_by(later(99), most=2, since=later(2)) == later(3)
    assert store.last_timer_due_by(later(99), most=9, since=later(5)) is None
    assert store.last_timer_due_by(later(99), since=later(5)) == later(4)  # `most`'s bound


def test_timer_fields_round_trip(store: Any) -> None:
    original = timer("enr:step:2", later(1), profile="p9", enrollment="enr", step="step",
                     journey="cart", occurrence=2)
    store.add_timer(original)
    assert store.claim_due_timers(later(1), 1) == [original]


# --- segments, records, send keys ----------------------------------------------------


def test_segment_membership(store: Any) -> None:
    assert not store.segment_member("p1", "vip")
    store.set_segment_member("p1", "vip", True)
    store.set_segment_member("p1", "vip", True)  # idempotent
    assert store.segment_member("p1", "vip")
    assert not store.segment_member("p2", "vip")
    store.set_segment_member("p1", "vip", False)
    store.set_segment_member("p1", "vip", False)
    assert not store.segment_member("p1", "vip")


def test_records(store: Any) -> None:
    ex = Exit("e1", "p1", "j", "wait", "exit_when:Order Completed", later(1))
    goal = RecordGoal("e1", "p1", "j", later(2))
    decision = Decision(later(3), "p1", "j", "send", "skipped", "no_channel", {"channel": "sms"})
    store.record_exit(ex)
    store.record_goal(goal)
    store.record_decision(decision)
    assert store.recorded_exits() == [ex]
    assert store.recorded_goals() == [goal]
    assert store.recorded_decisions() == [decision]


def test_decisions_in_bulk_and_by_kind(store: Any) -> None:
    entered = Decision(later(1), "p1", "j", "first", "entered", "entry: Signed Up",
                       {"occurrence": 1, "event": "Signed Up"})
    waiting = Decision(later(1), "p1", "j", "pause", "waiting", "until 2026-03-05T09:00:00Z")
    other = Decision(later(2), "p2", "j", "send", "sent", "email: welcome", {"key": "k"})
    store.record_decisions([entered, waiting, other])
    store.record_decisions([])
    assert store.recorded_decisions() == [entered, waiting, other]
    assert store.recorded_decisions("p1") == [entered, waiting]
    assert store.recorded_decisions("p1", kinds=("waiting", "sent")) == [waiting]
    assert store.recorded_decisions(kinds=("sent",)) == [other]


# --- outbox --------------------------------------------------------------------------


def test_outbox_enqueue_is_idempotent_on_the_send_key(store: Any) -> None:
    assert store.enqueue_send(outbox_entry("e1:send:0"))
    assert not store.enqueue_send(outbox_entry("e1:send:0", at=later(1)))
    assert store.enqueue_send(outbox_entry("e1:send:1"))
    assert [r.entry.key for r in store.outbox_records()] == ["e1:send:0", "e1:send:1"]
    assert store.outbox_counts() == {"pending": 2}


def test_outbox_claim_leases_and_counts_attempts(store: Any) -> None:
    store.enqueue_send(outbox_entry("k0"))
    store.enqueue_send(outbox_entry("k1", at=later(1)))
    lease = timedelta(minutes=5)
    assert store.claim_outbox(T0 - timedelta(seconds=1), 10, lease) == []  # not due yet
    first = store.claim_outbox(later(1), 10, lease)
    assert [e.key for e in first] == ["k0", "k1"]
    assert first[0] == replace(outbox_entry("k0"), attempts=1)  # the rendered message round-trips
    assert store.claim_outbox(later(1), 10, lease) == []  # leased
    store.mark_sent("k0", later(1))
    store.mark_retry("k1", later(3), "421 try later")
    assert store.next_outbox_at() == later(3)
    assert store.claim_outbox(later(2), 10, lease) == []
    again = store.claim_outbox(later(3), 10, lease)
    assert [(e.key, e.attempts) for e in again] == [("k1", 2)]
    store.mark_failed("k1", later(3), "550 no such user")
    records = {r.entry.key: r for r in store.outbox_records()}
    assert (records["k0"].status, records["k0"].sent_at, records["k0"].attempts) == (
        "sent", later(1), 1)
    assert (records["k1"].status, records["k1"].last_error, records["k1"].attempts) == (
        "failed", "550 no such user", 2)
    assert store.outbox_counts() == {"sent": 1, "failed": 1}
    assert store.next_outbox_at() is None


def test_outbox_lease_expiry_makes_a_send_due_again(store: Any) -> None:
    """A dispatcher that died mid-send: after the lease the row is claimed again."""
    store.enqueue_send(outbox_entry("k0"))
    assert store.claim_outbox(T0, 10, timedelta(minutes=5))
    assert store.claim_outbox(T0 + timedelta(minutes=4), 10, timedelta(minutes=5)) == []
    again = store.claim_outbox(T0 + timedelta(minutes=5), 10, timedelta(minutes=5))
    assert [(e.key, e.attempts) for e in again] == [("k0", 2)]
    assert [r.entry.key for r in store.outbox_records(profile_id="p1", status="pending")] == [
        "k0"]


def test_outbox_lease_extends_only_the_claims_own_pending_rows(store: Any) -> None:
    """A dispatcher whose sends are slow pushes its claim's lease on: the rows still
    pending and leased until its time, not one settled, nor one another claim took."""
    for key in ("k0", "k1", "k2"):
        store.enqueue_send(outbox_entry(key))
    lease = timedelta(minutes=1)
    ours = T0 + lease
    assert len(store.claim_outbox(T0, 10, lease)) == 3
    store.mark_sent("k0", T0)
    longer = T0 + timedelta(minutes=3)
    assert store.extend_outbox_lease(["k0", "k1", "k2"], ours, longer) == {"k1", "k2"}
    assert store.claim_outbox(T0 + timedelta(minutes=2), 10, lease) == []  # still ours
    assert store.extend_outbox_lease(["k1"], ours, longer) == set()  # ours is not `ours`
    # it ran out: another dispatcher claims them, and the old lease no longer holds them
    assert {e.key for e in store.claim_outbox(longer, 10, lease)} == {"k1", "k2"}
    assert store.extend_outbox_lease(["k1", "k2"], longer, longer + lease) == set()
    assert store.extend_outbox_lease([], ours, longer) == set()
    assert store.next_outbox_at() == longer + lease  # the other claim's lease, untouched


# --- identities ----------------------------------------------------------------------


def test_identities(store: Any) -> None:
    assert store.profile_for("user_id", "u1") is None
    store.link_identity("user_id", "u1", "u1")
    store.link_identity("email", "a@example.com", "u1")
    store.link_identity("anonymous_id", "anon-1", "anon-1")
    assert store.profile_for("user_id", "u1") == "u1"
    assert store.profile_for("email", "a@example.com") == "u1"
    assert store.profile_for("user_id", "a@example.com") is None
    store.link_identity("anonymous_id", "anon-1", "u1")  # relink
    assert store.profile_for("anonymous_id", "anon-1") == "u1"


def test_merge_profiles(store: Any) -> None:
    store.put_profile(Profile("u1", {"email": "new@example.com", "plan": "pro"},
                              {"orders_count": 1, "total_spent": 10.0}))
    store.put_profile(Profile("anon", {"email": "old@example.com", "utm": "ad"},
                              {"orders_count": 2, "total_spent": 5.0}))
    store.link_identity("user_id", "u1", "u1")
    store.link_identity("anonymous_id", "anon", "anon")
    # journey j: both active; anon's entered first, so it is kept
    store.put_enrollment(enrollment("u1-j", profile="u1", entered=later(2)))
    store.put_enrollment(enrollment("anon-j", profile="anon", entered=later(1)))
    store.add_timer(timer("t-u1-j", later(5), profile="u1", enrollment="u1-j"))
    store.add_timer(timer("t-anon-j", later(6), profile="anon", enrollment="anon-j"))
    # journey k: only anon's (moves); journey m: only u1's (untouched)
    store.put_enrollment(enrollment("anon-k", profile="anon", journey="k"))
    store.put_enrollment(enrollment("u1-m", profile="u1", journey="m"))
    store.set_segment_member("anon", "seg", True)
    store.set_segment_member("anon", "both", True)
    store.set_segment_member("u1", "both", True)

    store.merge_profiles(into="u1", from_="anon")

    assert store.get_profile("anon") is None
    merged = store.get_profile("u1")
    assert merged.traits == {"email": "new@example.com", "plan": "pro", "utm": "ad"}
    assert merged.computed["orders_count"] == 3
    assert merged.computed["total_spent"] == 15.0
    assert store.profile_for("anonymous_id", "anon") == "u1"
    assert store.profile_for("user_id", "u1") == "u1"
    js = store.enrollments("u1", "j")
    assert [e.id for e in js] == ["anon-j", "u1-j"]
    assert js[0].active
    assert js[0].profile_id == "u1"
    assert js[1].status == "exited"
    assert js[1].exit_reason == "merged"
    assert js[1].state == "__exited__"
    assert [e.id for e in store.enrollments("u1", "k")] == ["anon-k"]
    assert [e.id for e in store.enrollments("u1", "m")] == ["u1-m"]
    assert store.enrollments("anon", "j") == []
    # Timers stay as they were scheduled: each fires for its enrollment, which moved
    # (the runtime reads the enrollment); the loser's fires as a no-op (it has exited).
    claimed = store.claim_due_timers(later(10), 10)
    assert [(t.key, t.enrollment_id) for t in claimed] == [("t-u1-j", "u1-j"),
                                                           ("t-anon-j", "anon-j")]
    assert store.get_enrollment("anon-j").profile_id == "u1"
    assert store.segment_member("u1", "seg")
    assert store.segment_member("u1", "both")
    assert not store.segment_member("anon", "seg")
    assert store.active_enrollment("u1", "j").id == "anon-j"  # the kept one is the active one


def test_merge_into_missing_profile(store: Any) -> None:
    store.put_profile(Profile("anon", {"a": 1}))
    store.merge_profiles(into="u1", from_="anon")
    assert store.get_profile("u1").traits == {"a": 1}
    assert store.get_profile("anon") is None


# --- ingest and keys (the API's part of the store) -----------------------------------


def _ev(mid: str, user: str = "u1", **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "userId": user, "messageId": mid,
            "timestamp": "2026-03-02T09:00:00Z", **extra}


def test_accept_events_dedupes_on_source_and_message_id(store: Any) -> None:
    assert store.accept_events([_ev("m1"), _ev("m2"), _ev("m1")]) == ["m1", "m2"]
    assert store.accept_events([_ev("m2"), _ev("m3")]) == ["m3"]
    assert store.accept_events([_ev("m1")], source="other") == ["m1"]
    assert store.accept_events([]) == []


def test_keys(store: Any) -> None:
    key = store.create_key("site", admin=False)
    admin = store.create_key("ops", admin=True)
    assert key != admin
    assert store.check_key(key).name == "site"
    assert not store.check_key(key).admin
    assert store.check_key(admin).admin
    assert store.check_key("wrong") is None


def test_timer_claim_after_cancel_and_readd(store: Any) -> None:
    store.add_timer(timer("k", later(5)))
    store.cancel_timer("k")
    store.add_timer(timer("k", later(1)))
    assert store.next_timer_at() == later(1)
    assert [t.due_at for t in store.claim_due_timers(later(10), 10)] == [later(1)]
    assert store.claim_due_timers(T0 + timedelta(days=1), 10) == []


def test_outbox_deferral_skip_and_sent_counts(store: Any) -> None:
    for key, profile in (("k0", "p1"), ("k1", "p1"), ("k2", "p1"), ("k3", "p2")):
        store.enqueue_send(outbox_entry(key, profile=profile))
    assert len(store.claim_outbox(T0, 10, timedelta(minutes=5))) == 4
    store.mark_deferred("k0", later(5), "quiet_hours")  # not now: and not an attempt
    store.mark_skipped("k1", "no_consent")
    store.mark_sent("k2", later(1))
    store.mark_sent("k3", later(1))
    records = {r.entry.key: r for r in store.outbox_records()}
    assert (records["k0"].status, records["k0"].attempts, records["k0"].next_attempt_at,
            records["k0"].last_error) == ("pending", 0, later(5), "quiet_hours")
    assert (records["k1"].status, records["k1"].last_error) == ("skipped", "no_consent")
    assert store.count_sent("p1", "email", T0) == 1
    assert store.count_sent("p1", "email", later(1)) == 0  # the window excludes its start
    assert store.count_sent("p1", "sms", T0) == 0
    assert store.count_sent("p2", "email", T0) == 1
    assert store.next_outbox_at() == later(5)
    assert [e.key for e in store.claim_outbox(later(5), 10, timedelta(minutes=5))] == ["k0"]


def test_outbox_deferrals_many_in_one_call(store: Any) -> None:
    """What the dispatcher writes for a chunk that quiet hours deferred: each row its
    own time and reason, none of them an attempt, the other rows untouched."""
    for i in range(5):
        store.enqueue_send(outbox_entry(f"k{i}", profile=f"p{i}"))
    assert len(store.claim_outbox(T0, 10, timedelta(days=1))) == 5  # leased past later(7)
    store.mark_deferred_many([("k0", later(5), "quiet_hours"),
                              ("k2", later(7), "channel_unavailable"),
                              ("k3", later(5), "quiet_hours")])
    store.mark_deferred_many([])
    records = {r.entry.key: r for r in store.outbox_records()}
    assert {k: (r.attempts, r.next_attempt_at, r.last_error) for k, r in records.items()
            if k in ("k0", "k2", "k3")} == {
        "k0": (0, later(5), "quiet_hours"), "k2": (0, later(7), "channel_unavailable"),
        "k3": (0, later(5), "quiet_hours")}
    assert (records["k1"].attempts, records["k1"].last_error) == (1, None)
    assert [e.key for e in store.claim_outbox(later(5), 10, timedelta(minutes=5))] == [
        "k0", "k3"]


def test_a_held_send_keeps_its_earlier_error(store: Any) -> None:
    """A send that failed (a relay's 451), then held untried in a later claim (its
    channel or its recipient failed first, the process stopping): `last_error` says the
    hold and keeps the error after it (the hold's word alone hid the 451). Held again,
    the newer reason replaces the older, the error stays; a hold of a send without an
    error, or whose last word was a deferral's, is the reason alone; quiet hours write
    theirs alone."""
    for i in range(5):
        store.enqueue_send(outbox_entry(f"k{i}", profile=f"p{i}"))
    assert len(store.claim_outbox(T0, 10, timedelta(days=1))) == 5
    for key in ("k0", "k1", "k3"):
        store.mark_retry(key, later(1), "451 4.3.0 mailbox busy, try again")
    store.mark_deferred("k2", later(1), "quiet_hours")
    assert len(store.claim_outbox(later(1), 10, timedelta(days=1))) == 4
    store.mark_deferred_many([("k0", later(5), "channel_unavailable"),
                              ("k1", later(5), "recipient_unavailable"),
                              ("k2", later(5), "channel_unavailable"),
                              ("k3", later(5), "quiet_hours"),
                              ("k4", later(5), "stopping")])
    errors = {r.entry.key: r.last_error for r in store.outbox_records()}
    assert errors == {
        "k0": "channel_unavailable; last error: 451 4.3.0 mailbox busy, try again",
        "k1": "recipient_unavailable; last error: 451 4.3.0 mailbox busy, try again",
        "k2": "channel_unavailable", "k3": "quiet_hours", "k4": "stopping"}
    assert len(store.claim_outbox(later(5), 10, timedelta(days=1))) == 5
    store.mark_deferred_many([("k0", later(9), "recipient_unavailable"),
                              ("k1", later(9), "stopping"), ("k4", later(9), "stopping")])
    records = {r.entry.key: r for r in store.outbox_records()}
    assert records["k0"].last_error == (
        "recipient_unavailable; last error: 451 4.3.0 mailbox busy, try again")
    assert (records["k0"].held, records["k0"].error) == (
        "recipient_unavailable", "451 4.3.0 mailbox busy, try again")
    assert records["k1"].last_error == "stopping; last error: 451 4.3.0 mailbox busy, try again"
    assert (records["k4"].last_error, records["k4"].held, records["k4"].error) == (
        "stopping", "stopping", None)
    assert (records["k3"].held, records["k3"].error) == (None, "quiet_hours")
    assert [r.attempts for r in records.values()] == [1, 1, 1, 2, 0]  # holds: no attempts


def test_settings_are_kept_replaced_and_forgotten(store: Any) -> None:
    assert store.setting("sealed:unsubscribe") is None
    store.put_setting("sealed:unsubscribe", "v1 a b")
    store.put_setting("sealed:unsubscribe", "v1 c d")
    assert store.setting("sealed:unsubscribe") == "v1 c d"
    store.put_setting("sealed:unsubscribe", None)
    store.put_setting("never:there", None)
    assert store.setting("sealed:unsubscribe") is None


def test_outbox_claim_takes_every_due_send_of_a_profile_and_counts_admissions(
        store: Any) -> None:
    """A profile's competing sends are claimed together (the dispatcher decides them in
    one admission); admitted sends count for caps while pending or sent."""
    store.enqueue_send(outbox_entry("a1", profile="a"))
    store.enqueue_send(outbox_entry("b1", at=later(0.1), profile="b"))
    store.enqueue_send(outbox_entry("a2", at=later(0.2), profile="a"))
    store.enqueue_send(outbox_entry("a3", at=later(5), profile="a"))  # not due
    lease = timedelta(minutes=5)
    first = store.claim_outbox(later(1), 1, lease)
    assert [e.key for e in first] == ["a1", "a2"]
    assert all(e.admitted_at is None for e in first)
    store.mark_admitted_many([("a1", later(1)), ("a2", later(1.5))])
    store.mark_sent_many([("a1", later(1))])
    assert store.admitted_since(["a", "b"], T0) == {
        "a": [("email", later(1)), ("email", later(1.5))]}
    assert store.admitted_since(["a"], later(1)) == {"a": [("email", later(1.5))]}
    store.mark_skipped("a2", "no_consent")  # no longer counted
    assert store.admitted_since(["a"], T0) == {"a": [("email", later(1))]}
    assert [e.key for e in store.claim_outbox(later(1), 10, lease)] == ["b1"]
    store.mark_admitted("b1", later(1))
    store.mark_retry("b1", later(2), "421")
    (again,) = store.claim_outbox(later(2), 10, lease)
    assert (again.key, again.admitted_at) == ("b1", later(1))  # admitted: not decided again
    store.mark_sent_many([("b1", later(2.5)), ("a3", later(6))])
    sent = {r.entry.key: r for r in store.outbox_records(status="sent")}
    assert {k: (r.sent_at, r.next_attempt_at) for k, r in sent.items()} == {
        "a1": (later(1), None), "b1": (later(2.5), None), "a3": (later(6), None)}
    store.mark_sent_many([])  # nothing to write: no statement, no error


def test_dashboard_users(store: Any) -> None:
    import pytest

    from engine.store import DuplicateUserName

    assert store.get_user("ann") is None
    store.create_user("ann", "scrypt$hash", "editor")
    store.create_user("bob", "scrypt$other", "viewer")
    ann = store.get_user("ann")
    assert (ann.name, ann.role, ann.password_hash) == ("ann", "editor", "scrypt$hash")
    assert ann.created_at is not None
    with pytest.raises(DuplicateUserName):
        store.create_user("ann", "x", "viewer")
    assert [u.name for u in store.list_users()] == ["ann", "bob"]
