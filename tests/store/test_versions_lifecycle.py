"""Journeys leaving the folder, archived, paused and resumed, on SQLite and PostgreSQL
(review fixes of issue 14):

- a journey taken out of the folder keeps its `policy:` and `priority` for the people
  who finish on it (its transactional sends are not skipped as `no_consent`);
- a segment journey paused does not record who joined the segment meanwhile, so they
  enter after `resume` (on their next event, or by the time sweep for a time segment);
- a journey archived by an operator stays archived when the folder is applied again
  (a restart), and `plan` says so; one that merely left the folder comes back active.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from engine.cli import app
from engine.core.model import Profile
from engine.runtime.events import normalize
from engine.runtime.time_entries import arm_time_entries
from engine.runtime.unsubscribe import UnsubscribeLinks
from engine.runtime.versions import apply, plan
from engine.service import wire
from engine.store import SqlStore
from engine.testing import TEST_SECRET, FakeClock, RecordingChannel, SequentialIds
from journeys.loader import load_library
from tests.store.helpers import T0, dormant_journey

POLICY = "timezone: UTC\nconsent_required: [email]\n"
TEMPLATE = "channel: email\nsubject: Hi\nhtml: <p>Hi</p>\n"
RECEIPT = """\
journey: receipt
version: 1
priority: 90
policy: {consent_required: []}   # transactional: no marketing consent needed
entry:
  event: Order Placed
re_entry: always
steps:
  - id: settle
    wait: 1h
  - id: send_receipt
    send: {channel: email, template: receipt}
"""
VIP = """\
journey: vip
version: 1
entry:
  segment:
    when:
      profile.traits.vip: {eq: true}
steps:
  - id: hello
    send: {channel: email, template: receipt}
