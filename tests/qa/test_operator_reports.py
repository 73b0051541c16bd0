"""`outbox` and `decisions` with `--json`, their totals counting the rows the options
select; `simulate` showing skips, deferrals and render errors (file and line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.ports import Decision, DeliveryError, Message
from engine.runtime.dispatch import Dispatcher
from engine.store import SqlStore
from engine.testing import FakeClock
from tests.store.helpers import T0, outbox_entry

runner = CliRunner()


class Refusing:
    name = "email"

    def send(self, message: Message) -> None:
        raise DeliveryError("550 5.1.1 no such user", permanent=True)


def filled_store(tmp_path: Path) -> str:
    db = f"sqlite:///{tmp_path / 'o.db'}"
    store = SqlStore(db, create=True)
    try:
        store.enqueue_send(outbox_entry("a1", profile="ana"))
        store.enqueue_send(outbox_entry("a2", at=T0.replace(year=2030), profile="ana"))
        store.enqueue_send(outbox_entry("b1", at=T0.replace(year=2030), profile="ben"))
        store.enqueue_send(outbox_entry("b2", at=T0.replace(year=2030), profile="ben"))
        Dispatcher(store, {"email": Refusing()}, FakeClock(T0)).dispatch_due()
        store.record_decision(Decision(T0, "ben", "welcome", "send_welcome", "skipped",
                                       "no_consent", {"consent": "unknown"}))
    finally:
        store.close()
    return db


def test_outbox_totals_follow_the_filters_and_json(tmp_path: Path) -> None:
    db = filled_store(tmp_path)
    everything = runner.invoke(app, ["outbox", "--db", db])
    assert everything.output.splitlines()[-1] == "failed 1, pending 3"
    ana = runner.invoke(app, ["outbox", "--db", db, "--profile", "ana"])
    assert ana.output.splitlines()[-1] == "failed 1, pending 1"
    as_json = json.loads(runner.invoke(app, ["outbox", "--db", db, "--profile", "ben",
                                             "--limit", "1", "--json"]).stdout)
    assert as_json["totals"] == {"pending": 2}
    assert as_json["total"] == 2
    assert as_json["filters"] == {"status": None, "profile": "ben", "limit": 1}
    [row] = as_json["rows"]
    assert row["key"] == "b2"
    assert (row["profile"], row["journey"], row["step"], row["status"], row["template"]) == (
        "ben", "welcome", "send_welcome", "pending", "welcome_email")
    assert row["next_attempt_at"] == "2030-03-02T09:00:00Z"
    failed = json.loads(runner.invoke(app, ["outbox", "--db", db, "--status", "failed",
                                            "--json"]).stdout)
    assert failed["totals"] == {"failed": 1}
    assert failed["rows"][0]["last_error"] == "550 5.1.1 no such user"


def test_decisions_json_and_filtered_totals(tmp_path: Path) -> None:
    db = filled_store(tmp_path)
    text = runner.invoke(app, ["decisions", "--db", db, "--profile", "ben"])
    assert text.output.splitlines()[-2:] == ["skipped 1", "  1  skipped no_consent"]
    logged = json.loads(runner.invoke(app, ["decisions", "--db", db, "--json"]).stdout)
    assert logged["totals"] == {"failed": 1, "skipped": 1}
    assert logged["by_reason"] == {"failed:permanent_failure": 1, "skipped:no_consent": 1}
    assert [(r["profile"], r["what"], r["reason"]) for r in logged["rows"]] == [
        ("ana", "failed", "permanent_failure"), ("ben", "skipped", "no_consent")]
    ana = json.loads(runner.invoke(app, ["decisions", "--db", db, "--profile", "ana",
                                         "--json"]).stdout)
    assert ana["total"] == 1
    assert ana["rows"][0]["details"]["error"] == "550 5.1.1 no such user"


JOURNEY = """\
journey: hello
version: 1
entry: {event: Signed Up}
steps:
  - id: welcome
    send: {channel: email, template: welcome}
  - id: pause
    wait: 1d
  - id: tips
    send: {channel: email, template: tips}
