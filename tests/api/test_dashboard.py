"""The dashboard over real HTTP: login, sessions, CSRF and roles, the pages' numbers
against direct SQL counts on the same store, CSV downloads, `--dashboard-open`, and
`GET /v1/journeys/{id}/stats`."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import httpx
import pytest

from engine.api.dashboard.auth import SESSION_COOKIE, Sessions, is_loopback
from engine.api.dashboard.routes import _csv
from tests.api.dashboard_world import (
    PASSWORD,
    PEOPLE,
    SECRET,
    World,
    build_world,
    start_server,
)

J = "first_purchase"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("dashboard"))
    yield built
    built.close()


def post_login(client: httpx.Client, data: dict[str, str]) -> httpx.Response:
    """What a browser does: GET the form (its token and cookie), then POST it."""
    form = client.get("/login")
    found = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert found, form.text
    return client.post("/login", data={**data, "login_token": found.group(1)})


def login(world: World, name: str = "ed") -> httpx.Client:
    client = world.client()
    answer = post_login(client, {"name": name, "password": PASSWORD, "next": "/"})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_without_a_session_every_page_sends_to_the_login(world: World) -> None:
    for path in ("/", f"/journeys/{J}", "/profiles?q=user1", "/failures"):
        answer = httpx.get(world.url + path, timeout=10)
        assert answer.status_code == 302, path
        assert answer.headers["location"].startswith("/login?next=")
    assert "Log in" in httpx.get(world.url + "/login", timeout=10).text
    # A forged or expired cookie is no session either.
    forged = httpx.get(world.url + "/", cookies={SESSION_COOKIE: "eyJ1IjoiZWQifQ.bad"},
                       timeout=10)
    assert forged.status_code == 302
    expired = Sessions(SECRET).issue("ed", "editor", world.engine.now.timestamp() - 13 * 3600)
    assert httpx.get(world.url + "/", cookies={SESSION_COOKIE: expired},
                     timeout=10).status_code == 302


def test_login_sets_a_signed_httponly_lax_cookie_and_refuses_wrong_passwords(
        world: World) -> None:
    wrong = post_login(world.client(), {"name": "ed", "password": "nope"})
    assert wrong.status_code == 401
    assert SESSION_COOKIE not in wrong.cookies
    unknown = post_login(world.client(), {"name": "zz", "password": PASSWORD})
    assert unknown.status_code == 401
    answer = post_login(world.client(), {"name": "ed", "password": PASSWORD,
                                         "next": "//evil.example/"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"  # no open redirect
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    assert "secure" not in cookie.lower()  # plain HTTP, and the public URL is not https
    stored = world.store.get_user("ed")
    assert stored is not None
    assert stored.password_hash.startswith("scrypt$")
    assert PASSWORD not in stored.password_hash


def test_the_login_form_carries_a_token_that_must_match_its_cookie(world: World) -> None:
    """CSRF on the login form itself (before there is a session): a double-submit token."""
    client = world.client()
    form = client.get("/login")
    cookie = form.headers["set-cookie"]
    assert "jm_login=" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token
    assert token.group(1) == client.cookies["jm_login"]
    data = {"name": "ed", "password": PASSWORD}
    # a page of another site posts the form: no cookie of ours, or a token it guessed
    assert httpx.post(world.url + "/login", data=data, timeout=10).status_code == 403
    forged = client.post("/login", data={**data, "login_token": "guessed"})
    assert forged.status_code == 403
    assert "log in again" in forged.text
    assert SESSION_COOKIE not in forged.cookies
    fresh = re.search(r'name="login_token" value="([^"]+)"', forged.text)
    assert fresh  # the refusal is a new form, with a new token
    done = client.post("/login", data={**data, "login_token": fresh.group(1)})
    assert done.status_code == 303
    assert SESSION_COOKIE in done.cookies


def test_journey_numbers_equal_direct_sql_counts(world: World) -> None:
    client = login(world, "vi")
    page = client.get(f"/journeys/{J}?days=30")
    assert page.status_code == 200
    admin = world.store.create_key("stats", admin=True)
    stats = httpx.get(f"{world.url}/v1/journeys/{J}/stats?days=30",
                      headers={"Authorization": f"Bearer {admin}"}, timeout=10).json()
    entered = world.sql("SELECT count(*) FROM enrollments WHERE journey = :j", j=J)
    assert entered == PEOPLE
    assert stats["entered"] == entered
    assert stats["converted"] == world.sql(
        "SELECT count(*) FROM enrollments WHERE journey = :j AND goal_reached_at IS NOT NULL",
        j=J) > 0
    steps = {s["id"]: s for s in stats["steps"]}
    for step, s in steps.items():
        assert s["now"] == world.sql("SELECT count(*) FROM enrollments WHERE journey = :j "
                                     "AND status = 'active' AND state = :s", j=J, s=step)
        assert s["passed"] == world.sql(
            "SELECT count(*) FROM enrollments WHERE journey = :j "
            "AND json_extract(visits, '$.' || :s) IS NOT NULL", j=J, s=step)
        assert sum(s["sends"].values()) == world.sql(
            "SELECT count(*) FROM outbox WHERE journey = :j AND step = :s", j=J, s=step)
    assert steps["first_look"]["passed"] == PEOPLE
    split = stats["splits"]["subject_test"]
    total = 0
    for v in split["variants"]:
        people = world.sql("SELECT count(*) FROM enrollments WHERE journey = :j "
                           "AND json_extract(variants, '$.subject_test') = :v", j=J,
                           v=v["variant"])
        assert v["people"] == people > 0
        total += people
        assert v["converted"] == world.sql(
            "SELECT count(*) FROM enrollments WHERE journey = :j AND goal_reached_at IS NOT "
            "NULL AND json_extract(variants, '$.subject_test') = :v", j=J, v=v["variant"])
    assert total == steps["subject_test"]["passed"]
    # The page shows the same numbers: the cards, the step table and the diagram.
    html = page.text
    assert f'id="card-entered">entered<b>{entered}</b>' in html
    assert f"first_look — wait 3d&lt;br/&gt;now {steps['first_look']['now']} · passed " \
           f"{PEOPLE}" in html
    table = client.get(f"/journeys/{J}?days=30&csv=steps")
    assert table.headers["content-type"].startswith("text/csv")
    rows = {r["step"]: r for r in csv.DictReader(io.StringIO(table.text))}
    assert int(rows["first_look"]["passed"]) == PEOPLE
    assert int(rows["subject_test"]["passed"]) == total
    variants = client.get(f"/journeys/{J}?days=30&csv=split_subject_test")
    got = {r["variant"]: int(r["people"]) for r in csv.DictReader(io.StringIO(variants.text))}
    assert got == {v["variant"]: v["people"] for v in split["variants"]}


def test_the_stats_endpoint_needs_an_admin_key_and_checks_its_input(world: World) -> None:
    url = f"{world.url}/v1/journeys/{J}/stats"
    assert httpx.get(url, timeout=10).status_code == 401
    write = world.store.create_key("writer")
    assert httpx.get(url, headers={"Authorization": f"Bearer {write}"},
                     timeout=10).status_code == 403
    admin = world.store.create_key("admin2", admin=True)
    auth = {"Authorization": f"Bearer {admin}"}
    assert httpx.get(url + "?days=0", headers=auth, timeout=10).status_code == 400
    assert httpx.get(url + "?days=x", headers=auth, timeout=10).status_code == 400
    for junk in ("%C2%B2", "%D9%A1", "9" * 5000):  # isdigit() but not int(): were 500
        assert httpx.get(f"{url}?days={junk}", headers=auth, timeout=10).status_code == 400
    assert httpx.get(f"{world.url}/v1/journeys/nope/stats", headers=auth,
                     timeout=10).status_code == 404
    doc = httpx.get(world.url + "/openapi.json", timeout=10).json()
    assert "/v1/journeys/{journey_id}/stats" in doc["paths"]
    assert "/login" not in doc["paths"]


def test_a_bad_period_and_an_unknown_journey_are_dashboard_error_pages(
        world: World) -> None:
    """`?days=abc` silently showed 7 days and an unknown journey was a bare-text 404:
    both are pages with the dashboard's header, the reason and the way back."""
    client = login(world)
    for days in ("abc", "0", "-3", "1.5", "99999"):
        bad = client.get(f"/journeys/{J}?days={days}")
        assert bad.status_code == 400, days
        assert "<header>" in bad.text
        assert "a whole number of days from 1 to 3650" in bad.text
        assert '<a href="/">Back to the journeys</a>' in bad.text
    assert client.get(f"/journeys/{J}?days=30").status_code == 200
    assert client.get(f"/journeys/{J}").status_code == 200  # 7 days when not given
    typo = client.get("/journeys/first_purchse")
    assert typo.status_code == 404
    assert "<header>" in typo.text
    assert "There is no journey &#39;first_purchse&#39; (did you mean &#39;first_purchase&#39;?)" \
        in typo.text
    hostile = client.get("/journeys/%3Cscript%3E")
    assert hostile.status_code == 404
    assert "<script>" not in hostile.text


