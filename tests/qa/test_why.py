"""`journeyman why` and `GET /v1/profiles/{id}/why`: every decision the engine made for
a person, through the real service on SQLite (worker, timers, outbox dispatcher) on a
fake clock: a profile that did not enter, one that branched, one that was capped and
one that exited; and the HTTP endpoint through real uvicorn."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from engine.cli import app
from engine.runtime.events import normalize
from engine.runtime.unsubscribe import SigningSecret
from engine.service import Service
from engine.testing import TEST_SECRET, FakeClock, RecordingChannel
from tests.api.test_api import free_port

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
runner = CliRunner()

OFFER = """\
journey: offer
version: 1
entry:
  event: Product Viewed
  when: {event.properties.price: {gte: 20}}
re_entry: never
exit_when:
  - event: Order Completed
steps:
  - id: check
    branch:
      - when: {profile.traits.plan: premium}
        goto: premium_mail
      - else: basic_mail
  - id: premium_mail
    send: {channel: email, template: premium}
    next: pause
  - id: basic_mail
    send: {channel: email, template: basic}
  - id: pause
    wait: 2d
  - id: followup
    send: {channel: email, template: followup}
"""


def template(name: str) -> str:
    return f"channel: email\nsubject: {name}\ntext: Hello from {name}\n"


def offer_folder(folder: Path, *, caps: bool = False) -> None:
    """The `offer` journey and its templates; with `caps`, one email a week."""
    (folder / "templates").mkdir(parents=True)
    (folder / "offer.yaml").write_text(OFFER)
    policy = "consent_required: []\n"  # not about consent
    if caps:
        policy += "frequency_caps:\n  email: {max: 1, per: 7d}\n"
    (folder / "policy.yaml").write_text(policy)
    for name in ("premium", "basic", "followup"):
        (folder / "templates" / f"{name}.yaml").write_text(template(name))


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    """The offer journey played through the service: `low` views a cheap product,
    `gold` (premium) and `bea` (basic) view expensive ones and `gold` views another, `quin`
    orders a day after entering; then three days pass, over a cap of one email a week."""
    tmp = tmp_path_factory.mktemp("why")
    folder = tmp / "journeys"
    offer_folder(folder, caps=True)
    db = f"sqlite:///{tmp / 'why.db'}"
    clock = FakeClock(T0)
    service = Service(folder, db, channels={"email": RecordingChannel("email")}, clock=clock,
                      secrets=[SigningSecret(TEST_SECRET)])
    n = 0

    def post(*events: dict[str, Any]) -> None:
        nonlocal n
        batch = []
        for raw in events:
            n += 1
            batch.append(normalize({"timestamp": clock.now().isoformat(), **raw},
                                   now=clock.now(), message_id=f"m{n}"))
        service.store.accept_events(batch, "test")
        while service.worker.handle_events():
            pass
        service.dispatcher.dispatch_due()

    def advance(delta: timedelta) -> None:
        clock.set(clock.now() + delta)
        service.worker.fire_timers()
        service.dispatcher.dispatch_due()

    people = {"low": "basic", "gold": "premium", "bea": "basic", "quin": "basic"}
    post(*({"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com",
                                                            "plan": plan}}
           for user, plan in people.items()))
    post({"type": "track", "userId": "low", "event": "Product Viewed",
          "properties": {"price": 10}},
         *({"type": "track", "userId": user, "event": "Product Viewed",
            "properties": {"price": 50}} for user in ("gold", "bea", "quin")))
    advance(timedelta(hours=1))
    post({"type": "track", "userId": "gold", "event": "Product Viewed",
          "properties": {"price": 80}})
    advance(timedelta(days=1))
    post({"type": "track", "userId": "quin", "event": "Order Completed"})
    post({"type": "track", "userId": "quin", "event": "Product Viewed",
          "properties": {"price": 60}})
    advance(timedelta(hours=23))  # the waits end on the dot: 2026-03-04T10:00:00Z
    advance(timedelta(days=1))
    try:
        yield service, db
    finally:
        service.stop()


def why_json(db: str, user: str, *extra: str) -> list[dict[str, Any]]:
    done = runner.invoke(app, ["why", user, "--db", db, "--json", *extra])
    assert done.exit_code == 0, done.output
    records = json.loads(done.stdout)
    assert isinstance(records, list)
    for record in records:
        assert {"at", "journey", "step", "kind", "reason", "details"} <= set(record)
    return records


def kinds(records: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(r["kind"], r["step"], r["reason"]) for r in records]


def test_a_profile_that_did_not_enter(played: tuple[Service, str]) -> None:
    _, db = played
    records = why_json(db, "low")
    assert kinds(records) == [
        ("not_entered", None, "entry condition false: event.properties.price 10 is not >= 20")]
    assert records[0]["details"]["values"] == {"event.properties.price": 10}
    assert records[0]["at"] == "2026-03-02T10:00:00Z"
    text = runner.invoke(app, ["why", "low", "--db", db]).output
    assert "not_entered" in text
    assert "event.properties.price 10 is not >= 20" in text


def test_a_profile_that_branched_and_was_refused_re_entry(played: tuple[Service, str]) -> None:
    _, db = played
    records = why_json(db, "gold")
    assert kinds(records)[:5] == [
        ("entered", "check", "entry: Product Viewed"),
        ("branch", "check", "case 1 -> premium_mail (profile.traits.plan 'premium')"),
        ("waiting", "pause", "until 2026-03-04T10:00:00Z"),
        ("sent", "premium_mail", "email: premium"),  # by the dispatcher, after the step
        ("not_entered", None, "already enrolled"),
    ]
    branch = records[1]
    assert branch["details"]["values"] == {"profile.traits.plan": "premium"}
    assert branch["details"]["to"] == "premium_mail"
    assert records[4]["details"]["step"] == "pause"
    assert records[4]["at"] == "2026-03-02T11:00:00Z"
    bea = why_json(db, "bea")
    [branch] = [r for r in bea if r["kind"] == "branch"]
    assert branch["reason"] == ("else -> basic_mail (case 1: profile.traits.plan 'basic' is "
                                "not = 'premium')")


def test_a_profile_that_was_capped(played: tuple[Service, str]) -> None:
    _, db = played
    records = why_json(db, "bea")
    assert kinds(records)[-3:] == [("resumed", "pause", "wait over"),
                                   ("exited", "followup", "completed"),
                                   ("skipped", "followup", "frequency_cap")]
    assert {r["at"] for r in records[-3:]} == {"2026-03-04T10:00:00Z"}
    assert records[-1]["details"] == {"channel": "email", "max": 1, "per_seconds": 604800.0,
                                      "sent": 1, "on_cap": "drop", "priority": 0}
    text = runner.invoke(app, ["why", "bea", "--db", db]).output
    assert "followup: frequency_cap (1 sent, at most 1 per 7d)" in text


def test_a_profile_that_exited(played: tuple[Service, str]) -> None:
    _, db = played
    records = why_json(db, "quin")
    assert [r["kind"] for r in records] == ["entered", "branch", "waiting", "sent", "exited",
                                            "not_entered"]
    exited = records[-2]
    assert (exited["step"], exited["reason"]) == ("pause", "exit_when: Order Completed")
    assert exited["at"] == "2026-03-03T11:00:00Z"
    assert exited["details"]["exit_reason"] == "exit_when:Order Completed"
    refused = records[-1]
    assert refused["reason"] == "re_entry: never"
    assert (refused["details"]["entries"], refused["details"]["last_entered_at"]) == (
        1, "2026-03-02T10:00:00Z")


def test_why_filters_by_journey_and_knows_strangers(played: tuple[Service, str]) -> None:
    _, db = played
    none = runner.invoke(app, ["why", "gold", "--db", db, "--journey", "welcome"])
    assert none.exit_code == 0
    assert none.output == ("gold: no decisions in welcome (no event of theirs matched its "
                           "entry)\n")
    unknown = runner.invoke(app, ["why", "ghost", "--db", db])
    assert unknown.exit_code == 1
    assert "no profile 'ghost'" in unknown.output


def test_why_names_a_journey_that_does_not_exist_and_suggests_one(
        played: tuple[Service, str]) -> None:
    """`why gold --journey ofer` said "no decisions ... or no such journey", exit 0, no
    did-you-mean; then it named the typo on stderr but still exited 0 with `[]`, which a
    script reads as "nothing happened to gold there". It is an error now: exit 1, the
    journey named (neither bundled nor deployed) with the nearest name, nothing on
    stdout, as for a person the store does not know."""
    _, db = played
    typo = runner.invoke(app, ["why", "gold", "--db", db, "--journey", "ofer"])
    assert typo.exit_code == 1
    assert typo.stdout == ""
    assert typo.stderr.startswith("gold: no journey 'ofer' in ")
    assert typo.stderr.rstrip().endswith("nor deployed to the store (did you mean 'offer'?)")
    as_json = runner.invoke(app, ["why", "gold", "--db", db, "--journey", "ofer", "--json"])
    assert as_json.exit_code == 1
    assert as_json.stdout == ""
    assert "(did you mean 'offer'?)" in as_json.stderr
    nothing_near = runner.invoke(app, ["why", "gold", "--db", db, "--journey", "zzzzzz"])
    assert nothing_near.exit_code == 1
    assert "no journey 'zzzzzz' in " in nothing_near.stderr
    deployed = runner.invoke(app, ["why", "gold", "--db", db, "--journey", "offer"])
    assert deployed.exit_code == 0
    assert deployed.stderr == ""
    # a known journey (bundled) with no decisions for gold: exit 0 and `[]`, as documented
    assert why_json(db, "gold", "--journey", "welcome") == []
    # a stranger is told first, whatever the journey
    stranger = runner.invoke(app, ["why", "ghost", "--db", db, "--journey", "ofer"])
    assert stranger.exit_code == 1
    assert "no profile 'ghost'" in stranger.stderr


def test_decision_log_off_records_only_what_became_of_sends(tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    offer_folder(folder)
    service = Service(folder, f"sqlite:///{tmp_path / 'off.db'}", clock=FakeClock(T0),
                      channels={"email": RecordingChannel("email")}, decision_log=False,
                      secrets=[SigningSecret(TEST_SECRET)])
    try:
        service.store.accept_events([normalize(
            {"type": "track", "userId": "x", "event": "Product Viewed",
             "properties": {"price": 50}, "timestamp": T0.isoformat()},
            now=T0, message_id="m1")], "test")
        service.worker.handle_events()
        service.dispatcher.dispatch_due()
        # No address: the send is skipped, and that skip is recorded even with the log off.
        assert [(d.what, d.reason) for d in service.store.recorded_decisions()] == [
            ("skipped", "no_address")]
    finally:
        service.stop()


@pytest.mark.slow
def test_why_over_http_needs_an_admin_key(played: tuple[Service, str]) -> None:
    service, _ = played
    admin = service.store.create_key("ops-why", admin=True)
    writer = service.store.create_key("web-why")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service.app(), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            ok = client.get("/v1/profiles/gold/why", auth=(admin, ""))
            assert ok.status_code == 200, ok.text
            assert ok.json() == why_json(played[1], "gold")
            only = client.get("/v1/profiles/gold/why", params={"journey": "offer"},
                              auth=(admin, ""))
            assert only.json() == ok.json()
            typo = client.get("/v1/profiles/gold/why", params={"journey": "ofer"},
                              auth=(admin, ""))  # a typo: not "no decisions" (200 [])
            assert typo.status_code == 404
            assert typo.json() == {"success": False, "reason": (
                "no journey 'ofer' deployed (did you mean 'offer'?)")}
            assert client.get("/v1/profiles/gold/why", auth=(writer, "")).status_code == 403
            assert client.get("/v1/profiles/gold/why").status_code == 401
            missing = client.get("/v1/profiles/ghost/why", auth=(admin, ""))
            assert missing.status_code == 404
            assert missing.json() == {"success": False, "reason": "no profile 'ghost'"}
            hostile = client.get("/v1/profiles/" + "x" * 5000 + "/why", auth=(admin, ""))
            assert hostile.status_code == 404
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_testing_kit_tells_why_too(tmp_path: Path) -> None:
    from engine.testing import InMemoryEngine

    folder = tmp_path / "journeys"
    offer_folder(folder)
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("ana", {"email": "ana@example.com", "plan": "premium"})
    eng.track("ana", "Product Viewed", {"price": 5})
    eng.track("ana", "Product Viewed", {"price": 25})
    eng.run_until_idle()
    assert [(w.kind, w.step) for w in eng.why("ana")] == [
        ("not_entered", None), ("entered", "check"), ("branch", "check"),
        ("waiting", "pause"), ("sent", "premium_mail"), ("resumed", "pause"),
        ("exited", "followup"), ("sent", "followup")]
    assert eng.why("ana", journey="other") == []
    assert eng.why("nobody") == []


TRIAL = """\
journey: trial
version: 1
entry: {event: Trial Started}
re_entry: {after: 30d}
steps:
  - id: test
    split:
      variants:
        - {name: a, weight: 50, goto: ask}
        - {name: b, weight: 50, goto: ask}
  - id: ask
    wait_for: {event: Upgraded, timeout: 3d}
