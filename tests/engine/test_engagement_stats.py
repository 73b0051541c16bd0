"""`journeyman stats --json` for a scripted run with two split variants equals counts the
test keeps itself: every message is followed through the real HTTP routes (`/c/` for
clicks, `/u/` for opt-outs), on a SqlStore, on the fake clock.

The script: 40 people enter; the split sends each `promo_a` or `promo_b`; an hour later
every third clicks (and a link scanner prefetches every fifth message: filtered, counted
apart); every seventh unsubscribes through the message's link; a day later the `nudge`
goes to those still consenting; some buy before the nudge (attributed to the promo),
some after (attributed to the nudge), some after the goal's 7-day window (not counted).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from typer.testing import CliRunner

from engine.api import create_app
from engine.cli import app as cli
from engine.runtime.tracking import TrackingLinks
from engine.store import SqlStore
from engine.testing import InMemoryEngine
from tests.api.test_api import free_port
from tests.engine.helpers import write_folder

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PROMO = """
journey: promo
version: 1
entry: {event: Shown Interest}
goal: {event: Order Completed, within: 7d, value: event.properties.revenue}
kpis:
  - sends
  - ctr
  - conversion
  - attributable_revenue
  - opt_out_rate
  - {name: drop_offs_per_buyer, ratio: [drop_offs, conversions]}
steps:
  - id: ab
    split:
      variants:
        - {name: a, weight: 50, goto: promo_a}
        - {name: b, weight: 50, goto: promo_b}
  - id: promo_a
    send: {channel: email, template: promo_a}
    next: pause
  - id: promo_b
    send: {channel: email, template: promo_b}
  - id: pause
    wait: 1d
  - id: nudge
    send: {channel: email, template: nudge}
