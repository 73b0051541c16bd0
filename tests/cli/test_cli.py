"""The command line, run as a real subprocess (what users and CI scripts see)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.qa.simulate import SimulationResult, format_timeline
from engine.testing import ExitRecord, SentMessage, SkipRecord
from tests.engine.helpers import stub_email, write_folder

BROKEN = Path(__file__).resolve().parent.parent / "language" / "broken"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


JOURNEY = """
journey: hello
version: 1
entry: {event: Signed Up}
exit_when:
  - event: Unsubscribed
steps:
  - id: welcome
    send: {channel: email, template: welcome}
  - id: pause
    wait: 2d
  - id: tips
    send: {channel: email, template: tips}
"""


def test_validate_ok_and_exit_code_zero(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    result = run("validate", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 1 journey(s) valid"


def test_validate_lists_every_problem_on_stderr_and_exits_one() -> None:
    result = run("validate", str(BROKEN / "many_problems.yaml"), str(BROKEN / "split_weights.yaml"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "4 problem(s)"
    assert all(":" in line for line in lines[:-1])
    assert "Traceback" not in result.stderr


def test_validate_shows_a_files_problems_of_every_kind_in_one_run(tmp_path: Path) -> None:
    """A file named for another id, with a field out of range and a send to an unknown
    channel of a missing template: all four at once. The file name was checked only
    once the rest parsed, and the template only once the channel was known."""
    folder = tmp_path / "j"
    (folder / "templates").mkdir(parents=True)
    (folder / "policy.yaml").write_text("consent_required: []\n")
    (folder / "b2.yaml").write_text(
        "journey: b2wrong\nversion: 0\nentry:\n  event: Signed Up\nsteps:\n"
        "  - id: hello\n    send: {channel: emial, template: nope}\n")
    result = run("validate", str(folder))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "4 problem(s)", result.stderr
    text = result.stderr
    assert "b2.yaml:1:10: journey 'b2wrong' must live in b2wrong.yaml" in text
    assert "b2.yaml:2:10: version: must be greater than or equal to 1" in text
    assert "unknown channel 'emial' (did you mean 'email'?)" in text
    assert "template 'nope' does not exist" in text
    # an id that is no id is the model's to say, not sent to a file of that name
    (folder / "b2.yaml").write_text(
        "journey: B2\nversion: 1\nentry:\n  event: Signed Up\nsteps:\n"
        "  - id: hello\n    send: {channel: email, template: hi}\n")
    (folder / "templates" / "hi.yaml").write_text("channel: email\nsubject: Hi\ntext: hi\n")
    result = run("validate", str(folder))
    assert "journey id 'B2' must be snake_case" in result.stderr, result.stderr
    assert "must live in" not in result.stderr, result.stderr


def test_usage_error_exits_two(tmp_path: Path) -> None:
    assert run("validate").returncode == 2
    missing = run("validate", str(tmp_path / "nope"))  # a path that is not there: usage
    assert missing.returncode == 2, missing.stderr
    assert f"no such file or folder: {tmp_path / 'nope'}" in missing.stderr
    assert run("--help").returncode == 0
    for command in ("validate", "graph", "simulate"):
        assert run(command, "--help").returncode == 0


def test_graph_prints_mermaid_and_writes_markdown(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    result = run("graph", "hello", "--journeys", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "stateDiagram-v2"
    assert "    [*] --> welcome: Signed Up" in result.stdout
    assert "    pause --> tips: after wait" in result.stdout
    out = tmp_path / "hello.md"
    assert run("graph", str(folder / "hello.yaml"), "-o", str(out)).returncode == 0
    assert out.read_text().startswith("# hello\n\n```mermaid\nstateDiagram-v2\n")
    missing = run("graph", "nope", "--journeys", str(folder))
    assert missing.returncode == 1
    assert "no journey 'nope'" in missing.stderr
    typo = run("graph", "helo", "--journeys", str(folder))
    assert typo.returncode == 1
    assert "no journey 'helo' in " in typo.stderr
    assert "(did you mean 'hello'?) (have: hello)" in typo.stderr


def test_graph_says_each_branch_case_s_condition() -> None:
    """The branch edges said `case 1`; they say the condition."""
    result = run("graph", "abandoned_cart")
    assert result.returncode == 0, result.stderr
    assert "    offer --> vip_offer: profile.traits.vip = true\n" in result.stdout
    assert "    offer --> plain_offer: else\n" in result.stdout


def test_simulate_json(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"type": "identify", "userId": "a", "traits": {"email": "a@example.com"},
         "timestamp": "2026-03-02T09:00:00Z"},
        {"type": "track", "userId": "a", "event": "Signed Up", "timestamp": "2026-03-02T09:00:00Z"},
        {"type": "identify", "userId": "b", "traits": {"email": "b@example.com"},
         "timestamp": "2026-03-02T10:00:00Z"},
        {"type": "track", "userId": "b", "event": "Signed Up", "timestamp": "2026-03-02T10:00:00Z"},
        {"type": "track", "userId": "b", "event": "Unsubscribed",
         "timestamp": "2026-03-03T10:00:00Z"},
    ]) + "\n")
    result = run("simulate", str(folder), "--events", str(events), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "messages": [
            {"profile": "a", "journey": "hello", "step": "welcome", "channel": "email",
             "template": "welcome", "at": "2026-03-02T09:00:00Z"},
            {"profile": "b", "journey": "hello", "step": "welcome", "channel": "email",
             "template": "welcome", "at": "2026-03-02T10:00:00Z"},
            {"profile": "a", "journey": "hello", "step": "tips", "channel": "email",
             "template": "tips", "at": "2026-03-04T09:00:00Z"},
        ],
        "exits": [
            {"profile": "b", "journey": "hello", "step": "pause", "reason":
             "exit_when:Unsubscribed", "at": "2026-03-03T10:00:00Z"},
            {"profile": "a", "journey": "hello", "step": "tips", "reason": "completed",
             "at": "2026-03-04T09:00:00Z"},
        ],
        "skipped": [],
        "deferred": [],
        "unreadable": 0, "unreadable_lines": [], "rejected": 0, "rejected_lines": [],
    }
    until = run("simulate", str(folder), "--events", str(events), "--until",
                "2026-03-03T00:00:00Z", "--json")
    assert [m["step"] for m in json.loads(until.stdout)["messages"]] == ["welcome", "welcome"]
    text = run("simulate", str(folder), "--events", str(events))
    assert "2026-03-04T09:00:00Z  a              hello/tips: email tips" in text.stdout


def test_simulate_rejects_bad_events_with_the_line(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "track", "userId": "a", "event": "X", "timestamp": '
                      '"2026-03-02T09:00:00Z"}\n{not json\n')
    result = run("simulate", str(folder), "--events", str(events))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{events}:2:2: not JSON: Expecting property name enclosed in double quotes",
        f"journeyman simulate: 1 line(s) of {events} not simulated (exit 1)"]
    events.write_text('{"type": "track", "event": "X", "timestamp": "2026-03-02T09:00:00Z"}\n')
    result = run("simulate", str(folder), "--events", str(events))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{events}:1:1: an event needs a userId or an anonymousId",
        f"journeyman simulate: 1 line(s) of {events} not simulated (exit 1)"]


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    created = run("keys", "create", "web", "--db", db)
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    assert key.startswith("jm_")
    assert key not in created.stderr  # the key goes to stdout only
    admin = run("keys", "create", "ops", "--admin", "--db", db)
    assert admin.returncode == 0
    again = run("keys", "create", "web", "--db", db)
    assert again.returncode == 1
    assert "web" in again.stderr
    assert "Traceback" not in again.stderr
    listed = run("keys", "list", "--db", db)
    assert "web" in listed.stdout
    assert "ops" in listed.stdout
    assert key not in listed.stdout  # only its prefix
    assert key[:10] in listed.stdout
    assert run("keys", "revoke", "web", "--db", db).returncode == 0
    assert "web" not in run("keys", "list", "--db", db).stdout
    assert "web" in run("keys", "list", "--all", "--db", db).stdout
    gone = run("keys", "revoke", "web", "--db", db)
    assert gone.returncode == 1
    assert "no active key named 'web'" in gone.stderr


def test_preview_renders_what_the_engine_would_send(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from engine.qa.preview import preview
    from engine.testing import InMemoryEngine
    from tests.conftest import LIBRARY

    profile = {"id": "ana", "traits": {"first_name": "Ana", "email": "ana@example.com",
                                       "consent": {"email": True}, "timezone": "UTC"}}
    (tmp_path / "ana.json").write_text(json.dumps(profile))
    (tmp_path / "signup.json").write_text(json.dumps(
        {"type": "track", "event": "Signed Up", "userId": "ana",
         "properties": {"source": "site"}}))
    result = run("preview", "welcome", "welcome_site", "--journeys", str(LIBRARY),
                 "--profile", str(tmp_path / "ana.json"), "--event",
                 str(tmp_path / "signup.json"), "--html", str(tmp_path / "out.html"))
    assert result.returncode == 0, result.stderr
    assert "to: ana@example.com" in result.stdout
    assert "subject: Welcome aboard, Ana" in result.stdout
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in result.stdout
    assert "<p>Hi Ana,</p>" in (tmp_path / "out.html").read_text()

    # the same step, run for real on the engine, renders the same message
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    eng = InMemoryEngine.from_folder(LIBRARY, start=noon, only=["welcome"])
    eng.identify("ana", profile["traits"])
    eng.track("ana", "Signed Up", {"source": "site"})
    [sent] = [m for m in eng.channel.messages if m.step == "welcome_site"]
    shown = preview(LIBRARY, "welcome", "welcome_site", profile, now=noon,
                    event={"type": "track", "event": "Signed Up", "userId": "ana",
                     "properties": {"source": "site"}})
    def body(rendered: Any) -> str:  # the signed links differ only by secret
        link = rendered.headers["List-Unsubscribe"].strip("<>")
        html = str(rendered.html).replace(link, "<unsubscribe>")
        return re.sub(r"/([co])/[^.\"]+\.[A-Za-z0-9_-]+", r"/\1/<signed>", html)

    assert body(shown.entry.rendered) == body(sent.rendered)
    assert "<unsubscribe>" in body(sent.rendered)
    assert "/c/<signed>" in body(sent.rendered)  # its links are tracked
    assert (shown.entry.rendered.subject, shown.entry.to) == (sent.rendered.subject, sent.to)

    as_json = run("preview", "welcome", "welcome_site", "--journeys", str(LIBRARY),
                  "--profile", str(tmp_path / "ana.json"), "--json")
    assert json.loads(as_json.stdout)["subject"] == "Welcome aboard, Ana"


def test_preview_errors_are_clear(tmp_path: Path) -> None:
    from tests.conftest import LIBRARY

    (tmp_path / "p.json").write_text('{"id": "ana", "traits": {}}')
    not_send = run("preview", "welcome", "settle", "--journeys", str(LIBRARY),
                   "--profile", str(tmp_path / "p.json"))
    assert not_send.returncode == 1
    assert "is not a send step (send steps: welcome_newsletter" in not_send.stderr
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY}, {
        "welcome": "channel: email\nsubject: 'Hi {{ profile.traits.nickname }}'\ntext: hi\n",
        "tips": stub_email("tips")})
    broken = run("preview", "hello", "welcome", "--journeys", str(folder),
                 "--profile", str(tmp_path / "p.json"))
    assert broken.returncode == 1
    assert "nickname" in broken.stderr
    assert "Traceback" not in broken.stderr
    # what to do about it, not only Jinja's words
    assert ("(missing for this person or event: write `| default('...')` after it, or test "
            "it with `is defined`)") in broken.stderr
    typo = run("preview", "helo", "welcome", "--journeys", str(folder),
               "--profile", str(tmp_path / "p.json"))
    assert typo.returncode == 1
    assert "no journey 'helo' (did you mean 'hello'?) (have: hello)" in typo.stderr
    (tmp_path / "bad.json").write_text("{nope")
    unreadable = run("preview", "hello", "welcome", "--journeys", str(folder),
                     "--profile", str(tmp_path / "bad.json"))
    assert unreadable.returncode == 1
    assert unreadable.stderr == (f"--profile {tmp_path / 'bad.json'}:1:2: not JSON: Expecting "
                                 "property name enclosed in double quotes\n")


def test_outbox_and_decisions_show_failures_and_why(tmp_path: Path) -> None:
    import os

    from engine.ports import DeliveryError, Message
    from engine.runtime.dispatch import Dispatcher
    from engine.store import SqlStore
    from engine.testing import FakeClock
    from tests.store.helpers import T0, outbox_entry

    class Refusing:
        name = "email"

        def send(self, message: Message) -> None:
            raise DeliveryError("550 5.1.1 no such user", permanent=True)

    db = f"sqlite:///{tmp_path / 'o.db'}"
    store = SqlStore(db, create=True)
    try:
        store.enqueue_send(outbox_entry("e1:send:0"))
        store.enqueue_send(outbox_entry("e2:send:0", at=T0.replace(year=2030)))  # not due
        Dispatcher(store, {"email": Refusing()}, FakeClock(T0)).dispatch_due()
    finally:
        store.close()
    env = {**os.environ, "COLUMNS": "250"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args, "--db", db],
                              capture_output=True, text=True, env=env, check=False)

    failed = cli("outbox", "--status", "failed")
    assert failed.returncode == 0, failed.stderr
    assert "e1:send:0" in failed.stdout
    assert "550 5.1.1 no such user" in failed.stdout
    assert "e2:send:0" not in failed.stdout
    assert "failed 1, pending 1" in cli("outbox").stdout
    logged = cli("decisions")
    assert "permanent_failure" in logged.stdout
    assert "welcome/send_welcome" in logged.stdout
    env["COLUMNS"] = "80"  # too narrow for the table: one block per row, ids whole
    narrow = cli("outbox", "--status", "failed").stdout
    assert narrow.splitlines()[:3] == ["e1:send:0", "  profile              p1",
                                       "  journey/step         welcome/send_welcome"]
    assert "  last error           550 5.1.1 no such user" in narrow
    assert all(len(line) <= 80 for line in narrow.splitlines())


def test_outbox_shows_a_held_sends_earlier_error(tmp_path: Path) -> None:
    """A send that failed (a relay's 451) and was then held untried (its channel had
    just failed again): `outbox` says both, the table in its last error and the JSON
    split into `held` and `error` beside `last_error` (the hold's word hid the 451)."""
    from datetime import timedelta

    from typer.testing import CliRunner

    from engine.cli import app
    from engine.store import SqlStore
    from tests.store.helpers import T0, outbox_entry

    db = f"sqlite:///{tmp_path / 'o.db'}"
    store = SqlStore(db, create=True)
    try:
        store.enqueue_send(outbox_entry("e1:send:0"))
        store.enqueue_send(outbox_entry("e2:send:0", profile="p2"))
        store.claim_outbox(T0, 10, timedelta(minutes=1))
        store.mark_retry("e1:send:0", T0, "451 4.3.0 mailbox busy")
        store.mark_retry("e2:send:0", T0, "451 4.3.0 mailbox busy")
        store.claim_outbox(T0, 10, timedelta(minutes=1))
        store.mark_deferred_many([("e1:send:0", T0, "channel_unavailable")])
    finally:
        store.close()
    shown = CliRunner().invoke(app, ["outbox", "--db", db, "--json"])
    assert shown.exit_code == 0, shown.output
    rows = {row["key"]: row for row in json.loads(shown.stdout)["rows"]}
    assert {k: (r["last_error"], r["held"], r["error"]) for k, r in rows.items()} == {
        "e1:send:0": ("channel_unavailable; last error: 451 4.3.0 mailbox busy",
                      "channel_unavailable", "451 4.3.0 mailbox busy"),
        "e2:send:0": ("451 4.3.0 mailbox busy", None, "451 4.3.0 mailbox busy")}
    table = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["outbox", "--db", db])
    assert "channel_unavailable; last error: 451 4.3.0 mailbox busy" in table.stdout


