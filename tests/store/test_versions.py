"""Journey versions, `plan` and `apply` (qa-contract §5) on the stores.

The must-show: the bundled `abandoned_cart` with 1,000 profiles in flight on two of its
steps; a changed version renames one waiting step. `plan` prints the right counts
(checked against SQL), `apply` with a migration map moves them with their timers (none
lost, none doubled), and they finish on the new version; without a map they stay on
version 1 until they finish while new people enter version 2.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from engine.cli import app
from engine.core.model import Profile
from engine.ports import DeployedVersion, StepMove
from engine.runtime.events import normalize
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.runtime.versions import PlanError, apply, plan
from engine.service import wire
from engine.store import SqlStore
from engine.testing import TEST_SECRET, FakeClock, RecordingChannel, SequentialIds
from journeys.library import bundled_library
from journeys.loaded import Library
from journeys.loader import load_library
from tests.store.helpers import T0, enrollment, timer

V2_RENAMED = """\
journey: abandoned_cart
version: 2
name: Abandoned cart
entry:
  event: Checkout Started
  when:
    event.properties.cart_value: {gt: 0}
re_entry: {after: 7d}
exit_when:
  - event: Order Completed
goal:
  event: Order Completed
  within: 7d
MIGRATE
steps:
  - id: remember
    set_data:
      cart_items: "{{ event.properties.cart_items | default(1) }}"
  - id: hold
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
    send: {channel: email, template: cart_discount}
  - id: done
    exit: completed
"""
MAP = "migrate:\n  from_version: 1\n  steps: {grace: hold}\n"


class Rig:
    """The production wiring (worker, dispatcher, deployed versions) over one store, on
    a fake clock, rewired after each apply the way a restarted `serve` would be."""

    def __init__(self, store: Any, folder: Path) -> None:
        self.store, self.folder = store, folder
        self.clock = FakeClock(T0)
        store.clock = self.clock
        self.ids = SequentialIds("m")
        self.library = self.load()

    def load(self) -> Library:
        return load_library(self.folder, only=["abandoned_cart"])

    def apply(self) -> Any:
        self.library = self.load()
        result = apply(self.library, self.store, self.clock.now())
        channels = dict.fromkeys(("email", "sms"), RecordingChannel())
        wiring = wire(self.library, store=self.store, clock=self.clock, channels=channels,
                      unsubscribe=UnsubscribeLinks(TEST_SECRET, "https://x.invalid"),
                      deployed=True, backend="python")
        self.worker = wiring.worker
        return result

    def checkout(self, users: list[str]) -> None:
        with self.store.transaction():
            for user in users:
                self.store.put_profile(Profile(user, {"email": f"{user}@example.com",
                                                      "consent": {"email": True},
                                                      "timezone": "UTC"}))
        self.store.accept_events([normalize(
            {"type": "track", "userId": u, "event": "Checkout Started",
             "properties": {"cart_value": 30}}, now=self.clock.now(), message_id=self.ids.new_id)
            for u in users])
        self.drain()

    def drain(self) -> None:
        while self.worker.handle_events():
            pass

    def advance(self, delta: timedelta) -> None:
        end = self.clock.now() + delta
        while (due := self.store.next_timer_at(include_cron=False)) is not None and due <= end:
            self.clock.set(max(due, self.clock.now()))
            while self.worker.fire_timers():
                pass
            self.drain()
        self.clock.set(end)
        self.drain()

    def sql_in_flight(self) -> dict[tuple[int, str], int]:
        with self.store.sql_engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT version, state, count(*) FROM enrollments WHERE journey = "
                "'abandoned_cart' AND status = 'active' GROUP BY version, state"))
            return {(int(v), str(s)): int(n) for v, s, n in rows}

    def timers(self) -> list[tuple[str, str, Any]]:
        with self.store.sql_engine.connect() as conn:
            return sorted((r.key, r.step, r.due_at) for r in conn.execute(text(
                "SELECT key, step, due_at FROM timers WHERE journey = 'abandoned_cart'")))

    def sends(self) -> Counter[tuple[str, str]]:
        """Every send queued, by (profile, step) (the outbox key is unique per send)."""
        with self.store.sql_engine.connect() as conn:
            return Counter((r.profile_id, r.step) for r in conn.execute(text(
                "SELECT profile_id, step FROM outbox")))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The bundled abandoned_cart and its templates, under a policy without caps or quiet
    hours (they are not what is tested here, and counting caps per send is slow)."""
    target = tmp_path / "journeys"
    (target / "templates").mkdir(parents=True)
    bundled = bundled_library()
    shutil.copy(bundled / "abandoned_cart.yaml", target)
    for name in ("cart_reminder", "cart_discount", "cart_vip_discount"):
        shutil.copy(bundled / "templates" / f"{name}.yaml", target / "templates")
    (target / "policy.yaml").write_text("timezone: UTC\n")
    return target