"""
TEMPLATE = ("channel: email\nsubject: {subject}\nhtml: '<p><a href=\"https://shop.example/{page}\">"
            "Shop</a> <a href=\"{{{{ unsubscribe_url }}}}\">Unsubscribe</a></p>'\n")
POLICY = "timezone: UTC\nconsent_required: [email]\n"
PEOPLE = [f"p{i:02d}" for i in range(40)]
CLICK = re.compile(r'href="https://jm\.example/c/([^"]+)"')


def revenue(i: int) -> float:
    return 10.0 + i


def test_stats_json_equals_the_counts_kept_by_the_test(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"promo": PROMO}, {
        "promo_a": TEMPLATE.format(subject="A", page="a"),
        "promo_b": TEMPLATE.format(subject="B", page="b"),
        "nudge": TEMPLATE.format(subject="N", page="n")}, policy=POLICY)
    db = f"sqlite:///{tmp_path / 'stats.db'}"
    store = SqlStore(db, create=True)
    eng = InMemoryEngine.from_folder(folder, start=START)
    eng.use_store(store)
    links = TrackingLinks(eng.unsubscribe.secrets, "https://jm.example")
    eng.runner.tracking = links
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(store, eng.clock.now, new_id=eng.ids.new_id, unsubscribe=eng.unsubscribe,
                   tracking=links), host="127.0.0.1", port=port, log_level="warning",
        lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as web:
            run_script(eng, web, folder, db)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()


def run_script(eng: InMemoryEngine, web: httpx.Client, folder: Path, db: str) -> None:
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    earned: dict[str, float] = defaultdict(float)  # attributable revenue by variant
    revenue_by_step: dict[str, float] = defaultdict(float)

    for pid in PEOPLE:
        eng.identify(pid, {"email": f"{pid}@example.com", "consent": {"email": True}})
        eng.track(pid, "Shown Interest")
    promos = {m.profile_id: m for m in eng.channel.messages}
    variant = {pid: promos[pid].rendered.template[-1] for pid in PEOPLE}
    assert set(variant.values()) == {"a", "b"}
    for pid in PEOPLE:
        expected[variant[pid]]["entered"] += 1
        expected[variant[pid]]["sends"] += 2  # the promo and the nudge are both queued
        expected[variant[pid]]["delivered"] += 1

    eng.advance("1h")
    unsubscribed = set()
    for i, pid in enumerate(PEOPLE):
        message = promos[pid]
        [token] = CLICK.findall(message.rendered.html or "")
        if i % 5 == 0:  # a security gateway prefetches the link: filtered
            assert web.get(f"/c/{token}", headers={"User-Agent": "Mimecast scanner"}).status_code == 302
            expected[variant[pid]]["scanner_clicks"] += 1
        if i % 3 == 0:
            for _ in range(1 + i % 2):  # some click twice: one clicked message
                answer = web.get(f"/c/{token}", headers={"User-Agent": "Mozilla/5.0"})
                assert answer.headers["location"] == f"https://shop.example/{variant[pid]}"
                expected[variant[pid]]["clicks"] += 1
            expected[variant[pid]]["clicked"] += 1
        if i % 7 == 0:
            link = message.rendered.headers["List-Unsubscribe"].strip("<>")
            assert web.post(link.removeprefix(eng.unsubscribe.base_url)).status_code == 200
            unsubscribed.add(pid)
            expected[variant[pid]]["opt_outs"] += 1
    eng.advance("1h")  # the unsubscribes and clicks are handled in order

    for i, pid in enumerate(PEOPLE):
        if i % 4 == 0:  # buys before the nudge: the promo gets it
            eng.track(pid, "Order Completed", {"revenue": revenue(i)})
            expected[variant[pid]]["conversions"] += 1
            earned[variant[pid]] += revenue(i)
            revenue_by_step[f"promo_{variant[pid]}"] += revenue(i)
    eng.advance("1d")  # the nudge, to those still consenting
    for pid in PEOPLE:
        if pid not in unsubscribed:
            expected[variant[pid]]["delivered"] += 1
    for i, pid in enumerate(PEOPLE):
        if i % 4 == 1:  # buys after the nudge, within the 7 days
            eng.track(pid, "Order Completed", {"revenue": revenue(i)})
            expected[variant[pid]]["conversions"] += 1
            # no nudge for those who unsubscribed: the promo was their last message
            step = "nudge" if pid not in unsubscribed else f"promo_{variant[pid]}"
            earned[variant[pid]] += revenue(i)
            revenue_by_step[step] += revenue(i)
    eng.advance("7d")
    for i, pid in enumerate(PEOPLE):
        if i % 4 == 2:  # after the window: no conversion
            eng.track(pid, "Order Completed", {"revenue": revenue(i)})

    done = CliRunner().invoke(cli, ["stats", "promo", "--journeys", str(folder), "--db", db,
                                    "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)["journeys"]["promo"]
    for name in ("a", "b"):
        got = report["variants"]["ab"][name]
        want = expected[name]
        assert {k: got["counts"][k] for k in (
            "entered", "sends", "delivered", "clicked", "clicks", "scanner_clicks",
            "conversions", "attributable_revenue", "opt_outs")} == {
            "entered": want["entered"], "sends": want["sends"], "delivered": want["delivered"],
            "clicked": want["clicked"], "clicks": want["clicks"],
            "scanner_clicks": want["scanner_clicks"], "conversions": want["conversions"],
            "attributable_revenue": earned[name], "opt_outs": want["opt_outs"],
        }, name
        assert got["rates"]["ctr"] == round(want["clicked"] / want["delivered"], 6)
        assert got["rates"]["conversion"] == round(want["conversions"] / want["entered"], 6)
        assert got["rates"]["opt_out_rate"] == round(want["opt_outs"] / want["delivered"], 6)
    whole: Counter[str] = expected["a"] + expected["b"]
    assert report["counts"]["conversions"] == whole["conversions"]
    assert report["kpis"] == {
        "sends": whole["sends"],
        "ctr": round(whole["clicked"] / whole["delivered"], 6),
        "conversion": round(whole["conversions"] / whole["entered"], 6),
        "attributable_revenue": earned["a"] + earned["b"],
        "opt_out_rate": round(whole["opt_outs"] / whole["delivered"], 6),
        "drop_offs_per_buyer": round((whole["entered"] - whole["conversions"])
                                     / whole["conversions"], 6),
    }
    assert {step: item["counts"]["attributable_revenue"]
            for step, item in report["steps"].items() if item["counts"]["attributable_revenue"]
            } == dict(revenue_by_step)


def test_stats_finds_a_journey_deployed_to_the_store(tmp_path: Path) -> None:
    """Without `--journeys`, `stats` read only the bundled library: a journey deployed to
    the store (`journeyman apply`, `serve` on another folder) was "no journey"."""
    from tests.engine.helpers import stub_email

    journey = ("journey: fast\nversion: 2\nentry:\n  event: Signed Up\nsteps:\n"
               "  - id: hello\n    send: {channel: email, template: hi}\n")
    folder = write_folder(tmp_path / "j", {"fast": journey}, {"hi": stub_email("hi")})
    db = f"sqlite:///{tmp_path / 'deployed.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["migrate", "--db", db]).exit_code == 0  # apply makes none
    applied = runner.invoke(cli, ["apply", "--journeys", str(folder), "--db", db])
    assert applied.exit_code == 0, applied.output
    # a new version: running processes take it when they restart (an operator's trial
    # found a running worker still enrolling on the old one, with no word from apply)
    assert "take the new versions when they restart" in applied.output
    done = runner.invoke(cli, ["stats", "fast", "--db", db, "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)["journeys"]["fast"]
    assert report["version"] == 2
    unknown = runner.invoke(cli, ["stats", "nope", "--db", db])
    assert unknown.exit_code == 1
    assert "no journey 'nope'" in unknown.output
    assert "nor deployed to the store" in unknown.output
    typo = runner.invoke(cli, ["stats", "fats", "--db", db])
    assert typo.exit_code == 1
    assert "(did you mean 'fast'?)" in typo.output
    # every journey: those the store runs, not the bundled library's zeros beside them
    everyone = json.loads(runner.invoke(cli, ["stats", "--db", db, "--json"]).stdout)
    assert list(everyone["journeys"]) == ["fast"]
    bundled = runner.invoke(cli, ["stats", "welcome", "--db", db, "--json"])
    assert bundled.exit_code == 0, bundled.output  # still there when named
    assert json.loads(bundled.stdout)["journeys"]["welcome"]["counts"]["entered"] == 0
    empty = f"sqlite:///{tmp_path / 'empty.db'}"  # nothing deployed: the bundled library
    SqlStore(empty, create=True).close()
    assert "welcome" in json.loads(runner.invoke(cli, ["stats", "--db", empty, "--json"]
                                                 ).stdout)["journeys"]
    # a newest version whose source no longer loads: the one before it, not nothing
    from engine.values import DeployedVersion

    store = SqlStore(db)
    try:
        assert store.deploy_version(DeployedVersion(
            "fast", 3, "broken", "journey: fast\nversion: [", "j/fast.yaml",
            datetime.now(UTC)))
    finally:
        store.close()
    fallen = runner.invoke(cli, ["stats", "fast", "--db", db, "--json"])
    assert fallen.exit_code == 0, fallen.output
    assert json.loads(fallen.stdout)["journeys"]["fast"]["version"] == 2
    # not a terminal (a pipe, a file): the table at its width, not cut to 80 columns
    human = runner.invoke(cli, ["stats", "fast", "--db", db])
    assert human.exit_code == 0, human.output
    assert "attributable_revenue" in human.output
    assert "conversions" in human.output