"""


@pytest.mark.parametrize("name", ["j", "Journeys (v2)"])  # parentheses in the folder's name
def test_simulate_shows_skips_deferrals_and_render_errors(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    (folder / "templates").mkdir(parents=True)
    (folder / "hello.yaml").write_text(JOURNEY)
    (folder / "policy.yaml").write_text(
        'quiet_hours: {start: "21:00", end: "08:00"}\nconsent_required: [email]\n'
        "timezone: Europe/Madrid\n")
    (folder / "templates" / "welcome.yaml").write_text(
        "channel: email\nsubject: Hi\ntext: |\n  Hello\n  {{ profile.traits.name.upper() }}\n")
    (folder / "templates" / "tips.yaml").write_text("channel: email\nsubject: Tips\ntext: Tips\n")
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"type": "identify", "userId": "a", "timestamp": "2026-03-02T09:00:00Z",
         "traits": {"email": "a@example.com", "consent": {"email": True}}},
        {"type": "identify", "userId": "b", "timestamp": "2026-03-02T09:00:00Z",
         "traits": {"email": "b@example.com", "consent": {"email": False}, "name": "Bo"}},
        {"type": "track", "userId": "a", "event": "Signed Up",
         "timestamp": "2026-03-02T22:00:00Z"},
        {"type": "track", "userId": "b", "event": "Signed Up",
         "timestamp": "2026-03-02T22:00:00Z"},
    ]) + "\n")
    done = runner.invoke(app, ["simulate", str(folder), "--events", str(events)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == (
        "2026-03-02T22:00:00Z  a              hello/welcome: email skipped (template_error): "
        f"template 'welcome' ({folder}/templates/welcome.yaml:5, text): UndefinedError: "
        "'dict object' "
        "has no attribute 'name' (missing for this person or event: write `| default('...')` "
        "after it, or test it with `is defined`)"), lines[0]
    assert lines[1] == ("2026-03-02T22:00:00Z  b              hello/welcome: email skipped "
                        "(no_consent): consent opted_out")
    assert ("2026-03-03T22:00:00Z  a              hello/tips: email deferred (quiet_hours) "
            "until 2026-03-04T07:00:00Z, 23:00 in Europe/Madrid") in lines
    assert lines[-1] == "-- 4 event(s), 1 message(s), 3 skipped, 1 deferred, 2 exit(s)"
    as_json = json.loads(runner.invoke(app, ["simulate", str(folder), "--events", str(events),
                                             "--json"]).stdout)
    assert [(s["profile"], s["reason"]) for s in as_json["skipped"]] == [
        ("a", "template_error"), ("b", "no_consent"), ("b", "no_consent")]
    assert as_json["skipped"][0]["details"]["line"] == 5
    assert as_json["skipped"][0]["details"]["file"] == f"{folder}/templates/welcome.yaml"
    assert as_json["deferred"] == [{"profile": "a", "journey": "hello", "step": "tips",
                                    "channel": "email", "reason": "quiet_hours",
                                    "at": "2026-03-03T22:00:00Z",
                                    "until": "2026-03-04T07:00:00Z"}]


def test_demo_lines_for_skips_deferrals_and_render_errors() -> None:
    from engine.qa.demo import describe_decision
    from journeys.loader import load_path
    from tests.conftest import LIBRARY

    library = load_path(LIBRARY)
    skip = Decision(T0, "ana", "welcome", "welcome_site", "skipped", "no_consent",
                    {"channel": "email", "consent": "opted_out"})
    assert describe_decision(skip, library) == (
        "[   skip] 2026-03-02 09:00 ana  welcome/welcome_site: no_consent")
    defer = Decision(T0, "ana", "nurturing", "pull_1", "deferred", "quiet_hours",
                     {"until": "2026-03-02T13:00:00+00:00"})
    assert describe_decision(defer, library).endswith(
        "nurturing/pull_1: quiet_hours until 2026-03-02T13:00:00+00:00")
    broken = Decision(T0, "ana", "welcome", "welcome_site", "skipped", "template_error",
                      {"error": "template 'welcome_site': 'first_name' is undefined"})
    line = describe_decision(broken, library)
    template = LIBRARY / "templates" / "welcome_site.yaml"
    number = next(n for n, text in enumerate(template.read_text().splitlines(), 1)
                  if "first_name" in text and "{" in text)
    assert line == ("[   skip] 2026-03-02 09:00 ana  welcome/welcome_site: template_error: "
                    f"template 'welcome_site': 'first_name' is undefined ({template}:{number})")