def test_migrate_creates_a_current_schema_then_finds_it_current(tmp_path: Path) -> None:
    from engine.store import SchemaNotReady, SqlStore

    url = f"sqlite:///{tmp_path / 'new.db'}"
    try:
        SqlStore(url).close()
    except SchemaNotReady:
        pass
    else:
        raise AssertionError("a new database should not be current before `migrate`")
    for _ in range(2):  # and again: nothing to do
        done = run("migrate", "--db", url)
        assert done.returncode == 0, done.stderr
        assert "(current)" in done.stdout
    SqlStore(url).close()  # current: opens without create
    bad = run("migrate", "--db", f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr


def test_a_worker_alone_takes_longer_batches_than_serve(tmp_path: Path) -> None:
    """`journeyman worker` has no API in its process to keep waiting, so its batches may
    run WORKER_BATCH_BUDGET (fewer transactions per event); `serve` keeps them short."""
    import inspect

    from engine.cli.running import worker
    from engine.service import SERVE_BATCH_BUDGET, WORKER_BATCH_BUDGET, Service

    default = inspect.signature(worker).parameters["batch_budget"].default
    assert default == WORKER_BATCH_BUDGET > SERVE_BATCH_BUDGET
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    for budget in (SERVE_BATCH_BUDGET, WORKER_BATCH_BUDGET):
        service = Service(folder, f"sqlite:///{tmp_path / f'{budget}.db'}", channels={},
                          batch_budget=budget)
        try:
            assert service.worker.budget == budget
        finally:
            service.stop()


def test_a_worker_takes_a_lane_of_the_sqlite_inbox_and_handles_outside_the_lock(
        tmp_path: Path) -> None:
    """`journeyman worker --lane K/N` (SQLite): a bad lane is refused before anything
    starts; a worker handles its batches outside the write lock, `serve` inside it
    (engine/service.py says why)."""
    from engine.ports import Lane
    from engine.service import Service

    for lane, why in (("2/2", "lane 2 of 2"), ("x", "expected K/N")):
        bad = run("worker", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--lane", lane)
        assert bad.returncode == 2, bad.stderr
        assert why in bad.stderr
        assert "Traceback" not in bad.stderr
    bad = run("worker", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "--lane", "0/2")
    assert bad.returncode == 2, bad.stderr
    assert "lanes are for SQLite" in bad.stderr
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    service = Service(folder, f"sqlite:///{tmp_path / 'w.db'}", channels={}, lane=Lane(1, 2),
                      optimistic=True)
    try:
        assert service.worker.lane == Lane(1, 2)
        assert service.worker.snapshots is service.store
    finally:
        service.stop()
    service = Service(folder, f"sqlite:///{tmp_path / 's.db'}", channels={})  # serve's
    try:
        assert service.worker.snapshots is None
    finally:
        service.stop()
    with pytest.raises(ValueError, match="lanes need a worker on SQLite in a plain file"):
        Service(folder, "sqlite://", channels={}, lane=Lane(1, 2), optimistic=True)


def test_an_error_of_ours_no_command_caught_is_a_message_and_exit_1(tmp_path: Path) -> None:
    """The app itself shows an uncaught JourneymanError as its message (rules/errors.py:
    a traceback is for bugs). Here `demo` meets a rules backend that does not load, as
    durable-rules on Python 3.13: the extension's import blocked in the real process."""
    script = ("import sys; sys.modules['durable_rules_engine'] = None\n"
              "from engine.cli import app\n"
              "app(['demo', '--synthetic', '1'], prog_name='journeyman')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, check=False, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "durable rules backend does not load" in done.stderr
    assert "Python 3.11 or 3.12" in done.stderr


def test_serve_on_a_port_in_use_says_so_before_any_banner(tmp_path: Path) -> None:
    """The port is taken before the banner says the API is there: a port in use is one
    clear line and exit 3, not the banner then uvicorn's error."""
    import socket

    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "engine", "serve", "--port", str(port),
             "--db", f"sqlite:///{tmp_path / 'j.db'}"],
            capture_output=True, text=True, cwd=tmp_path, check=False, timeout=120)
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "API on" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_whose_http_port_is_in_use_exits_3_and_a_tick_of_0_is_refused(
        tmp_path: Path) -> None:
    """`worker --http-port` on a port another process has printed uvicorn's bind error
    and went on running, its probes answered by the other process: exit 3 now, as
    serve. `--tick 0` (or less) spun a core and ignored SIGTERM: a usage error."""
    import socket

    db = f"sqlite:///{tmp_path / 'w.db'}"
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "engine", "worker", "--http-port",
                               str(port), "--db", db], capture_output=True, text=True,
                              cwd=tmp_path, check=False, timeout=120)
    assert done.returncode == 3, done.stderr
    assert (f"cannot listen on 127.0.0.1:{port}: Address already in use (another process "
            "has the port? --http-port chooses another)") in done.stderr
    assert "running" not in done.stderr
    for tick in ("0", "-1"):
        refused = run("worker", "--tick", tick, "--db", db)
        assert refused.returncode == 2, refused.stderr
        assert "--tick" in refused.stderr
    for command in ("worker", "serve"):  # a log format it does not know: not text logs
        refused = run(command, "--log-format", "yaml", "--db", db)
        assert refused.returncode == 2, refused.stderr
        assert "'yaml' is not one of text, json" in refused.stderr