def _fill(rig: Rig) -> tuple[list[str], list[str]]:
    """600 people past the reminder (on `clicked`), 400 still on `grace`."""
    early = [f"a{i:03}" for i in range(600)]
    late = [f"b{i:03}" for i in range(400)]
    rig.checkout(early)
    rig.advance(timedelta(minutes=90))  # the early ones: reminder sent, now on `clicked`
    rig.checkout(late)
    return early, late


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_plan_and_apply_move_a_thousand_in_flight_profiles(sql_store: SqlStore,
                                                           folder: Path) -> None:
    rig = Rig(sql_store, folder)
    rig.apply()
    early, late = _fill(rig)
    assert rig.sql_in_flight() == {(1, "clicked"): 600, (1, "grace"): 400}
    timers_before = rig.timers()
    assert len(timers_before) == 1000
    (folder / "abandoned_cart.yaml").write_text(V2_RENAMED.replace("MIGRATE\n", MAP))

    shown = _cli("plan", "--journeys", str(folder), "--db", sql_store.url, "--json")
    assert shown.exit_code == 0, shown.output
    cart = json.loads(shown.stdout)["journeys"]["abandoned_cart"]
    assert cart["status"] == "changed"
    assert (cart["from_version"], cart["to_version"]) == (1, 2)
    assert cart["in_flight"] == {step: n for (_, step), n in rig.sql_in_flight().items()}
    assert cart["in_flight"] == {"clicked": 600, "grace": 400}
    assert cart["moves"] == {"clicked": {"to": "clicked", "profiles": 600},
                             "grace": {"to": "hold", "profiles": 400}}
    assert cart["stay_on_old_version"] == 0
    assert cart["added_steps"] == ["hold"]
    assert sorted(cart["removed_steps"]) == ["grace", "plain_offer", "vip_offer"]
    text_plan = _cli("plan", "--journeys", str(folder), "--db", sql_store.url)
    assert "grace -> hold: 400 move to v2" in text_plan.stdout
    assert "clicked -> clicked: 600 move to v2" in text_plan.stdout
    assert "in flight on v1: clicked 600, grace 400" in text_plan.stdout

    rig.apply()
    assert rig.sql_in_flight() == {(2, "clicked"): 600, (2, "hold"): 400}
    timers_after = rig.timers()
    assert len(timers_after) == 1000  # none lost, none doubled
    assert sorted(due for _, _, due in timers_after) == sorted(due for _, _, due in timers_before)
    assert Counter(step for _, step, _ in timers_after) == {"clicked": 600, "hold": 400}
    assert [v.version for v in sql_store.deployed_versions("abandoned_cart")] == [1, 2]

    rig.advance(timedelta(days=2))
    assert rig.sql_in_flight() == {}
    sends = rig.sends()
    for user in early + late:  # the reminder once (on v1 or v2), then v2's offer once
        assert sends[(user, "reminder")] == 1, user
        assert sends[(user, "offer")] == 1, user
    assert sum(sends.values()) == 2000


