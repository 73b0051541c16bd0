"""`journeyman why` against qa-contract.md section 4, where a QA run found it off:
records oldest first and one `resumed` per wait when timers fire late on a clock that
moves between two reads (a real clock), only the contract's kinds, and `step` null
instead of the engine's placeholders (`__exited__`, `__completed__`, `__cron__`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from engine.cli import app
from engine.runtime.events import normalize
from engine.runtime.unsubscribe import SigningSecret
from engine.runtime.why import KINDS, Why
from engine.service import Service
from engine.testing import TEST_SECRET, FakeClock, InMemoryEngine, RecordingChannel
from tests.engine.helpers import stub_email, write_folder

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
runner = CliRunner()
PLACEHOLDERS = ("__start__", "__completed__", "__exited__", "__cron__")

NAPS = """\
journey: naps
version: 1
entry: {event: Signed Up}
goal: {event: Order Completed}
exit_when:
  - event: Cancelled
steps:
  - id: pause
    wait: 1h
  - id: nudge
    send: {channel: email, template: nudge}
  - id: rest
    wait: 1h
  - id: bye
    send: {channel: email, template: bye}
"""


class TickingClock(FakeClock):
    """A fake clock that moves a little on every read, as a real one does: two reads in
    one piece of work are never the same instant."""

    def now(self) -> datetime:
        at = super().now()
        self.set(at + timedelta(milliseconds=3))
        return at


def naps_folder(root: Path) -> Path:
    return write_folder(root, {"naps": NAPS}, {t: stub_email(t) for t in ("nudge", "bye")})


def check_contract(records: list[dict[str, Any]]) -> None:
    """Oldest first, the contract's kinds, no placeholder as a step."""
    ats = [datetime.fromisoformat(r["at"]) for r in records]
    assert ats == sorted(ats), [(r["at"], r["kind"]) for r in records]
    assert {r["kind"] for r in records} <= set(KINDS)
    assert not [r for r in records if str(r["step"]).startswith("__")]


def test_late_timers_on_a_moving_clock_are_told_once_each_oldest_first(
        tmp_path: Path) -> None:
    """The service was down for hours twice: each wait's timer fires late. On a clock
    that moves between the timer's lateness record and the resume (a real clock), each
    wait is one `resumed` in its place (it was a second one, appended after the goal);
    a goal reached after the journey completed has step null (was `__completed__`)."""
    clock = TickingClock(T0)
    db = f"sqlite:///{tmp_path / 'why.db'}"
    service = Service(naps_folder(tmp_path / "j"), db, clock=clock,
                      channels={"email": RecordingChannel("email")},
                      secrets=[SigningSecret(TEST_SECRET)])
    n = 0

    def post(raw: dict[str, Any]) -> None:
        nonlocal n
        n += 1
        now = clock.now()
        service.store.accept_events([normalize({"timestamp": now.isoformat(), **raw},
                                               now=now, message_id=f"m{n}")], "server")
        while service.worker.handle_events():
            pass
        service.dispatcher.dispatch_due()

    def outage(hours: int) -> None:
        clock.set(clock.now() + timedelta(hours=hours))  # nothing fired meanwhile
        assert service.worker.fire_timers() == 1
        service.dispatcher.dispatch_due()

    try:
        post({"type": "identify", "userId": "ana", "traits": {"email": "ana@example.com"}})
        post({"type": "track", "userId": "ana", "event": "Signed Up"})
        outage(3)
        outage(3)
        post({"type": "track", "userId": "ana", "event": "Order Completed"})
        log = service.store.recorded_decisions("ana")
        late = [d.at for d in log if d.what == "fired_late"]  # kept, for operators
        assert len(late) == 2
        assert late == [d.at for d in log if d.what == "resumed"]  # one instant each
    finally:
        service.stop()
    done = runner.invoke(app, ["why", "ana", "--db", db, "--json"])
    assert done.exit_code == 0, done.output
    records = json.loads(done.stdout)
    check_contract(records)
    assert [(r["kind"], r["step"]) for r in records] == [
        ("entered", "pause"), ("waiting", "pause"), ("resumed", "pause"), ("waiting", "rest"),
        ("sent", "nudge"), ("resumed", "rest"), ("exited", "bye"), ("sent", "bye"),
        ("goal", None)]
    for resumed in (r for r in records if r["kind"] == "resumed"):
        assert resumed["reason"] == "wait over (the timer fired 2:00:00 late)"
        assert resumed["details"]["late"] is True
        assert 7200 <= resumed["details"]["late_seconds"] < 7201
    text = runner.invoke(app, ["why", "ana", "--db", db]).output
    assert text.count("resumed") == 2
    assert text.rstrip().splitlines()[-1].split()[2:4] == ["goal", "goal:"]  # last, no step