def test_validate_names_files_as_the_folder_was_typed(tmp_path: Path) -> None:
    """`validate deep/a/b/badbranch` names `deep/a/b/badbranch/j.yaml` (not
    `badbranch/j.yaml`), and an absolute folder absolute paths: what an editor, a
    terminal or a CI annotation opens from where the command ran."""
    folder = write_folder(tmp_path / "deep" / "a" / "b" / "badbranch", {"j": """
        journey: j
        version: 1
        entry: {event: Signed Up}
        steps:
          - id: hi
            send: {channel: email, template: hi}
            next: nowhere
        """}, {"hi": "channel: email\nsubject: '{{ nickname }}'\ntext: hi\n"})
    (folder / "templates" / "hi.yaml").write_text(
        "channel: email\nsubject: Hi\nhtml_file: hi.html\n")
    (folder / "templates" / "hi.html").write_text("<p>{{ nickname }}</p>\n")
    expected = ["{}/j.yaml:8:11: step 'nowhere' does not exist",
                "{}/templates/hi.html:1:1: unknown variable 'nickname' in template"]
    for typed in ("deep/a/b/badbranch", str(folder)):
        result = run("validate", typed, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.splitlines()
        assert lines[-3:] == [e.format(typed) for e in expected] + ["2 problem(s)"], lines


def test_the_served_connections_send_at_once() -> None:
    """serve's own socket says TCP, so asyncio turns Nagle's algorithm off on each
    connection it accepts (TCP_NODELAY): a socket made with protocol 0 left it on, and
    every answer waited for the client's delayed ACK (a batch's POST 47 ms, not 5)."""
    import asyncio
    import socket

    from engine.cli.running import bound

    async def accepted_nodelay() -> int:
        sock = bound("127.0.0.1", 0)
        sock.listen()
        seen: list[int] = []

        async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP,
                                                                   socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        await reader.read()  # until the server closes it
        writer.close()
        server.close()
        await server.wait_closed()
        return seen[0]

    assert asyncio.run(accepted_nodelay()) == 1


def test_every_store_command_reads_journeyman_db(tmp_path: Path) -> None:
    """deploy.md's environment file sets JOURNEYMAN_DB: `keys create` run with it went to
    a new ./journeyman.db (its key unknown to the API) before --db defaulted to it."""
    import os

    env = {**os.environ, "JOURNEYMAN_DB": f"sqlite:///{tmp_path / 'real.db'}"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                              text=True, cwd=tmp_path, env=env, check=False, timeout=120)

    created = cli("keys", "create", "web2")
    assert created.returncode == 0, created.stderr
    assert "web2" in cli("keys", "list").stdout
    assert not (tmp_path / "journeyman.db").exists()
    assert (tmp_path / "real.db").exists()
    # --db, when given, still wins
    assert cli("migrate", "--db", f"sqlite:///{tmp_path / 'other.db'}").returncode == 0
    other = cli("keys", "list", "--db", f"sqlite:///{tmp_path / 'other.db'}")
    assert other.returncode == 0, other.stderr
    assert "web2" not in other.stdout


def test_simulate_timeline_tells_a_persons_sends_before_their_exit_at_the_same_time() -> None:
    """A send step then an exit step in one instant: the skipped (or sent) message is
    told before the exit, each person's lines together, not every exit of that instant
    before every send's outcome."""
    at = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    result = SimulationResult(
        messages=[SentMessage("ana", "lapsed", "send_discount", "email", "lapsed_discount",
                              at)],
        exits=[ExitRecord("ana", "lapsed", "done", "finished", at),
               ExitRecord("cy", "lapsed", "done", "finished", at)],
        skipped=[SkipRecord("cy", "lapsed", "send_content", "no_consent", at, "email")])
    lines = format_timeline(result).splitlines()
    assert [line.split()[1:3] for line in lines[:-1]] == [
        ["ana", "lapsed/send_discount:"], ["ana", "lapsed/done:"],
        ["cy", "lapsed/send_content:"], ["cy", "lapsed/done:"]]


def test_preview_says_when_the_policy_would_not_deliver_the_message() -> None:
    """The message renders for a profile that never consented, but the engine would
    skip it as no_consent: the preview says so, and when quiet hours would hold it."""
    from engine.qa.preview import preview
    from tests.conftest import LIBRARY

    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    traits = {"first_name": "Ana", "email": "ana@example.com", "timezone": "UTC"}
    silent = preview(LIBRARY, "welcome", "welcome_site", {"id": "ana", "traits": traits},
                     now=noon)
    assert silent.as_json()["policy"] == {"action": "skip", "reason": "no_consent",
                                          "until": None, "details": {"consent": "unknown"}}
    assert ("policy: skipped (no_consent): consent.email is unknown; this profile would get "
            "nothing") in silent.lines()
    consenting = {**traits, "consent": {"email": True}}
    night = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)
    held = preview(LIBRARY, "welcome", "welcome_site", {"id": "ana", "traits": consenting},
                   now=night)
    assert held.as_json()["policy"]["action"] == "defer"
    assert "policy: deferred (quiet_hours) until 2026-03-03T08:00:00Z" in held.lines()
    sent = preview(LIBRARY, "welcome", "welcome_site", {"id": "ana", "traits": consenting},
                   now=noon)
    assert sent.as_json()["policy"]["action"] == "send"
    assert not [line for line in sent.lines() if line.startswith("policy:")]