def test_a_rename_without_a_map_keeps_people_on_version_1(sql_store: SqlStore,
                                                          folder: Path) -> None:
    rig = Rig(sql_store, folder)
    rig.apply()
    rig.checkout(["u1", "u2", "u3"])
    rig.advance(timedelta(minutes=90))
    rig.checkout(["u4", "u5"])
    (folder / "abandoned_cart.yaml").write_text(V2_RENAMED.replace("MIGRATE\n", ""))
    result = rig.apply()
    cart = result.journeys["abandoned_cart"]
    assert cart.stay_on_old_version == 5
    assert cart.moves == {}
    rig.checkout(["n1"])  # new people enter version 2
    assert rig.sql_in_flight() == {(1, "clicked"): 3, (1, "grace"): 2, (2, "hold"): 1}
    rig.store.accept_events([normalize(
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {}},
        now=rig.clock.now(), message_id="oc-u1")])
    rig.drain()  # version 1's exit_when still applies to u1
    rig.advance(timedelta(days=2))
    assert rig.sql_in_flight() == {}
    sends = rig.sends()
    assert sends[("u1", "reminder")] == 1
    assert sends[("u1", "plain_offer")] == 0
    for user in ("u2", "u3", "u4", "u5"):  # finished on version 1 (its step ids)
        assert (sends[(user, "reminder")], sends[(user, "plain_offer")]) == (1, 1), user
    assert sends[("n1", "reminder")] == 1
    assert sends[("n1", "offer")] == 1


def test_plan_errors_refuse_apply(sql_store: SqlStore, folder: Path) -> None:
    rig = Rig(sql_store, folder)
    rig.apply()
    rig.checkout(["u1", "u2"])
    cart = folder / "abandoned_cart.yaml"
    original = cart.read_text()
    cart.write_text(original.replace("wait: 1h", "wait: 2h"))  # changed, same version
    shown = _cli("plan", "--journeys", str(folder), "--db", sql_store.url)
    assert shown.exit_code == 1
    assert "give the changed journey version 2" in shown.output
    refused = _cli("apply", "--journeys", str(folder), "--db", sql_store.url)
    assert refused.exit_code == 1
    assert "nothing was deployed" in refused.output
    # A map that forgets a step with people on it, and names a step v1 never had.
    cart.write_text(V2_RENAMED.replace("MIGRATE\n", "migrate:\n  from_version: 1\n"
                                       "  steps: {gracee: hold}\n"))
    with pytest.raises(PlanError) as caught:
        apply(rig.load(), sql_store, rig.clock.now())
    errors = "\n".join(caught.value.errors)
    assert "has no step 'gracee' (did you mean 'grace'?)" in errors
    assert "2 people of abandoned_cart version 1 wait on step 'grace'" in errors
    assert [v.version for v in sql_store.deployed_versions("abandoned_cart")] == [1]
    assert plan(rig.load(), sql_store).errors  # plan says the same, and writes nothing


def test_plan_and_apply_json_carry_every_error(sql_store: SqlStore, folder: Path) -> None:
    """qa-contract §5: with `--json` the document is printed whatever the outcome, its
    `errors` filled: a map to a step the new version lacks is found when the folder
    loads, before any plan (it printed nothing on stdout until 2026-12-07), and a plan
    error refuses apply with the refused plan."""
    rig = Rig(sql_store, folder)
    rig.apply()
    cart = folder / "abandoned_cart.yaml"
    cart.write_text(V2_RENAMED.replace("MIGRATE\n", "migrate:\n  from_version: 1\n"
                                       "  steps: {grace: nowhere}\n"))
    for command in ("plan", "apply"):
        shown = _cli(command, "--journeys", str(folder), "--db", sql_store.url, "--json")
        assert shown.exit_code == 1, command
        document = json.loads(shown.stdout)
        assert document["journeys"] == {}
        (error,) = document["errors"]
        assert "abandoned_cart.yaml:" in error, error
        assert "'nowhere'" in error, error
    cart.write_text(V2_RENAMED.replace("MIGRATE\n", "").replace("version: 2", "version: 1"))
    refused = _cli("apply", "--journeys", str(folder), "--db", sql_store.url, "--json")
    assert refused.exit_code == 1
    document = json.loads(refused.stdout)
    assert document["journeys"]["abandoned_cart"]["status"] == "changed"
    assert any("give the changed journey version 2" in e for e in document["errors"])
    assert [v.version for v in sql_store.deployed_versions("abandoned_cart")] == [1]