"""
DORMANT = dormant_journey("receipt")


def _folder(tmp_path: Path, *journeys: str) -> Path:
    folder = tmp_path / "journeys"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "receipt.yaml").write_text(TEMPLATE)
    (folder / "policy.yaml").write_text(POLICY)
    for source in journeys:
        (folder / f"{source.split()[1]}.yaml").write_text(source)
    return folder


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


class Rig:
    """`serve` restarted after each apply: the production wiring over one store, with
    the dispatcher, on a fake clock."""

    def __init__(self, store: SqlStore, folder: Path) -> None:
        self.store, self.folder = store, folder
        self.clock = FakeClock(T0)
        store.clock = self.clock
        self.ids = SequentialIds("m")
        self.channel = RecordingChannel()
        self.apply()

    def apply(self) -> Any:
        library = load_library(self.folder)
        result = apply(library, self.store, self.clock.now())
        self.wiring = wire(library, store=self.store, clock=self.clock,
                           channels={"email": self.channel},
                           unsubscribe=UnsubscribeLinks(TEST_SECRET, "https://x.invalid"),
                           deployed=True, backend="python")
        arm_time_entries(self.wiring.runner, self.store, self.clock.now())
        return result

    def event(self, user: str, raw: dict[str, Any]) -> None:
        self.store.accept_events([normalize({"userId": user, **raw}, now=self.clock.now(),
                                            message_id=self.ids.new_id)])
        self.run()

    def run(self) -> None:
        while self.wiring.worker.handle_events():
            pass
        while self.wiring.worker.fire_timers():
            pass
        self.wiring.dispatcher.dispatch_due()

    def advance(self, delta: timedelta) -> None:
        self.clock.set(self.clock.now() + delta)
        self.run()

    def sql(self, query: str) -> list[Any]:
        with self.store.sql_engine.connect() as conn:
            return list(conn.execute(text(query)))

    def sent(self) -> list[tuple[str, str]]:
        return sorted((m.profile_id, m.journey) for m in self.channel.messages)


def _person(store: SqlStore, pid: str, **traits: Any) -> None:
    with store.transaction():
        store.put_profile(Profile(pid, {"email": f"{pid}@example.com", **traits}))


# --- (a) a journey out of the folder keeps its policy and priority -----------------------


def test_a_removed_journey_keeps_its_policy_for_the_people_finishing_it(
        sql_store: SqlStore, tmp_path: Path) -> None:
    folder = _folder(tmp_path, RECEIPT, VIP)
    rig = Rig(sql_store, folder)
    _person(sql_store, "u1")  # no marketing consent: a receipt needs none
    rig.event("u1", {"type": "track", "event": "Order Placed"})
    assert rig.sql("SELECT state FROM enrollments WHERE journey = 'receipt'") == [("settle",)]
    (folder / "receipt.yaml").unlink()  # taken out of the folder while u1 waits
    rig.apply()
    rig.advance(timedelta(hours=2))
    assert rig.sql("SELECT reason FROM decisions WHERE journey = 'receipt' AND "
                   "what = 'skipped'") == []  # was: no_consent
    assert rig.sent() == [("u1", "receipt")]
    assert rig.sql("SELECT status FROM outbox WHERE journey = 'receipt'") == [("sent",)]
    assert rig.wiring.dispatcher.gate is not None
    assert rig.wiring.dispatcher.gate.priority("receipt") == 90


# --- (b) a paused segment journey ------------------------------------------------------


def test_people_who_join_a_paused_segment_enter_after_resume(sql_store: SqlStore,
                                                            tmp_path: Path) -> None:
    rig = Rig(sql_store, _folder(tmp_path, VIP))
    _person(sql_store, "u1", consent={"email": True})
    assert _cli("journeys", "pause", "vip", "--db", sql_store.url).exit_code == 0
    rig.apply()
    rig.event("u1", {"type": "identify", "traits": {"vip": True}})  # joins while paused
    assert rig.sql("SELECT journey FROM segment_members") == []
    assert rig.sql("SELECT count(*) FROM enrollments") == [(0,)]
    for _ in range(3):  # said once (on the identify), not on every event while paused
        rig.event("u1", {"type": "track", "event": "Page Viewed"})
    assert rig.sql("SELECT reason FROM decisions WHERE journey = 'vip' AND "
                   "what = 'not_entered'") == [("journey paused or archived",)]
    assert _cli("journeys", "resume", "vip", "--db", sql_store.url).exit_code == 0
    rig.apply()
    rig.event("u1", {"type": "track", "event": "Page Viewed"})  # any next event
    assert rig.sql("SELECT journey FROM segment_members") == [("vip",)]
    assert rig.sent() == [("u1", "vip")]


def test_a_dormant_segment_paused_then_resumed_enters_by_the_sweep(sql_store: SqlStore,
                                                                  tmp_path: Path) -> None:
    rig = Rig(sql_store, _folder(tmp_path, DORMANT))
    _person(sql_store, "u1", consent={"email": True})
    rig.event("u1", {"type": "track", "event": "Order Completed",
                     "properties": {"revenue": 10}})
    assert _cli("journeys", "pause", "dormant", "--db", sql_store.url).exit_code == 0
    rig.apply()
    rig.advance(timedelta(days=91))  # the check fires while paused: no entry, no member
    assert rig.sql("SELECT count(*) FROM enrollments") == [(0,)]
    assert rig.sql("SELECT journey FROM segment_members") == []
    assert _cli("journeys", "resume", "dormant", "--db", sql_store.url).exit_code == 0
    rig.apply()  # a restart (a running service: tests/service/test_serve_resume.py)
    rig.advance(timedelta(hours=1))  # no event of theirs: the time sweep enters them
    assert rig.sent() == [("u1", "dormant")]


# --- (c) archived by an operator vs taken out of the folder -------------------------------


def test_an_archived_journey_stays_archived_through_a_restart(sql_store: SqlStore,
                                                              tmp_path: Path) -> None:
    folder = _folder(tmp_path, RECEIPT, VIP)
    rig = Rig(sql_store, folder)
    assert _cli("journeys", "archive", "receipt", "--db", sql_store.url).exit_code == 0
    shown = _cli("plan", "--journeys", str(folder), "--db", sql_store.url, "--json")
    receipt = json.loads(shown.stdout)["journeys"]["receipt"]
    assert (receipt["status"], receipt["journey_status"]) == ("unchanged", "archived")
    shown = _cli("plan", "--journeys", str(folder), "--db", sql_store.url)
    assert "receipt: archived, v1: stays archived" in shown.stdout
    assert "journeyman journeys resume receipt" in shown.stdout
    rig.apply()  # serve --journeys restarts with the file still in the folder
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"archived"}
    _person(sql_store, "u1")
    rig.event("u1", {"type": "track", "event": "Order Placed"})
    assert rig.sql("SELECT count(*) FROM enrollments") == [(0,)]
    # un-archived by a command
    assert _cli("journeys", "resume", "receipt", "--db", sql_store.url).exit_code == 0
    rig.apply()
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"active"}
    rig.event("u1", {"type": "track", "event": "Order Placed"})
    assert rig.sql("SELECT count(*) FROM enrollments") == [(1,)]


def test_a_new_version_of_an_archived_journey_makes_it_active(sql_store: SqlStore,
                                                              tmp_path: Path) -> None:
    folder = _folder(tmp_path, RECEIPT)
    rig = Rig(sql_store, folder)
    assert _cli("journeys", "archive", "receipt", "--db", sql_store.url).exit_code == 0
    (folder / "receipt.yaml").write_text(RECEIPT.replace("version: 1", "version: 2")
                                         .replace("wait: 1h", "wait: 2h"))
    shown = _cli("plan", "--journeys", str(folder), "--db", sql_store.url, "--json")
    receipt = json.loads(shown.stdout)["journeys"]["receipt"]
    assert (receipt["journey_status"], receipt["status_after"]) == ("archived", "active")
    rig.apply()
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"active"}


def test_a_journey_back_in_the_folder_is_active_again(sql_store: SqlStore,
                                                      tmp_path: Path) -> None:
    folder = _folder(tmp_path, RECEIPT, VIP)
    rig = Rig(sql_store, folder)
    (folder / "receipt.yaml").unlink()
    result = rig.apply()
    assert result.journeys["receipt"].status == "removed"
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"removed"}
    listed = json.loads(_cli("journeys", "--db", sql_store.url, "--json").stdout)
    assert [r["status"] for r in listed if r["journey"] == "receipt"] == ["removed"]
    assert plan(load_library(folder), sql_store).journeys.get("receipt") is None  # once
    (folder / "receipt.yaml").write_text(RECEIPT)
    shown = _cli("plan", "--journeys", str(folder), "--db", sql_store.url)
    assert "receipt: back in the folder, v1: takes new entries again" in shown.stdout
    rig.apply()
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"active"}
    # archived, then taken out of the folder, then put back: still archived
    assert _cli("journeys", "archive", "receipt", "--db", sql_store.url).exit_code == 0
    (folder / "receipt.yaml").unlink()
    rig.apply()
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"archived"}
    (folder / "receipt.yaml").write_text(RECEIPT)
    rig.apply()
    assert {v.status for v in sql_store.deployed_versions("receipt")} == {"archived"}


def test_apply_keeps_the_file_as_written_from_a_nested_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journey's `file` is the path as the folder was given (`deep/journeys/x.yaml`):
    the text deployed is still that file's, as laid out, not a YAML dump of it."""
    from engine.runtime.versions import _source_text

    nested = tmp_path / "deep"
    nested.mkdir()
    folder = _folder(nested, RECEIPT)
    monkeypatch.chdir(tmp_path)
    library = load_library(Path("deep/journeys"))
    loaded = library.journeys["receipt"]
    assert loaded.file == "deep/journeys/receipt.yaml"
    assert _source_text(library, loaded) == (folder / "receipt.yaml").read_text()