def test_preview_warns_of_an_address_its_channel_cannot_send_to() -> None:
    """A numeric `email` trait showed `to: 5` with no word; a phone not in E.164 form
    and no address at all (the engine skips that send as no_address) are said too."""
    from engine.qa.preview import preview
    from tests.conftest import LIBRARY

    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def shown(journey: str, step: str, traits: dict[str, Any]) -> Any:
        return preview(LIBRARY, journey, step, {"id": "ana", "traits": traits}, now=noon)

    five = shown("welcome", "welcome_site", {"first_name": "Ana", "email": 5})
    assert five.lines()[1:3] == [
        "to: 5", "warning: '5' is not an e-mail address (the profile's email trait); the "
        "mail server would refuse it"]
    assert five.as_json()["warnings"] == [five.lines()[2].removeprefix("warning: ")]
    fine = shown("welcome", "welcome_site", {"first_name": "Ana", "email": "ana@example.com"})
    assert fine.as_json()["warnings"] == []
    assert not [line for line in fine.lines() if line.startswith("warning:")]
    nobody = shown("welcome", "welcome_site", {"first_name": "Ana"})
    assert nobody.lines()[1:3] == [
        "to: (no address)", "warning: no address: the profile has no email trait; the "
        "engine would skip this send (no_address)"]
    local = shown("nps_detractors", "escalate", {"first_name": "Ana", "phone": "600 000 000"})
    assert "is not a phone number in E.164 form" in local.lines()[2]
    assert shown("nps_detractors", "escalate", {"first_name": "Ana",
                                                    "phone": "+34600000000"}).warnings == []