def test_pause_stops_entries_and_removed_journeys_are_marked_removed(sql_store: SqlStore,
                                                               folder: Path) -> None:
    rig = Rig(sql_store, folder)
    rig.apply()
    rig.checkout(["u1"])
    assert _cli("journeys", "pause", "abandoned_cart", "--db", sql_store.url).exit_code == 0
    rig.apply()  # a restart picks the status up (a running service within seconds)
    rig.checkout(["u2"])
    assert rig.sql_in_flight() == {(1, "grace"): 1}
    listed = _cli("journeys", "--db", sql_store.url, "--json")
    row = json.loads(listed.stdout)[0]
    assert row == {**row, "journey": "abandoned_cart", "status": "paused", "versions": [1],
                   "in_flight": {"1": 1}}
    # `journeys list` is the same list, as `keys list` and `users list` read
    assert _cli("journeys", "list", "--db", sql_store.url, "--json").stdout == listed.stdout
    (folder / "abandoned_cart.yaml").unlink()
    (folder / "templates" / "cart_reminder.yaml").unlink()  # or the folder is invalid
    (folder / "a.yaml").write_text("journey: a\nversion: 1\nentry: {event: X}\n"
                                   "steps:\n  - id: w\n    wait: 1h\n")
    result = plan(load_library(folder), sql_store)
    assert result.journeys["abandoned_cart"].status == "removed"
    assert result.journeys["abandoned_cart"].stay_on_old_version == 1
    rig.load = lambda: load_library(folder)  # type: ignore[method-assign]
    rig.apply()
    assert sql_store.deployed_versions("abandoned_cart")[0].status == "removed"
    rig.advance(timedelta(days=2))  # u1 finishes on the removed version, from the store
    assert rig.sql_in_flight() == {}
    assert rig.sends()[("u1", "plain_offer")] == 1


# --- the port, on every store ----------------------------------------------------------


def test_versions_port_contract(store: Any) -> None:
    v1 = DeployedVersion("j", 1, "d1", "journey: j", "j.yaml", T0)
    assert store.deploy_version(v1) is True
    assert store.deploy_version(v1) is False
    assert store.deploy_version(DeployedVersion("j", 2, "d2", "journey: j", "j.yaml", T0,
                                                "paused"))
    assert [(v.version, v.status) for v in store.deployed_versions("j")] == [
        (1, "paused"), (2, "paused")]
    assert store.set_journey_status("j", "active")
    assert not store.set_journey_status("x", "a")
    with store.transaction():
        store.put_enrollment(enrollment("e1", state="wait", visits={"wait": 1}))
        store.put_enrollment(enrollment("e2", profile="p2", state="wait", visits={"wait": 1}))
        store.put_enrollment(enrollment("e3", profile="p3", state="ask"))
        store.add_timers([timer("e1:wait:1", T0, enrollment="e1", occurrence=1),
                          timer("e2:wait:1", T0, profile="p2", enrollment="e2", occurrence=1)])
    assert store.in_flight("j") == {(1, "wait"): 2, (1, "ask"): 1}
    with store.transaction():
        moved = store.move_enrollments(StepMove("j", 1, "wait", 2, "hold"), T0)
        same = store.move_enrollments(StepMove("j", 1, "ask", 2, "ask"), T0)
    assert (moved, same) == (2, 1)
    assert store.in_flight("j") == {(2, "hold"): 2, (2, "ask"): 1}
    moved_e1 = store.get_enrollment("e1")
    assert (moved_e1.version, moved_e1.state, moved_e1.visits["hold"]) == (2, "hold", 1)
    assert not store.has_timer("e1:wait:1")
    assert store.has_timer("e1:hold:1")
    assert store.pending_timers() == 2
    claimed = store.claim_due_timers(T0, 10)
    assert sorted((t.key, t.step, t.occurrence, t.due_at) for t in claimed) == [
        ("e1:hold:1", "hold", 1, T0), ("e2:hold:1", "hold", 1, T0)]