def test_journeys_and_profile_pages(world: World) -> None:
    client = login(world, "vi")
    home = client.get("/").text
    assert f'<a href="/journeys/{J}">{J}</a>' in home
    csv_home = client.get("/?csv=journeys").text
    assert J in csv_home
    profile = client.get("/profiles", params={"q": "user3@example.com"})
    assert profile.status_code == 200
    assert "user3@example.com" in profile.text
    assert 'data-table="timeline"' in profile.text
    timeline = list(csv.DictReader(io.StringIO(
        client.get("/profiles", params={"q": "user3", "csv": "timeline"}).text)))
    assert [r["what"] for r in timeline][:1] == ["entered"]
    assert "goal" in {r["what"] for r in timeline}  # user3 ordered: i % 3 == 0
    assert "No profile" in client.get("/profiles", params={"q": "nobody"}).text


def test_the_profile_page_names_steps_never_the_engines_own_states(world: World) -> None:
    """user3 ordered and left the journey: its enrollment's step is the step it left
    from, and no row of the page shows `__exited__` (the state an ended enrollment is
    in) as a step."""
    client = login(world, "vi")
    assert world.sql("SELECT count(*) FROM decisions WHERE profile_id = 'user3' "
                     "AND what = 'exited' AND step = 'nudge_wait'") == 1
    enrollments = list(csv.DictReader(io.StringIO(
        client.get("/profiles", params={"q": "user3", "csv": "enrollments"}).text)))
    assert [(r["status"], r["step"]) for r in enrollments] == [("exited", "nudge_wait")]
    timeline = list(csv.DictReader(io.StringIO(
        client.get("/profiles", params={"q": "user3", "csv": "timeline"}).text)))
    assert not [r for r in timeline if r["step"].startswith("__")]
    page = client.get("/profiles", params={"q": "user3"}).text
    assert "__exited__" not in page