class Decisions:
    """A DecisionSource of fixed records: the decision log as older runtimes wrote it."""

    def __init__(self, decisions: list[Any]) -> None:
        self.decisions = decisions

    def profile_for(self, kind: str, value: str) -> str | None:
        return None

    def get_profile(self, profile_id: str) -> Any:
        return None

    def identities_of(self, profile_id: str) -> list[tuple[str, str]]:
        return []

    def recorded_decisions(self, profile_id: str | None = None) -> list[Any]:
        return list(self.decisions)


def test_a_late_timer_recorded_apart_from_its_resume_is_folded_by_step() -> None:
    """Records written before the runtime stamped both with one instant: the lateness
    and the resume 4 ms apart, and within one second (ISO strings with and without a
    fraction do not sort as instants). One resume each, in time order; a lateness is
    not pinned on a resume or a schedule's entry that came long after it."""
    from engine.ports import Decision
    from engine.runtime.why import why

    t = datetime(2026, 3, 2, 11, 2, 19, tzinfo=UTC)
    late = {"due_at": "2026-03-02T10:59:59Z", "late_seconds": 140.0}
    log = [
        Decision(t - timedelta(hours=2), "ana", "naps", "pause", "waiting", "until x", {}),
        Decision(t, "ana", "naps", "pause", "fired_late", "timer_overdue", late),
        Decision(t + timedelta(milliseconds=4), "ana", "naps", "pause", "resumed",
                 "wait over", {}),
        Decision(t + timedelta(milliseconds=4), "ana", "naps", "rest", "waiting", "until y",
                 {}),
        Decision(t + timedelta(milliseconds=900), "ana", "naps", "nudge", "sent",
                 "email: nudge", {}),
        Decision(t + timedelta(hours=3), "ana", "naps", "rest", "fired_late",
                 "timer_overdue", late),  # its resume never came (no version deployed)
        Decision(t + timedelta(hours=3), "ana", "naps", "rest", "skipped",
                 "version_not_deployed", {}),
        # a later enrollment's wait at the same step, on time: not that late timer's
        Decision(t + timedelta(hours=4), "ana", "naps", "pause", "fired_late",
                 "timer_overdue", late),
        Decision(t + timedelta(days=1), "ana", "naps", "pause", "resumed", "wait over", {}),
        # a schedule that fired late and entered no one; the next day's entry was on time
        Decision(t + timedelta(days=2), "ana", "daily", "__cron__", "fired_late",
                 "timer_overdue", late),
        Decision(t + timedelta(days=3), "ana", "daily", "hello", "entered", "schedule", {}),
    ]
    told = why(Decisions(log), "ana")
    assert told is not None
    assert [(w.kind, w.step, w.reason) for w in told] == [
        ("waiting", "pause", "until x"),
        ("resumed", "pause", "wait over (the timer fired 0:02:20 late)"),
        ("waiting", "rest", "until y"),
        ("sent", "nudge", "email: nudge"),
        ("resumed", "rest", "timer_overdue: the timer fired 0:02:20 late"),
        ("skipped", "rest", "version_not_deployed"),
        ("resumed", "pause", "timer_overdue: the timer fired 0:02:20 late"),
        ("resumed", "pause", "wait over"),
        ("entered", "hello", "schedule")]
    assert told[1].at == "2026-03-02T11:02:19.004000Z"
    check_contract([w.as_json() for w in told])


