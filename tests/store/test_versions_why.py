"""`journeyman why` tells the moves `journeyman apply` made (qa-contract §4 and §5).

A `migrate:` map moves in-flight enrollments of an old version's step to a new version's
step; `why` said nothing of it, so "why did she get the new step's message" had a gap.
Each enrollment moved now gets a decision of a contract kind, `waiting`, at the new step:
`moved by apply: <journey> v1 step grace -> v2 step hold`, with the versions, the steps
and the moved timer's due time in `details`. Written in apply's transaction (a failed
apply records nothing), in the person's export and erased by `forget`; nothing for the
people who stay on the old version; the journey page counts it as a reason of its own
and nobody as entering again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from engine.api.dashboard.stats import journey_stats
from engine.api.dashboard.timeline import timeline
from engine.cli import app
from engine.core.times import iso
from engine.ports import StepMove
from engine.runtime.unsubscribe import SigningSecret
from engine.runtime.why import KINDS, why
from engine.service import Service
from engine.store import SqlStore
from engine.testing import TEST_SECRET, RecordingChannel
from tests.store.helpers import T0, enrollment, timer
from tests.store.test_versions import MAP, V2_RENAMED, Rig, folder

__all__ = ["folder"]  # the fixture: the bundled abandoned_cart in a folder of its own

GRACE_MOVE = "moved by apply: abandoned_cart v1 step grace -> v2 step hold"
CLICKED_MOVE = "moved by apply: abandoned_cart v1 step clicked -> v2 step clicked"


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _moved_rig(store: SqlStore, folder: Path, *, mapped: bool = True) -> Rig:
    """`a1` on v1's `clicked` (reminded), `b1` on v1's `grace`; then v2 applied, with
    the map (or without)."""
    rig = Rig(store, folder)
    rig.apply()
    rig.checkout(["a1"])
    rig.advance(timedelta(minutes=90))  # a1: reminder sent, waiting on `clicked`
    rig.checkout(["b1"])  # b1: on `grace` until T0 + 2h30
    (folder / "abandoned_cart.yaml").write_text(
        V2_RENAMED.replace("MIGRATE\n", MAP if mapped else ""))
    rig.clock.set(rig.clock.now() + timedelta(minutes=5))
    rig.apply()
    return rig


def _moves(store: Any, profile: str | None = None) -> list[Any]:
    return [d for d in store.recorded_decisions(profile)
            if d.reason.startswith("moved by apply")]


def test_why_tells_each_move_apply_made(sql_store: SqlStore, folder: Path) -> None:
    rig = _moved_rig(sql_store, folder)
    applied = T0 + timedelta(minutes=95)
    shown = _cli("why", "b1", "--db", sql_store.url, "--json")
    assert shown.exit_code == 0, shown.output
    records = json.loads(shown.stdout)
    assert {r["kind"] for r in records} <= set(KINDS)  # no new kind
    [moved] = [r for r in records if r["reason"].startswith("moved by apply")]
    assert moved == {**moved, "at": iso(applied), "journey": "abandoned_cart", "step": "hold",
                     "kind": "waiting", "reason": GRACE_MOVE}
    [b1] = sql_store.profile_enrollments("b1")
    assert moved["details"] == {"moved_by": "apply", "from_version": 1, "to_version": 2,
                                "from_step": "grace", "to_step": "hold", "enrollment": b1.id,
                                "until": iso(T0 + timedelta(minutes=150))}
    assert records[-1] == moved  # the newest: after the wait on v1's grace
    [a1] = [r for r in json.loads(_cli("why", "a1", "--db", sql_store.url, "--json").stdout)
            if r["reason"].startswith("moved by apply")]
    assert (a1["step"], a1["reason"]) == ("clicked", CLICKED_MOVE)
    assert a1["details"]["until"] == iso(T0 + timedelta(hours=25))  # the wait_for's timeout
    story = _cli("why", "b1", "--db", sql_store.url)
    assert (f"waiting     hold: {GRACE_MOVE} (its timer still due "
            f"{iso(T0 + timedelta(minutes=150))})") in story.stdout
    # and b1 then goes on from v2's hold, as the log goes on to say
    rig.advance(timedelta(hours=1))
    after = why(sql_store, "b1")
    assert after is not None
    kinds = [(w.kind, w.step) for w in after]
    assert kinds[kinds.index(("waiting", "hold")) + 1] == ("resumed", "hold")


def test_a_move_is_one_decision_per_person_and_none_for_those_who_stay(
        sql_store: SqlStore, folder: Path) -> None:
    rig = _moved_rig(sql_store, folder, mapped=False)
    assert rig.sql_in_flight() == {(1, "clicked"): 1, (1, "grace"): 1}
    assert _moves(sql_store) == []  # both finish on version 1: nothing was moved
    # A version 3 that takes version 1's people over: one decision each, nothing more.
    (folder / "abandoned_cart.yaml").write_text(V2_RENAMED.replace("version: 2", "version: 3")
                                                .replace("MIGRATE\n", MAP))
    rig.apply()
    moves = _moves(sql_store)
    assert sorted((d.profile_id, d.step, d.what) for d in moves) == [
        ("a1", "clicked", "waiting"), ("b1", "hold", "waiting")]
    assert {d.details["to_version"] for d in moves} == {3}
    rig.apply()  # the same folder again: unchanged, nothing moves, nothing recorded
    assert len(_moves(sql_store)) == 2


def test_a_failed_apply_records_no_move(sql_store: SqlStore, folder: Path) -> None:
    """The decisions are written in apply's transaction: when the second move fails (a
    trigger refuses the decision of a move to `hold`, after the move of `clicked` was
    written), the version, both moves and their decisions are rolled back."""
    rig = _moved_rig(sql_store, folder, mapped=False)
    (folder / "abandoned_cart.yaml").write_text(V2_RENAMED.replace("version: 2", "version: 3")
                                                .replace("MIGRATE\n", MAP))
    refuse = {
        "sqlite": ["CREATE TRIGGER refuse BEFORE INSERT ON decisions WHEN NEW.step = 'hold' "
                   "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
        "postgresql": [
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.step = 'hold' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
            "RETURN NEW; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON decisions FOR EACH ROW "
            "EXECUTE FUNCTION refuse()"]}[sql_store.sql_engine.dialect.name]
    with sql_store.sql_engine.begin() as conn:
        for statement in refuse:
            conn.execute(text(statement))
    try:
        with pytest.raises(Exception, match="refused by the test"):
            rig.apply()
    finally:
        with sql_store.sql_engine.begin() as conn:
            conn.execute(text("DROP TRIGGER refuse" + (
                " ON decisions" if sql_store.sql_engine.dialect.name == "postgresql" else "")))
            if sql_store.sql_engine.dialect.name == "postgresql":
                conn.execute(text("DROP FUNCTION refuse()"))
    assert _moves(sql_store) == []
    assert rig.sql_in_flight() == {(1, "clicked"): 1, (1, "grace"): 1}
    assert [v.version for v in sql_store.deployed_versions("abandoned_cart")] == [1, 2]
    rig.apply()  # without the trigger it goes through
    assert len(_moves(sql_store)) == 2


def test_moves_are_exported_and_forgotten(sql_store: SqlStore, folder: Path) -> None:
    _moved_rig(sql_store, folder)
    exported = _cli("profiles", "export", "b1", "--db", sql_store.url)
    assert exported.exit_code == 0, exported.output
    document = json.loads(exported.stdout)
    assert GRACE_MOVE in [d["reason"] for d in document["decisions"]]
    forgotten = _cli("profiles", "forget", "b1", "--db", sql_store.url)
    assert forgotten.exit_code == 0, forgotten.output
    assert _moves(sql_store, "b1") == []
    with sql_store.sql_engine.connect() as conn:
        left = conn.execute(text("SELECT profile_id FROM decisions WHERE reason LIKE "
                                 "'moved by apply%'")).scalars().all()
    assert left == ["a1"]  # the other person's move is still there


def test_the_journey_page_counts_a_move_apart_and_nobody_as_entering(
        sql_store: SqlStore, folder: Path) -> None:
    rig = Rig(sql_store, folder)
    rig.apply()
    rig.checkout(["a1", "a2", "a3"])
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    journey = rig.worker.runner.journeys["abandoned_cart"]
    before = journey_stats(sql_store, journey, since, until)
    (folder / "abandoned_cart.yaml").write_text(V2_RENAMED.replace("MIGRATE\n", MAP))
    rig.clock.set(T0 + timedelta(minutes=5))
    rig.apply()
    journey = rig.worker.runner.journeys["abandoned_cart"]
    after = journey_stats(sql_store, journey, since, until)
    assert (after["entered"], after["in_flight"]) == (before["entered"], 3) == (3, 3)
    assert [d["entered"] for d in after["series"]] == [d["entered"] for d in before["series"]]
    assert after["kpis"] == before["kpis"]  # `entered`, drop-offs...: enrollments, not moves
    hold = next(s for s in after["steps"] if s["id"] == "hold")
    assert hold["now"] == 3
    assert hold["decisions"] == [{"what": "waiting", "reason": GRACE_MOVE, "count": 3}]


def test_the_profile_timeline_tells_the_version_entered_and_the_move(
        sql_store: SqlStore, folder: Path) -> None:
    """The dashboard's timeline put the enrollment's version now beside its entry: `v2`
    for a person who entered v1 and was moved."""
    _moved_rig(sql_store, folder)
    rows = timeline(sql_store, "b1")
    entered = [r for r in rows if r[1] == "entered"]
    assert [(r[2], r[4]) for r in entered] == [
        ("abandoned_cart", "entry: Checkout Started (v1)")]
    assert [r for r in rows if r[4] == GRACE_MOVE] == [
        [iso(T0 + timedelta(minutes=95)), "waiting", "abandoned_cart", "hold", GRACE_MOVE]]


def test_a_move_on_the_service_api_why(tmp_path: Path, sqlite_template: Path,
                                       folder: Path) -> None:
    """GET /v1/profiles/{id}/why tells the move as `journeyman why --json` does."""
    db = tmp_path / "api.db"
    db.write_bytes(sqlite_template.read_bytes())
    store = SqlStore(f"sqlite:///{db}")
    try:
        rig = _moved_rig(store, folder)
        service = Service(folder, store.url, channels={"email": RecordingChannel("email")},
                          clock=rig.clock, secrets=[SigningSecret(TEST_SECRET)])
        try:
            admin = service.store.create_key("ops", admin=True)
            answer = asyncio.run(_get(service.app(), "/v1/profiles/b1/why", admin))
            assert answer.status_code == 200, answer.text
            cli = json.loads(_cli("why", "b1", "--db", store.url, "--json").stdout)
            assert answer.json() == cli
            assert GRACE_MOVE in [r["reason"] for r in answer.json()]
        finally:
            service.stop()
    finally:
        store.close()


async def _get(asgi: Any, path: str, key: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, auth=(key, ""))


# --- the port, on every store ----------------------------------------------------------


def test_move_enrollments_records_each_move(store: Any) -> None:
    with store.transaction():
        store.put_enrollment(enrollment("e1", state="wait", visits={"wait": 1}))
        store.put_enrollment(enrollment("e2", profile="p2", state="ask"))
        store.put_enrollment(replace(enrollment("e3", profile="p3", state="wait"), version=2))
        store.add_timers([timer("e1:wait:1", T0 + timedelta(hours=1), enrollment="e1",
                                occurrence=1),
                          timer("e2:ask:1", T0 + timedelta(hours=2), profile="p2",
                                enrollment="e2", step="ask", occurrence=1)])
    at = T0 + timedelta(minutes=1)
    with store.transaction():
        assert store.move_enrollments(StepMove("j", 1, "wait", 2, "hold"), at) == 1
        assert store.move_enrollments(StepMove("j", 1, "ask", 2, "ask"), at) == 1
    got = sorted(((d.profile_id, d.at, d.journey, d.step, d.what, d.reason, dict(d.details))
                  for d in store.recorded_decisions()), key=lambda d: d[0])
    assert got == [
        ("p1", at, "j", "hold", "waiting", "moved by apply: j v1 step wait -> v2 step hold",
         {"moved_by": "apply", "from_version": 1, "to_version": 2, "from_step": "wait",
          "to_step": "hold", "enrollment": "e1", "until": iso(T0 + timedelta(hours=1))}),
        ("p2", at, "j", "ask", "waiting", "moved by apply: j v1 step ask -> v2 step ask",
         {"moved_by": "apply", "from_version": 1, "to_version": 2, "from_step": "ask",
          "to_step": "ask", "enrollment": "e2", "until": iso(T0 + timedelta(hours=2))})]
    with store.transaction():  # nobody left on v1's `wait`: nothing moved, nothing recorded
        assert store.move_enrollments(StepMove("j", 1, "wait", 2, "hold"), at) == 0
    assert len(store.recorded_decisions()) == 2