def test_the_timeline_shows_each_entry_goal_and_exit_once(world: World) -> None:
    """user3 entered, ordered (the goal) and left: the timeline had each twice, once
    from its record and once from the decision log."""
    client = login(world, "vi")
    timeline = list(csv.DictReader(io.StringIO(
        client.get("/profiles", params={"q": "user3", "csv": "timeline"}).text)))
    whats = [r["what"] for r in timeline]
    assert whats.count("entered") == 1
    assert whats.count("goal") == 1
    assert whats.count("exited") + whats.count("exit") == 1
    entered = next(r for r in timeline if r["what"] == "entered")
    assert entered["detail"] == "entry: Signed Up (v1)"  # the version the record had
    assert entered["step"] == "first_look"


def test_the_timeline_says_a_message_was_queued_and_what_became_of_it(world: World) -> None:
    """An outbox row read `send skipped` (or `send sent`) beside the decision `skipped`
    (`sent`) at another time: one message looked like two."""
    client = login(world, "vi")
    timeline = list(csv.DictReader(io.StringIO(
        client.get("/profiles", params={"q": "user3", "csv": "timeline"}).text)))
    queued = [r for r in timeline if r["what"] == "queued"]
    assert queued
    assert all(r["detail"].startswith("email → user3@example.com; now ") for r in queued)
    assert not [r for r in timeline if r["what"].startswith("send ")]