def test_why_tells_only_the_contracts_kinds(tmp_path: Path) -> None:
    """A consent change through the API and a refused merge are records of no journey
    (`consent`, `not_merged`): not decisions about a journey, and not kinds of the
    contract. `why` leaves them out (CLI text and JSON); `profiles export` and
    `journeyman decisions` still have them."""
    clock = FakeClock(T0)
    db = f"sqlite:///{tmp_path / 'why.db'}"
    service = Service(naps_folder(tmp_path / "j"), db, clock=clock,
                      channels={"email": RecordingChannel("email")},
                      secrets=[SigningSecret(TEST_SECRET)])
    events = [
        {"type": "identify", "userId": "alice", "anonymousId": "laptop",
         "traits": {"email": "alice@example.com", "consent": {"email": True}}},
        {"type": "track", "userId": "alice", "event": "Signed Up"},
        {"type": "identify", "userId": "bob", "anonymousId": "laptop"},  # kept apart
    ]
    try:
        for n, raw in enumerate(events):
            event = normalize({"timestamp": T0.isoformat(), **raw}, now=T0, message_id=f"m{n}")
            event["source"] = "server"  # as the API marks what a key sent (ingest.py)
            service.store.accept_events([event], "server")
            while service.worker.handle_events():
                pass
        kept = {d.what for d in service.store.recorded_decisions("alice")}
        assert {"consent", "not_merged"} <= kept
    finally:
        service.stop()
    records = json.loads(runner.invoke(app, ["why", "alice", "--db", db, "--json"]).stdout)
    check_contract(records)
    assert [r["kind"] for r in records] == ["entered", "waiting"]
    text = runner.invoke(app, ["why", "alice", "--db", db]).output
    assert text.splitlines()[0] == "alice: 2 decision(s) in 1 journey(s), oldest first, times in UTC"
    assert "consent" not in text
    assert "not merged" not in text
    bob = runner.invoke(app, ["why", "bob", "--db", db, "--json"])
    assert (bob.exit_code, json.loads(bob.stdout)) == (0, [])  # known, nothing decided
    export = json.loads(runner.invoke(app, ["profiles", "export", "alice", "--db", db]).stdout)
    assert {"consent", "not_merged"} <= {d["what"] for d in export["decisions"]}
    log = json.loads(runner.invoke(app, ["decisions", "--profile", "alice", "--db", db,
                                         "--json"]).stdout)
    assert {"consent", "not_merged"} <= set(log["totals"])


def test_no_placeholder_step_in_the_testing_kits_why(tmp_path: Path) -> None:
    """A goal after an exit (the enrollment is at `__exited__`) and a schedule's timer
    that fired late (`__cron__`): `step` is None, and a late schedule is told on the
    entry it made, not as a `resumed` of no wait."""
    cron = write_folder(tmp_path / "c", {"daily": """\
        journey: daily
        version: 1
        entry: {schedule: "0 9 * * *"}
        re_entry: {after: 1d}
        steps:
          - id: hello
            send: {channel: email, template: hello}
        """}, {"hello": stub_email("hello")})
    eng = InMemoryEngine.from_folder(cron, start=T0 - timedelta(hours=1))
    eng.identify("cy", {"email": "cy@example.com"})
    eng.clock.advance(timedelta(hours=3))  # down over 09:00
    assert eng.worker.fire_timers() == 1
    told: list[Why] = eng.why("cy")
    check_contract([w.as_json() for w in told])
    assert [(w.kind, w.step) for w in told] == [("entered", "hello"), ("exited", "hello")]
    assert told[0].reason == "schedule (the timer fired 2:00:00 late)"
    assert told[0].details["late"] is True

    eng = InMemoryEngine.from_folder(naps_folder(tmp_path / "n"), start=T0)
    eng.identify("dee", {"email": "dee@example.com"})
    eng.track("dee", "Signed Up")
    eng.track("dee", "Cancelled")
    eng.track("dee", "Order Completed")
    told = eng.why("dee")
    check_contract([w.as_json() for w in told])
    assert [(w.kind, w.step) for w in told][-2:] == [("exited", "pause"), ("goal", None)]
    goal = [d for d in eng.decisions if d.what == "goal"]
    assert [d.step for d in goal] == ["__exited__"]  # the log keeps the engine's state


def test_reading_a_sqlite_file_that_is_not_there_says_so_and_creates_nothing(
        tmp_path: Path) -> None:
    """A QA trial: `why p0 --db sqlite:///typo.db` said "no profile 'p0'" (as if the
    person were unknown) and left a new, empty database at the typo; `outbox` showed an
    empty outbox. The commands that read or change what a store holds say the file is
    not there, and create nothing."""
    typo = tmp_path / "typo.db"
    url = f"sqlite:///{typo}"
    for args in (["why", "p0"], ["decisions"], ["profiles", "export", "p0"],
                 ["profiles", "forget", "p0"], ["outbox"], ["stats"], ["failures"],
                 ["failures", "retry", "1"], ["failures", "discard", "1"],
                 ["keys", "list"], ["keys", "revoke", "k1"], ["suppressions", "list"],
                 ["suppressions", "remove", "a@example.com"], ["users", "list"]):
        done = runner.invoke(app, [*args, "--db", url])
        assert done.exit_code == 1, (args, done.output)
        assert f"no SQLite database at {typo} (--db or $JOURNEYMAN_DB)" in done.output, args
        assert not typo.exists(), args
