"""`journeyman replay`: a generated year of events for four kinds of customer, replayed
through the bundled journeys; the `--json` report is compared with counts worked out
here from what each kind of customer does and what the journeys say (not from the
engine). Also: --from/--to, --db (a store's events table, read only), bad input."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.runtime.events import normalize
from engine.store import SqlStore

runner = CliRunner()
YEAR = datetime(2026, 1, 1, 10, tzinfo=UTC)  # 10:00 UTC: daytime in Madrid all year
CUSTOMERS = 96
KINDS = ("lead", "buyer", "detractor", "browser")


def kind_of(i: int) -> str:
    return KINDS[i % 4]


def year_of_events() -> list[dict[str, Any]]:
    """Customer i arrives on day i*365/N of 2026, at 10:00 UTC, and is one of:

    - lead: newsletter sign-up, e-mail consent, never buys;
    - buyer: registered-buyer sign-up, orders two days later;
    - detractor: no e-mail consent, an NPS score of 3;
    - browser: in Tokyo, views a product (the reminder falls in Tokyo's night).
    """
    events: list[dict[str, Any]] = []
    for i in reversed(range(CUSTOMERS)):  # the replay sorts by timestamp, not file order
        user, kind = f"c{i:03d}", kind_of(i)
        at = YEAR + timedelta(days=i * 365 // CUSTOMERS)

        def add(body: dict[str, Any], after: timedelta = timedelta(), user: str = user,
                at: datetime = at) -> None:
            events.append({**body, "userId": user, "timestamp": (at + after).isoformat()})

        traits = {"email": f"{user}@example.com", "first_name": user,
                  "timezone": "Asia/Tokyo" if kind == "browser" else "Europe/Madrid",
                  "consent": {"email": kind != "detractor"}}
        add({"type": "identify", "traits": traits})
        if kind == "lead":
            add({"type": "track", "event": "Signed Up", "properties": {"source": "newsletter"}})
        elif kind == "buyer":
            add({"type": "track", "event": "Signed Up", "properties": {"source": "registered_buyer"}})
            add({"type": "track", "event": "Order Completed", "properties": {"revenue": 80}},
                timedelta(days=2))
        elif kind == "detractor":
            add({"type": "track", "event": "NPS Submitted", "properties": {"score": 3}})
        else:
            add({"type": "track", "event": "Product Viewed", "properties": {"name": "Shell"}})
    return events


def variant(user: str) -> str:
    """first_purchase's split, by its documented rule: sha256 of profile, journey and
    step; the first 8 bytes modulo 1,000,000 / 10,000 is a point in [0, 100); under 10
    is the holdout, the rest splits 50/50."""
    digest = hashlib.sha256(f"{user}\x1ffirst_purchase\x1fsubject_test".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % 1_000_000 / 10_000
    if point < 10:
        return "holdout"
    return "benefits" if (point - 10) / 90 * 100 < 50 else "social_proof"


def steps(journey: str, **counts: tuple[int, int, int, int]) -> dict[str, dict[str, int]]:
    """Every step of `journey` (zeros unless given): (entered, sent, skipped, deferred)."""
    ids = {
        "welcome": ["by_source", "welcome_newsletter", "welcome_buyer", "welcome_guest",
                    "welcome_site", "settle", "preferences", "mark"],
        "first_purchase": ["first_look", "subject_test", "uvp_benefits", "uvp_social",
                           "nudge_wait", "morning", "push"],
        "post_purchase": ["delivered", "how_to", "browse_time", "complements", "survey_time",
                          "survey"],
        "win_back": ["loss_window", "we_miss_you", "think_it_over", "offer", "last_chance",
                     "survey"],
        "nps_detractors": ["apology", "open_ticket", "resolved", "thanks", "escalate", "done"],
        "browse_retargeting": ["cool_off", "still_interested"],
    }[journey]
    out = {}
    for sid in ids:
        entered, sent, skipped, deferred = counts.get(sid, (0, 0, 0, 0))
        out[sid] = {"entered": entered, "sent": sent, "skipped": skipped,
                    "deferred": deferred, "failed": 0}
    return out


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "year.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in year_of_events()))
    return path


def replay_json(*args: str) -> dict[str, Any]:
    done = runner.invoke(app, ["replay", *args, "--json"])
    assert done.exit_code == 0, done.output
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_a_year_replayed_matches_the_counts_worked_out_by_hand(log: Path) -> None:
    report = replay_json(str(log))
    users = [f"c{i:03d}" for i in range(CUSTOMERS)]
    by_kind = {k: [u for i, u in enumerate(users) if kind_of(i) == k] for k in KINDS}
    leads, buyers = len(by_kind["lead"]), len(by_kind["buyer"])
    detractors, browsers = len(by_kind["detractor"]), len(by_kind["browser"])
    split = {v: sum(variant(u) == v for u in by_kind["lead"])
             for v in ("benefits", "social_proof", "holdout")}
    pushed = leads - split["holdout"]

    assert report["events"] == 2 * CUSTOMERS + buyers
    assert report["profiles"] == CUSTOMERS
    assert report["from"] == "2026-01-01T10:00:00Z"
    last = max(datetime.fromisoformat(e["timestamp"]) for e in year_of_events())
    assert report["to"] == last.isoformat().replace("+00:00", "Z") == "2026-12-28T10:00:00Z"
    journeys = report["journeys"]
    # nobody takes these paths
    for jid in ("abandoned_cart", "nurturing", "reactivation", "referral", "referral_reward",
                "special_dates"):
        assert journeys[jid]["enrolled"] == 0, jid

    welcome = journeys["welcome"]
    assert (welcome["enrolled"], welcome["completed"], welcome["exited"]) == (
        leads + buyers, leads + buyers, 0)
    assert welcome["steps"] == steps(
        "welcome", by_source=(leads + buyers, 0, 0, 0),
        welcome_newsletter=(leads, leads, 0, 0), welcome_buyer=(buyers, buyers, 0, 0),
        settle=(leads + buyers, 0, 0, 0), preferences=(leads + buyers, leads + buyers, 0, 0),
        mark=(leads + buyers, 0, 0, 0))

    first = journeys["first_purchase"]
    # buyers leave at first_look when they order (the goal); the holdout leaves at the split
    assert (first["enrolled"], first["completed"], first["exited"], first["goals"]) == (
        leads + buyers, pushed, buyers + split["holdout"], buyers)
    assert first["conversion"] == round(buyers / (leads + buyers), 4)
    assert first["steps"] == steps(
        "first_purchase", first_look=(leads + buyers, 0, 0, 0), subject_test=(leads, 0, 0, 0),
        uvp_benefits=(split["benefits"],) * 2 + (0, 0),
        uvp_social=(split["social_proof"],) * 2 + (0, 0),
        nudge_wait=(pushed, 0, 0, 0), morning=(pushed, 0, 0, 0), push=(pushed, pushed, 0, 0))
    assert first["variants"] == {"subject_test": {
        name: {"entered": n, "goals": 0} for name, n in split.items() if n}}
    # its declared KPIs, as `journeyman stats` computes them (no clicks in a replay)
    assert first["kpis"]["conversion"] == round(buyers / (leads + buyers), 6)
    assert first["kpis"]["ctr"] == 0.0
    assert first["exit_reasons"] == {"completed": pushed, "exit_when:Order Completed": buyers,
                                     **({"holdout": split["holdout"]} if split["holdout"] else {})}

    for jid, series in (("post_purchase", ("how_to", "complements", "survey")),
                        ("win_back", ("we_miss_you", "offer", "survey"))):
        counts = journeys[jid]
        assert (counts["enrolled"], counts["completed"], counts["goals"]) == (buyers, buyers, 0)
        assert all(counts["steps"][s]["sent"] == buyers for s in series), jid
        assert sum(s["sent"] for s in counts["steps"].values()) == 3 * buyers

    nps = journeys["nps_detractors"]  # no e-mail consent, no SMS consent; the webhook goes
    assert (nps["enrolled"], nps["exited"]) == (detractors, detractors)
    assert nps["steps"] == steps(
        "nps_detractors", apology=(detractors, 0, detractors, 0),
        open_ticket=(detractors, detractors, 0, 0), resolved=(detractors, 0, 0, 0),
        escalate=(detractors, 0, detractors, 0), done=(detractors, 0, 0, 0))
    assert nps["skipped_by_reason"] == {"no_consent": 2 * detractors, "frequency_cap": 0,
                                        "quiet_hours": 0}

    browse = journeys["browse_retargeting"]  # 10:00 UTC + 4h is 23:00 in Tokyo: deferred
    assert (browse["enrolled"], browse["completed"]) == (browsers, browsers)
    assert browse["steps"] == steps(
        "browse_retargeting", cool_off=(browsers, 0, 0, 0),
        still_interested=(browsers, browsers, 0, browsers))
    assert browse["skipped_by_reason"] == {"no_consent": 0, "frequency_cap": 0,
                                           "quiet_hours": browsers}
    assert browse["deferred_by_reason"] == {"quiet_hours": browsers}


def test_from_and_to_choose_the_events_and_how_far_timers_run(log: Path) -> None:
    report = replay_json(str(log), "--from", "2026-07-01T00:00:00Z", "--to", "2026-08-01")
    chosen = [e for e in year_of_events()
              if "2026-07-01" <= e["timestamp"][:10] < "2026-08-01"]
    assert report["events"] == len(chosen)
    assert report["from"] == "2026-07-01T00:00:00Z"
    assert report["to"] == report["ended_at"] == "2026-08-01T00:00:00Z"
    sent_by_then = report["journeys"]["welcome"]["steps"]["welcome_newsletter"]["sent"]
    assert sent_by_then == sum(1 for e in chosen if e.get("properties", {}).get("source")
                               == "newsletter")


def test_the_human_report(log: Path) -> None:
    done = runner.invoke(app, ["replay", str(log), "--to", "2026-02-01"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0].startswith("replayed 20 events of 9 profiles, 2026-01-01T10:00:00Z to "
                               "2026-02-01T00:00:00Z (")
    assert "first_purchase: 5 enrolled, " in done.output
    assert any(line.split()[:5] == ["apology", "2", "0", "2", "0"] for line in lines), lines
    assert any(line.startswith("  split subject_test: ") for line in lines)


def sqlite_store(tmp_path: Path, count: int = 40) -> tuple[Path, str]:
    """A SQLite store (its file and URL) that accepted the first `count` events of the
    year, as the API would have."""
    db = tmp_path / "live.db"
    url = f"sqlite:///{db}"
    store = SqlStore(url, create=True)
    now = datetime(2026, 3, 2, tzinfo=UTC)
    events = [normalize(e, now=now, message_id=f"m{i}") for i, e in enumerate(year_of_events())]
    store.accept_events(events[:count])
    store.close()
    return db, url


def test_replay_a_stores_events_read_only(tmp_path: Path) -> None:
    db, url = sqlite_store(tmp_path)
    before = db.read_bytes()
    report = replay_json("--db", url)
    assert report["events"] == 40
    assert db.read_bytes() == before
    missing = runner.invoke(app, ["replay", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 1
    assert "no SQLite database at" in missing.output
    # a row written by something else: its body not JSON (a traceback from the column's
    # type, as the rows were fetched)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET body = 'not json' WHERE id = 7")
    broken = runner.invoke(app, ["replay", "--db", url])
    assert broken.exit_code == 1, broken.output
    assert "--db: the body of event 7 is not JSON: Expecting value" in broken.output


@pytest.mark.postgres
def test_replay_a_postgres_stores_events(pg_new_database: Callable[[], str]) -> None:
    url = pg_new_database()
    store = SqlStore(url, create=True)
    now = datetime(2026, 3, 2, tzinfo=UTC)
    events = [normalize(e, now=now, message_id=f"m{i}") for i, e in enumerate(year_of_events())]
    store.accept_events(events[:30])
    store.close()
    report = replay_json("--db", url, "--from", "2026-12-20")
    assert report["events"] == len([e for e in events[:30] if e["timestamp"] >= "2026-12-20"])
    assert report["events"] > 0
    assert report["journeys"]["welcome"]["enrolled"] > 0


def test_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "track", "userId": "u", "event": "X", "timestamp": "2026-01-01"}\n'
                   '{"type": "track", "userId": "u", "event": "X"}\n')
    done = runner.invoke(app, ["replay", str(bad)])
    assert done.exit_code == 1
    assert f"{bad}:2:1: every event needs an ISO 8601 'timestamp'" in done.output
    bad.write_text("{nope\n")
    assert f"{bad}:1:2: not JSON" in runner.invoke(app, ["replay", str(bad)]).output
    bad.write_text('{"type": "track", "userId": "u", "event": "X"\n')  # cut short: past its end
    assert f"{bad}:1:46: not JSON: Expecting ',' delimiter" in runner.invoke(
        app, ["replay", str(bad)]).output
    assert runner.invoke(app, ["replay"]).exit_code == 2
    assert runner.invoke(app, ["replay", str(bad), "--db", "sqlite://"]).exit_code == 2
    window = runner.invoke(app, ["replay", str(bad), "--from", "2026-02-01", "--to", "2026-01-01"])
    assert window.exit_code == 2  # the options' values: a usage error
    assert "--to must be after --from" in window.output
    garbage = runner.invoke(app, ["replay", str(bad), "--from", "garbage"])
    assert garbage.exit_code == 2
    assert "--from 'garbage' is not an ISO time" in garbage.output
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"type": "track", "event": "X", "timestamp": "2026-01-01T00:00:00Z"}\n'
                    '{"type": "track", "userId": "u", "event": "X", '
                    '"timestamp": "2026-01-01T00:00:00Z"}\n')
    report = replay_json(str(junk))
    assert report["rejected"] == 1
    assert report["rejected_by_reason"] == {"an event needs a userId or an anonymousId": 1}
    human = runner.invoke(app, ["replay", str(junk)])
    assert human.exit_code == 0, human.output
    # the events refused are not counted as replayed (`events` in --json: every one read)
    assert human.output.startswith("replayed 1 of 2 events of 1 profile, "), human.output
    assert "1 event rejected, as the API would have:" in human.output


def test_the_text_report_says_1_goal_not_1_goals() -> None:
    """A marketer's trial read "1 goals" in the text report (the JSON is unchanged)."""
    from engine.qa.replay_report import JourneyCounts, ReplayReport, format_report

    at = datetime(2026, 3, 2, tzinfo=UTC)
    one = JourneyCounts(enrolled=1, completed=1, goals=1,
                        variants={"ab": {"a": {"entered": 1, "goals": 1},
                                         "b": {"entered": 2, "goals": 2}}})
    lines = list(format_report(ReplayReport(1, 1, at, at, {"j": one},
                                            rejected={"bad": 1})))
    assert lines[0].startswith("replayed 0 of 1 event of 1 profile, ")
    assert "  1 event rejected, as the API would have:" in lines
    assert "j: 1 enrolled, 1 completed, 0 exited, 0 still in, 1 goal (100.0%)" in lines
    assert "  split ab: a 1 entered, 1 goal (100.0%); b 2 entered, 2 goals (100.0%)" in lines
    many = list(format_report(ReplayReport(2, 2, at, at, {"j": JourneyCounts(
        enrolled=3, goals=2)})))
    assert many[0].startswith("replayed 2 events of 2 profiles, ")
    assert "j: 3 enrolled, 0 completed, 0 exited, 0 still in, 2 goals (66.7%)" in many


def test_a_line_longer_than_any_event_is_refused_unread(tmp_path: Path) -> None:
    """A log with a line of hundreds of megabytes was read whole (a 400 MB line took
    1.7 GB, then a MemoryError's traceback); no line longer than MAX_LINE_BYTES is read
    further, and the error names it."""
    from engine.qa.replay import MAX_LINE_BYTES

    event = '{"type": "track", "userId": "u", "event": "X", "timestamp": "2026-01-01"'
    huge = tmp_path / "huge.jsonl"
    huge.write_text(event + "}\n" + event + ', "pad": "' + "a" * MAX_LINE_BYTES + '"}\n')
    done = runner.invoke(app, ["replay", str(huge)])
    assert done.exit_code == 1, done.output
    assert f"{huge}:2:1: a line longer than {MAX_LINE_BYTES} bytes is no event" in done.output
    # as long as the limit, newline apart: read, and replayed
    fits = event + ', "pad": "' + "a" * (MAX_LINE_BYTES - len(event) - 12) + '"}'
    assert len(fits.encode()) == MAX_LINE_BYTES
    huge.write_text(event + "}\n" + fits + "\r\n")
    assert runner.invoke(app, ["replay", str(huge)]).exit_code == 0


def test_a_log_in_utf16_is_not_utf8_and_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    """The stdlib's parser (behind orjson) reads UTF-16 bytes too: a UTF-16 log's first
    line was taken, and the error pointed at a byte of line 2 (a one-line log was
    refused for a 'missing timestamp'). A UTF-8 byte order mark (PowerShell's) is no
    event's."""
    lines = "".join(json.dumps({"type": "identify", "userId": f"u{i}", "timestamp":
                                "2026-01-01T10:00:00Z", "traits": {"name": "José Ñúñez"}})
                    + "\n" for i in range(2))
    log = tmp_path / "export.jsonl"
    log.write_bytes(lines.encode("utf-16"))
    done = runner.invoke(app, ["replay", str(log)])
    assert done.exit_code == 1, done.output
    assert f"{log}:1:1: not UTF-8 text (byte 0xff at offset 0)" in done.output
    log.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    assert replay_json(str(log))["rejected"] == 0


def test_events_the_api_refuses_are_rejected_not_replayed(tmp_path: Path) -> None:
    """A QA trial's hostile log: `NaN`, `1e999` (an infinity), a NUL in a string and a
    timestamp in the year 9999 were replayed (the API answers 400 for each: a cart of
    `Infinity` entered the journey), and the year 9999 ended in an OverflowError's
    traceback. Each is counted in `rejected`, with the API's own reason."""
    at = '"timestamp": "2026-03-02T10:00:00Z"'
    cart = '"type": "track", "event": "Checkout Started"'
    log = tmp_path / "hostile.jsonl"
    log.write_text(
        f'{{{cart}, "userId": "ok", {at}, "properties": {{"cart_value": 10}}}}\n'
        f'{{{cart}, "userId": "nan", {at}, "properties": {{"cart_value": NaN}}}}\n'
        f'{{{cart}, "userId": "inf", {at}, "properties": {{"cart_value": 1e999}}}}\n'
        f'{{{cart}, "userId": "nul", {at}, "properties": {{"cart_value": 5, "x": "a\\u0000"}}}}\n'
        f'{{{cart}, "userId": "far", "timestamp": "9999-12-31T23:59:59Z", '
        '"properties": {"cart_value": 10}}\n')
    report = replay_json(str(log))
    assert report["rejected"] == 4, report["rejected_by_reason"]
    assert report["rejected_by_reason"] == {
        "numbers must be finite (no NaN or Infinity)": 2,
        "strings may not contain the NUL character (\\u0000)": 1,
        "timestamp '9999-12-31T23:59:59Z' is out of range: the year must be between "
        "1900 and 2999": 1}
    assert report["profiles"] == 1
    assert report["journeys"]["abandoned_cart"]["enrolled"] == 1
    # the span is the events taken: the refused year 9999 made `to` 9999
    assert (report["from"], report["to"]) == ("2026-03-02T10:00:00Z", "2026-03-02T10:00:00Z")


def test_an_exit_completed_step_counts_as_completed_as_stats_counts_it(tmp_path: Path) -> None:
    """abandoned_cart ends at `done: exit: completed`: its replay said "0 completed, 202
    exited" beside `exit_reasons: {"completed": 152}`, where `journeyman stats` (and
    docs/engagement.md) count those enrollments as completed."""
    at = "2026-03-02T10:00:00Z"
    events = [{"type": "identify", "userId": u, "timestamp": at,
               "traits": {"email": f"{u}@example.com", "consent": {"email": True}}}
              for u in ("ana", "ben")]
    events += [{"type": "track", "userId": u, "event": "Checkout Started", "timestamp": at,
                "properties": {"cart_value": 20}} for u in ("ana", "ben")]
    events.append({"type": "track", "userId": "ben", "event": "Order Completed",
                   "timestamp": "2026-03-02T10:30:00Z", "properties": {"revenue": 20}})
    log = tmp_path / "carts.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    cart = replay_json(str(log))["journeys"]["abandoned_cart"]
    assert cart["exit_reasons"] == {"completed": 1, "exit_when:Order Completed": 1}
    assert (cart["enrolled"], cart["completed"], cart["exited"], cart["active"]) == (2, 1, 1, 0)


def test_every_unreadable_line_is_told_and_the_rest_replayed(tmp_path: Path) -> None:
    """A QA trial: a year's export with one bad line replayed nothing; the replay
    stopped at the first unreadable line and said nothing of the others. Each one is
    told on stderr (`file:line:column: why`), the readable lines are replayed and
    reported, and the exit is 1 so that CI sees the log is damaged (with --json too, the
    lines in the document's `unreadable_lines`)."""
    from engine.qa.replay import MAX_LINE_BYTES

    def event(user: str, hour: int) -> str:
        return json.dumps({"type": "identify", "userId": user,
                           "timestamp": f"2026-01-01T{hour:02d}:00:00Z",
                           "traits": {"email": f"{user}@example.com"}})

    lines = [event("u1", 10).encode(), b"{nope", event("u2", 11).encode(), b"[1, 2]",
             b'{"type": "track", "userId": "u9", "event": "X"}',
             b'{"userId": "u9", "pad": "' + b"a" * MAX_LINE_BYTES + b'"}',
             event("u3", 12).encode(), b'{"userId": "caf\xe9"}', b"[" * 70 + b"]" * 70,
             b"", event("u4", 13).encode()]
    log = tmp_path / "damaged.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    told = [f"{log}:2:2: not JSON: Expecting property name enclosed in double quotes",
            f"{log}:4:1: each line must be a JSON object",
            f"{log}:5:1: every event needs an ISO 8601 'timestamp' to be replayed",
            f"{log}:6:1: a line longer than {MAX_LINE_BYTES} bytes is no event",
            f"{log}:8:16: not UTF-8 text",
            f"{log}:9:65: nested too deeply (at most 64 levels)"]
    done = runner.invoke(app, ["replay", str(log), "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert (report["events"], report["profiles"]) == (4, 4)  # u1..u4, after every bad line
    assert report["unreadable"] == 6
    assert len(report["unreadable_lines"]) == 6
    for got, want in zip(report["unreadable_lines"], told, strict=True):
        assert got.startswith(want), (got, want)
    stderr = done.stderr.splitlines()
    for got, want in zip(stderr, told, strict=False):
        assert got.startswith(want), (got, want)
    assert stderr[-1] == f"journeyman replay: 6 unreadable line(s) of {log} not replayed (exit 1)"
    assert len(stderr) == 7
    human = runner.invoke(app, ["replay", str(log)])
    assert human.exit_code == 1
    assert human.stdout.startswith("replayed 4 events of 4 profiles, ")
    assert "  6 unreadable, not replayed (each on stderr, with why)" in human.stdout
    # a clean log: nothing unreadable, exit 0, the new fields there and zero
    log.write_text(event("u1", 10) + "\n")
    clean = replay_json(str(log))
    assert (clean["unreadable"], clean["unreadable_lines"]) == (0, [])


def test_a_log_of_garbage_is_told_up_to_a_limit_and_counted(tmp_path: Path) -> None:
    """Thousands of bad lines: the first UNREADABLE_TOLD are told one by one, the rest
    counted; only bad lines is the error of a log with no events, saying how many."""
    from engine.qa.replay import UNREADABLE_TOLD

    log = tmp_path / "garbage.jsonl"
    bad = UNREADABLE_TOLD + 5
    log.write_text("x\n" * bad + '{"userId": "u1", "type": "identify", '
                   '"timestamp": "2026-01-01T10:00:00Z"}\n')
    done = runner.invoke(app, ["replay", str(log), "--json"])
    assert done.exit_code == 1
    report = json.loads(done.stdout)
    assert report["events"] == 1
    assert report["unreadable"] == bad
    assert len(report["unreadable_lines"]) == UNREADABLE_TOLD
    stderr = done.stderr.splitlines()
    assert stderr[0] == f"{log}:1:1: not JSON: Expecting value"
    assert stderr[UNREADABLE_TOLD - 1] == f"{log}:{UNREADABLE_TOLD}:1: not JSON: Expecting value"
    assert stderr[UNREADABLE_TOLD] == "... and 5 more, not told one by one"
    log.write_text("x\n" * 3)
    nothing = runner.invoke(app, ["replay", str(log)])
    assert nothing.exit_code == 1
    assert nothing.stdout == ""
    assert nothing.stderr.splitlines()[-1] == f"no events to replay in {log} (3 unreadable)"


def test_a_stores_unreadable_rows_are_told_and_the_rest_replayed(tmp_path: Path) -> None:
    """--db: a row whose body is not JSON stopped the replay; it is told, the other rows
    are replayed, exit 1."""
    db, url = sqlite_store(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET body = 'not json' WHERE id IN (7, 9)")
    done = runner.invoke(app, ["replay", "--db", url, "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert (report["events"], report["unreadable"]) == (38, 2)
    assert done.stderr.splitlines()[:2] == [
        "--db: the body of event 7 is not JSON: Expecting value",
        "--db: the body of event 9 is not JSON: Expecting value"]
    assert "2 unreadable event row(s) of sqlite:///" in done.stderr


def test_a_stores_rows_without_a_timestamp_are_replayed_at_their_receipt_not_dropped(
        tmp_path: Path) -> None:
    """--db dropped, without a word, a row whose body had no timestamp (the API always
    writes one; a row imported or edited by hand may not), or whose body was JSON but
    no object. A row without one is replayed at the time the store received it (what
    the API does with an event sent without one), and counted; a body that is no
    object, or a timestamp that is not ISO 8601, is unreadable: told, exit 1."""
    db, url = sqlite_store(tmp_path)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET body = json_remove(body, '$.timestamp'), "
                     "received_at = '2026-05-05 10:00:00.000000' WHERE id = 5")
        conn.execute("UPDATE events SET body = '[1]' WHERE id = 7")
        conn.execute("UPDATE events SET body = json_set(body, '$.timestamp', 'yesterday') "
                     "WHERE id = 9")
    done = runner.invoke(app, ["replay", "--db", url, "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert (report["events"], report["unreadable"], report["received_at_used"]) == (38, 2, 1)
    assert report["unreadable_lines"] == [
        "--db: the body of event 7 is not a JSON object (an event)",
        "--db: event 9 has no ISO 8601 'timestamp' ('yesterday')"]
    assert "--db: 1 event row(s) without a timestamp replayed at the time the store " \
           "received them (event 5 at 2026-05-05T10:00:00Z)" in done.stderr
    assert "2 unreadable event row(s) of sqlite:///" in done.stderr
    text = runner.invoke(app, ["replay", "--db", url])
    assert "1 event row(s) without a timestamp replayed at the time the store received " \
           "them" in text.stdout


def test_the_text_report_writes_kpis_as_plain_numbers_and_tells_skips_from_deferrals() -> None:
    """A QA trial diffing two replays read `attributable_revenue 2.119e+04` against
    `2.125e+04`, and `held back: no_consent 79, quiet_hours 235` lumped sends never made
    with sends quiet hours only delayed (and that were delivered)."""
    from engine.qa.replay_report import JourneyCounts, ReplayReport, format_report

    at = datetime(2026, 3, 2, tzinfo=UTC)
    counts = JourneyCounts(
        enrolled=425, goals=210,
        kpis={"conversion": 0.494118, "attributable_revenue": 21193.5, "big": 1234567.0,
              "tiny": 0.00004, "ctr": None, "sends": 3},
        skipped_by_reason=Counter({"no_consent": 79, "enrollment_exited": 46,
                                   "quiet_hours": 235}),
        deferred_by_reason=Counter({"quiet_hours": 235}))
    lines = list(format_report(ReplayReport(1, 1, at, at, {"cart": counts})))
    kpis = next(line for line in lines if line.startswith("  KPIs: "))
    assert "e+" not in kpis, kpis
    assert "e-" not in kpis, kpis
    assert kpis == ("  KPIs: conversion 0.4941, attributable_revenue 21,193.5, "
                    "big 1,234,567, tiny 0.00004, ctr -, sends 3"), kpis
    assert "  not sent: enrollment_exited 46, no_consent 79" in lines, lines
    assert "  deferred (sent later): quiet_hours 235" in lines, lines
    assert not any("held back" in line for line in lines), lines