LINKED_JOURNEY = """
journey: linked
version: 1
entry: {event: Go}
steps:
  - id: mail
    send: {channel: email, template: linked}
"""
LINKED_TEMPLATE = """\
channel: email
subject: hi
html: |
  <a href="https://shop.example/">Shop</a>
  <a href="{{ profile.traits.website | default('https://shop.example/') }}">Yours</a>
  <a data-track="false" href="{{ profile.traits.blog | default('') }}">Blog</a>
  <a href="{{ unsubscribe_url }}">Unsubscribe</a>
"""


def test_validate_and_preview_warn_of_a_link_whose_host_comes_from_data(
        tmp_path: Path) -> None:
    """Such a link is not tracked unless its host is listed (an open redirect otherwise):
    `validate` says where it is written (not the data-track="false" one, not the
    unsubscribe link), and `preview` which links of this profile's message are left."""
    from engine.qa.preview import preview

    folder = write_folder(tmp_path / "j", {"linked": LINKED_JOURNEY},
                          {"linked": LINKED_TEMPLATE})
    result = run("validate", str(folder))
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "comes from data" in line]
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith(f"{folder}/templates/linked.yaml:5:6: warning: the host "
                                "of the link href=\"{{ profile.traits.website")
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    shown = preview(folder, "linked", "mail", {"id": "ana", "traits": {
        "email": "ana@example.com", "website": "https://evil.example/x"}}, now=noon)
    doc = shown.as_json()
    assert doc["untracked_links"] == ["https://evil.example/x"]
    assert doc["warnings"] == [
        "link 'https://evil.example/x' is not tracked: its host is neither written in the "
        "template nor listed in the policy's tracking: hosts: (it comes from data; a "
        "tracked redirect to it would be an open redirect); it is sent as written "
        "(docs/engagement.md)"]
    assert f"warning: {doc['warnings'][0]}" in shown.lines()
    assert 'href="https://evil.example/x"' in (doc["html"] or "")
    fine = preview(folder, "linked", "mail", {"id": "ana", "traits": {
        "email": "ana@example.com", "website": "https://shop.example/me"}}, now=noon)
    assert (fine.as_json()["untracked_links"], fine.warnings) == ([], [])