def test_the_timeline_keeps_the_records_the_decision_log_does_not_tell() -> None:
    """With `decision_log: off` only the records know of an entry, a goal, an exit."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from engine.api.dashboard.timeline import timeline

    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    enrollment = SimpleNamespace(id="e1", journey="j", version=2, entered_at=at)
    goal = SimpleNamespace(journey="j", at=at)
    left = SimpleNamespace(journey="j", at=at, step="pause", reason="completed")
    store = SimpleNamespace(outbox_records=lambda pid: [], recorded_decisions=lambda pid: [],
                            profile_enrollments=lambda pid: [enrollment, enrollment],
                            recorded_goals=lambda pid: [goal], recorded_exits=lambda pid: [left])
    assert sorted(r[1] for r in timeline(store, "p")) == ["entered", "entered", "exit", "goal"]


def test_retry_needs_an_editor_and_the_csrf_token(world: World) -> None:
    path = f"/failures/{world.parked_id}/retry"
    viewer = login(world, "vi")
    page = viewer.get("/failures").text
    assert "Retry" not in page  # a viewer gets no button
    assert viewer.post(path, data={"csrf": csrf_of(page)}).status_code == 403
    editor = login(world, "ed")
    page = editor.get("/failures").text
    assert "Retry" in page
    assert editor.post(path, data={}).status_code == 403  # no token
    assert editor.post(path, data={"csrf": "forged"}).status_code == 403
    # Another session's token is no good either.
    other = csrf_of(login(world, "ed").get("/failures").text)
    assert other != csrf_of(page)
    assert editor.post(path, data={"csrf": other}).status_code == 403
    assert [f.id for f in world.store.failures()] == [world.parked_id]
    for junk in ("%C2%B2", "%D9%A1", "9" * 5000):  # isdigit() but not int(): were 500
        assert editor.post(f"/failures/{junk}/retry",
                           data={"csrf": csrf_of(page)}).status_code == 404, junk
    done = editor.post(path, data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert world.store.failures() == []


def test_an_https_public_url_makes_the_cookies_secure_behind_a_plain_http_proxy(
        world: World) -> None:
    """A TLS proxy on another host talks plain HTTP to us: the public URL (https) says
    the cookies go over HTTPS only, the login form's and the session's."""
    url, server, thread = start_server(world.store, world.engine, secure_cookies=True)
    try:
        form = httpx.get(url + "/login", timeout=10)
        assert "; secure" in form.headers["set-cookie"].lower()
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token is not None
        # httpx keeps a Secure cookie off plain HTTP, as a browser would: the proxy's
        # side of the connection is HTTPS, so send it as the browser did
        with httpx.Client(base_url=url, timeout=10,
                          cookies={"jm_login": token.group(1)}) as client:
            answer = client.post("/login", data={
                "name": "ed", "password": PASSWORD, "login_token": token.group(1)})
            assert answer.status_code == 303, answer.text
            assert "; secure" in answer.headers["set-cookie"].lower()
    finally:
        server.should_exit = True
        thread.join(10)


def test_dashboard_open_lets_this_machine_read_without_login(world: World) -> None:
    url, server, thread = start_server(world.store, world.engine, open_local=True)
    try:
        answer = httpx.get(url + "/", timeout=10)
        assert answer.status_code == 200
        assert "local (viewer)" in answer.text
        page = httpx.get(url + "/failures", timeout=10).text
        assert "Retry" not in page
        refused = httpx.post(f"{url}/failures/1/retry", data={"csrf": "x"}, timeout=10)
        assert refused.status_code == 403
    finally:
        server.should_exit = True
        thread.join(10)
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.5")
    assert not is_loopback(None)
    assert not is_loopback("testclient")


def test_series_and_kpis_equal_direct_sql_counts(world: World) -> None:
    """The day-by-day table and the KPIs (with the period before) against SQL on the
    same store; a click, a scanner's click and an opt-out recorded for sent messages."""
    from datetime import timedelta

    from engine.ports import Engagement

    now = world.engine.now
    queued = world.store.outbox_records(journey=J)
    assert len(queued) >= 2
    first, second = queued[0].entry, queued[1].entry
    for entry in (first, second):  # delivered (the world's sends were all skipped)
        world.store.mark_sent(entry.key, entry.created_at + timedelta(minutes=1))
    for kind, entry, human in (("click", first, True), ("click", first, True),
                               ("click", second, False), ("unsubscribe", second, True)):
        world.store.record_engagement(Engagement(kind, entry.key, entry.profile_id, J,
                                                 entry.step, now - timedelta(minutes=5),
                                                 None, None, human, None))
    admin = world.store.create_key("series", admin=True)
    stats = httpx.get(f"{world.url}/v1/journeys/{J}/stats?days=30",
                      headers={"Authorization": f"Bearer {admin}"}, timeout=10).json()
    since = (now - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.%f")
    by_day = {d["day"]: d for d in stats["series"]}
    for day, d in by_day.items():
        assert d["entered"] == world.sql(
            "SELECT count(*) FROM enrollments WHERE journey = :j AND entered_at >= :s "
            "AND substr(entered_at, 1, 10) = :d", j=J, s=since, d=day)
        for step, n in d["passed"].items():
            assert n == world.sql(
                "SELECT count(*) FROM enrollments WHERE journey = :j AND entered_at >= :s "
                "AND substr(entered_at, 1, 10) = :d "
                "AND json_extract(visits, '$.' || :st) IS NOT NULL", j=J, s=since, d=day,
                st=step)
        for step, statuses in d["sends"].items():
            assert sum(statuses.values()) == world.sql(
                "SELECT count(*) FROM outbox WHERE journey = :j AND step = :st "
                "AND created_at >= :s AND substr(created_at, 1, 10) = :d", j=J, st=step,
                s=since, d=day)
    assert sum(d["entered"] for d in by_day.values()) == stats["entered"] == PEOPLE
    assert sum(sum(sum(x.values()) for x in d["sends"].values()) for d in by_day.values()) \
        == world.sql("SELECT count(*) FROM outbox WHERE journey = :j", j=J) > 0
    kpis = stats["kpis"]
    delivered = world.sql("SELECT count(*) FROM outbox WHERE journey = :j AND status = 'sent'"
                          " AND created_at >= :s", j=J, s=since)
    assert kpis["ctr"]["value"] == pytest.approx(1 / delivered)  # one message, by people
    assert kpis["opt_outs"]["value"] == 1
    assert kpis["opt_out_rate"]["value"] == pytest.approx(1 / delivered)
    goals = world.sql("SELECT count(*) FROM goals WHERE journey = :j", j=J)
    assert kpis["goals"]["value"] == goals > 0
    attributable = world.sql(
        "SELECT coalesce(sum(g.value), 0) FROM goals g WHERE g.journey = :j AND EXISTS "
        "(SELECT 1 FROM outbox o WHERE o.enrollment_id = g.enrollment_id AND "
        "o.status = 'sent' AND o.sent_at <= g.at)", j=J)
    assert kpis["attributable_revenue"]["value"] == pytest.approx(attributable)
    assert kpis["conversion"]["value"] == pytest.approx(stats["converted"] / PEOPLE)
    # The 30 days before: nothing, so the trend of a count is the count itself.
    assert kpis["goals"]["previous"] == 0
    assert kpis["goals"]["change"] == goals
    assert kpis["ctr"]["previous"] is None
    assert kpis["ctr"]["change"] is None
    client = login(world, "vi")
    page = client.get(f"/journeys/{J}?days=30").text
    assert 'id="kpi-opt_outs"' in page
    assert "Day by day" in page
    table = client.get(f"/journeys/{J}?days=30&csv=series")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert sum(int(r["entered"]) for r in rows) == PEOPLE
    assert sum(int(r["passed first_look"]) for r in rows) == PEOPLE
    home = client.get("/").text
    assert "opt_outs 1 (+1)" in home
    assert "conversion " in home


def test_pause_and_resume_need_an_editor_and_the_csrf_token(world: World) -> None:
    def status() -> str:
        return world.store.deployed_versions(J)[-1].status

    viewer = login(world, "vi")
    page = viewer.get(f"/journeys/{J}").text
    assert 'id="status-button"' not in page  # a viewer has no button
    editor = login(world, "ed")
    page = editor.get(f"/journeys/{J}").text
    assert '<button id="status-button">Pause</button>' in page
    token = csrf_of(page)
    assert viewer.post(f"/journeys/{J}/pause", data={"csrf": token}).status_code == 403
    assert editor.post(f"/journeys/{J}/pause", data={}).status_code == 403
    assert editor.post(f"/journeys/{J}/pause", data={"csrf": "x" + token}).status_code == 403
    assert editor.post(f"/journeys/{J}/explode", data={"csrf": token}).status_code == 404
    assert editor.post("/journeys/nope/pause", data={"csrf": token}).status_code == 404
    assert status() == "active"
    done = editor.post(f"/journeys/{J}/pause", data={"csrf": token})
    assert done.status_code == 303
    assert status() == "paused"
    page = editor.get(done.headers["location"]).text
    assert '<span id="journey-status">paused</span>' in page
    assert '<button id="status-button">Resume</button>' in page
    assert editor.post(f"/journeys/{J}/resume", data={"csrf": token}).status_code == 303
    assert status() == "active"


def test_five_failed_logins_lock_the_name_and_the_address_for_a_while(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Its own world: the lockout counts every failure from 127.0.0.1."""
    from datetime import timedelta

    own = build_world(tmp_path_factory.mktemp("lockout"))
    try:
        def attempt(name: str, password: str) -> httpx.Response:
            return post_login(own.client(), {"name": name, "password": password})

        for _ in range(5):
            assert attempt("ed", "wrong password").status_code == 401
        refused = attempt("ed", PASSWORD)  # the right password, but locked
        assert refused.status_code == 429
        assert "Too many failed logins" in refused.text
        assert "Try again in 15 minutes" in refused.text
        assert refused.headers["retry-after"] == "900"
        assert SESSION_COOKIE not in refused.cookies
        assert attempt("vi", PASSWORD).status_code == 429  # the same address
        own.engine.advance(timedelta(minutes=10))
        assert "Try again in 5 minutes" in attempt("ed", PASSWORD).text
        own.engine.advance(timedelta(minutes=5, seconds=1))
        assert attempt("ed", PASSWORD).status_code == 303  # lifted
        # By name and by address separately (the store's counts; here every request
        # comes from one address).
        now = own.engine.now
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            own.store.record_login_failure("ann", ip, now)
        own.store.record_login_failure("bob", "10.0.0.1", now)
        assert own.store.login_failures("ann", "10.0.0.9", now - timedelta(minutes=15))[:2] \
            == (3, 0)
        assert own.store.login_failures("zed", "10.0.0.1", now - timedelta(minutes=15))[:2] \
            == (0, 2)
        assert own.store.login_failures("ann", "10.0.0.1", now + timedelta(seconds=1))[:2] \
            == (0, 0)
        own.store.clear_login_failures("ann")
        assert own.store.login_failures("ann", "10.0.0.9", now - timedelta(hours=1))[0] == 0
    finally:
        own.close()


def test_the_live_stream_shows_the_newest_events_and_sends(world: World) -> None:
    assert httpx.get(world.url + "/live.json", timeout=10).status_code == 401
    assert httpx.get(world.url + "/live", timeout=10).status_code == 302
    client = login(world, "vi")
    world.store.accept_events([{"type": "track", "event": "Live <b>Ping</b>",
                                "userId": "user7", "messageId": "live-1",
                                "timestamp": "2026-03-02T09:00:00Z"}], "live-test")
    data = client.get("/live.json").json()
    newest = data["events"]["rows"][0]
    assert newest[2:] == ["live-test", "track", "Live <b>Ping</b>", newest[5], "none"]
    assert [r[0] for r in data["events"]["rows"]] == sorted(
        (r[0] for r in data["events"]["rows"]), reverse=True)
    assert len(data["events"]["rows"]) == min(50, world.sql("SELECT count(*) FROM events"))
    sends = data["sends"]["rows"]
    assert [r[0] for r in sends] == [world.sql(
        "SELECT id FROM outbox ORDER BY id DESC LIMIT 1 OFFSET :n", n=i)
        for i in range(len(sends))]
    assert len(sends) == min(50, world.sql("SELECT count(*) FROM outbox")) > 0
    page = client.get("/live").text
    assert "Live &lt;b&gt;Ping&lt;/b&gt;" in page  # escaped
    assert client.get("/live?csv=sends").text.startswith("id,queued,journey,step")


def test_csv_quotes_formulas_and_leaves_empty_cells_empty() -> None:
    """An empty cell (an enrollment not ended) was written as a lone `'`; a tab or a
    carriage return first (OWASP's list) was not quoted."""
    answer = _csv("t", (["a", "b", "c", "d", "e", "f"],
                        [["", "=1+1", "\t=2+2", "\r@x", "plain", 3]]))
    [row] = list(csv.reader(io.StringIO(answer.body.decode())))[1:]
    assert row == ["", "'=1+1", "'\t=2+2", "'\r@x", "plain", "3"]


def test_the_live_stream_says_which_journeys_listen_to_each_event(world: World) -> None:
    """An event no journey names was accepted in silence (`Order Complted`, a tracking
    plan's typo): the live stream says none listens, and the name it may have meant."""
    client = login(world, "vi")
    world.store.accept_events([
        {"type": "track", "event": name, "userId": "user8", "messageId": f"heard-{i}",
         "timestamp": "2026-03-02T09:00:00Z"}
        for i, name in enumerate(["Order Complted", "Order Completed", "Signed Up"])]
        + [{"type": "identify", "userId": "user8", "messageId": "heard-3",
            "traits": {"plan": "pro"}, "timestamp": "2026-03-02T09:00:00Z"}], "heard-test")
    data = client.get("/live.json").json()
    assert data["events"]["head"][-1] == "journeys listening"
    # a sent message's `quiet_hours` is why it waited, not an error
    assert data["sends"]["head"][-1] == "last delay or error"
    heard = {r[4] or r[3]: r[6] for r in data["events"]["rows"] if r[2] == "heard-test"}
    assert heard == {"Order Complted": "none (did you mean 'Order Completed'?)",
                     "Order Completed": J,  # first_purchase's exit_when and goal
                     "Signed Up": J, "identify": "-"}