"""


def test_splits_wait_for_and_re_entry_windows_are_told(tmp_path: Path) -> None:
    from engine.testing import InMemoryEngine

    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True)
    (folder / "policy.yaml").write_text("consent_required: []\n")  # not about consent
    (folder / "trial.yaml").write_text(TRIAL)
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.track("tom", "Trial Started")
    eng.advance(timedelta(days=1))
    eng.track("tom", "Upgraded")
    eng.advance(timedelta(days=1))
    eng.track("tom", "Trial Started")
    eng.track("una", "Trial Started")
    eng.run_until_idle()
    told = [(w.kind, w.step, w.reason) for w in eng.why("tom")]
    variant = eng.enrollments("tom", "trial")[0].variants["test"]
    assert told == [
        ("entered", "test", "entry: Trial Started"),
        ("split", "test", f"variant {variant}"),
        ("waiting", "ask", "for Upgraded until 2026-03-05T10:00:00Z"),
        ("resumed", "ask", "event: Upgraded"),
        ("exited", "ask", "completed"),
        ("not_entered", None, "re_entry: after 30d (last entered 2026-03-02T10:00:00Z)")]
    split = eng.why("tom")[1]
    assert 0 <= split.details["bucket"] < 100
    assert split.details["weights"] == {"a": 50, "b": 50}
    assert [(w.kind, w.reason) for w in eng.why("una")][-2:] == [
        ("resumed", "timeout: no Upgraded in time"), ("exited", "completed")]


def test_the_story_in_the_docs_is_what_why_prints(tmp_path: Path) -> None:
    """docs/testing.md shows `journeyman why ana` for the offer journey above."""
    from engine.runtime.why import story
    from engine.testing import InMemoryEngine
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "testing.md").read_text()
    start = doc.index("```\nana: ") + 4
    shown = doc[start:doc.index("```", start)]
    folder = tmp_path / "journeys"
    offer_folder(folder, caps=True)
    eng = InMemoryEngine.from_folder(folder, start=T0)
    eng.identify("ana", {"email": "ana@example.com", "plan": "premium"})
    eng.track("ana", "Product Viewed", {"price": 5})
    eng.track("ana", "Product Viewed", {"price": 50})
    eng.advance(timedelta(hours=1))
    eng.track("ana", "Product Viewed", {"price": 70})
    eng.run_until_idle()
    assert story("ana", eng.why("ana")) == shown


def test_the_story_tells_its_times_are_utc_to_the_second() -> None:
    """`journeyman why` against a live service printed `2026-12-07 21:06:06.816261` with
    no zone, beside a deferral's `22:06 in Europe/Madrid`: a newcomer could not tell which
    clock the times were on, and the microseconds were noise."""
    from engine.runtime.why import Why, story

    told = story("ana", [Why("2026-12-07T21:06:06.816261Z", "ana", "welcome", "by_source",
                             "entered", "entry: Signed Up")])
    assert told.splitlines() == [
        "ana: 1 decision(s) in 1 journey(s), oldest first, times in UTC", "", "welcome",
        "  2026-12-07 21:06:06  entered     by_source: entry: Signed Up"]