def test_simulate_tells_every_bad_line_simulates_the_rest_and_exits_one(tmp_path: Path) -> None:
    """`simulate --events` stopped at the first bad line, telling only that one and
    simulating nothing; now, as `replay`, every line that is no event (or one the API
    refuses) is told as file:line:column on stderr, the rest is simulated and printed,
    and the exit is 1."""
    folder = write_folder(tmp_path / "j", {"hello": JOURNEY},
                          {"welcome": stub_email("welcome"), "tips": stub_email("tips")})
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([
        json.dumps({"type": "identify", "userId": "a", "traits": {"email": "a@example.com"},
                    "timestamp": "2026-03-02T09:00:00Z"}),
        "{not json",
        json.dumps({"type": "track", "userId": "a", "event": "Signed Up",
                    "timestamp": "2026-03-02T09:00:00Z"}),
        json.dumps({"type": "track", "userId": "a", "event": "Signed Up"}),
        json.dumps({"type": "track", "event": "Signed Up", "timestamp": "2026-03-02T09:00:00Z"}),
        "[1]",
    ]) + "\n")
    told = [f"{events}:2:2: not JSON: Expecting property name enclosed in double quotes",
            f"{events}:4:1: every event needs an ISO 8601 'timestamp' to be simulated",
            f"{events}:6:1: each line must be a JSON object",
            f"{events}:5:1: an event needs a userId or an anonymousId"]
    result = run("simulate", str(folder), "--events", str(events))
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        *told, f"journeyman simulate: 4 line(s) of {events} not simulated (exit 1)"]
    assert "hello/welcome: email welcome" in result.stdout
    assert "hello/tips: email tips" in result.stdout
    result = run("simulate", str(folder), "--events", str(events), "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert [m["step"] for m in document["messages"]] == ["welcome", "tips"]
    assert (document["unreadable"], document["unreadable_lines"]) == (3, told[:3])
    assert (document["rejected"], document["rejected_lines"]) == (1, told[3:])
