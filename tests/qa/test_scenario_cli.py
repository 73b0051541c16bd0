"""`journeyman test`: the bundled journeys' scenarios pass (CI runs them through this
test), a failing scenario prints a readable expected-vs-actual timeline, a bad file gets
`file:line:column` errors, and the exit codes are 0, 1 and 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from engine.cli import app
from tests.conftest import LIBRARY
from tests.engine.helpers import write_folder

runner = CliRunner()

HEAD = f"""\
journeys: {LIBRARY}
start: "2026-03-02T09:00:00Z"
profiles:
  ana: {{email: ana@example.com, first_name: Ana, consent: {{email: true}}, timezone: Europe/Madrid}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_every_bundled_journey_has_scenarios_and_they_all_pass() -> None:
    done = runner.invoke(app, ["test", str(LIBRARY)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"
    assert all(line.startswith("PASS  ") for line in lines[:-1])
    text = "\n".join(p.read_text() for p in (LIBRARY / "scenarios").glob("*.scenario.yaml"))
    journeys = {p.stem for p in LIBRARY.glob("*.yaml")} - {"policy", "computed_traits", "traits"}
    covered = set(re.findall(r"journey: (\w+)", text))
    assert journeys <= covered, journeys - covered


def test_a_failing_scenario_shows_the_timeline_with_journey_step_and_times(
        tmp_path: Path) -> None:
    write(tmp_path, "cart.scenario.yaml", "scenario: the cart reminder comes after 30 minutes\n"
          + HEAD + """\
only: [abandoned_cart]
events:
  - {user: ana, track: Checkout Started, properties: {cart_value: 120}}
expect:
  messages:
    - {at: "2026-03-02T09:30:00Z", user: ana, journey: abandoned_cart, step: reminder, template: cart_reminder}
    - {at: "2026-03-03T10:00:00Z", user: ana, journey: abandoned_cart, step: vip_offer}
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1
    out = done.output
    first = out.splitlines()[0]
    assert first.startswith(f"FAIL  {tmp_path / 'cart.scenario.yaml'}  the cart reminder comes "
                            "after 30 minutes  (")
    assert re.search(
        r"DIFFERS +2026-03-02T10:00:00Z +message +ana +abandoned_cart/reminder +email +"
        r"cart_reminder .* line 11 +\(happened, not as expected\)\n +at: expected "
        r"2026-03-02T09:30:00Z, got 2026-03-02T10:00:00Z \(30m later\)", out), out
    assert re.search(r"DIFFERS +2026-03-03T10:00:00Z +message +ana +abandoned_cart/plain_offer "
                     r".* line 12 .*\n +step: expected 'vip_offer', got 'plain_offer'", out), out
    assert re.search(r"event +ana +track Checkout Started \{cart_value: 120\} +line 8", out), out
    assert out.splitlines()[-2] == "  2 different"
    assert out.splitlines()[-1] == "0 passed, 1 failed"


def test_missing_unexpected_and_profile_mismatches(tmp_path: Path) -> None:
    write(tmp_path, "w.scenario.yaml", "scenario: welcome\n" + HEAD + """\
only: [welcome]
events:
  - {user: ana, track: Signed Up, properties: {source: site}}
expect:
  messages:
    - {user: ana, journey: welcome, step: welcome_site}
    - {user: ana, journey: welcome, step: welcome_newsletter, at: "2026-03-05T09:00:00Z"}
  profiles:
    ana: {traits: {welcomed: false, plan: gold}}
""")
    done = runner.invoke(app, ["test", str(tmp_path / "w.scenario.yaml")])
    assert done.exit_code == 1
    out = done.output
    assert re.search(r"MISSING +2026-03-05T09:00:00Z +message +ana +welcome/welcome_newsletter"
                     r" +line 12 +\(expected, did not happen\)", out), out
    assert re.search(r"UNEXPECTED +2026-03-04T09:00:00Z +message +ana +welcome/preferences "
                     r".*\(happened, not expected\)", out), out
    assert "PROFILE     ana traits.welcomed: expected False, got True  line 14" in out
    assert "PROFILE     ana traits.plan: expected 'gold', got missing  line 14" in out
    assert "1 missing, 2 profile mismatches, 1 unexpected" in out


def test_include_skips_deferrals_and_no_messages_for(tmp_path: Path) -> None:
    write(tmp_path, "n.scenario.yaml", "scenario: quiet hours in New York, no consent\n"
          + HEAD + """\
  ben: {email: ben@example.com, timezone: America/New_York, consent: {email: true}}
  cai: {email: cai@example.com, consent: {email: false}}
only: [nurturing]
events:
  - {user: ben, track: Lead Created}
  - {user: cai, track: Lead Created}
expect:
  messages_include:
    - {at: "2026-03-02T13:00:00Z", user: ben, step: pull_1, channel: email, to: ben@example.com}
  deferred_include:
    - {user: ben, step: pull_1, reason: quiet_hours, until: "2026-03-02T13:00:00Z"}
  skipped_include:
    - {user: cai, step: pull_1, reason: no_consent, at: "2026-03-02T09:00:00Z"}
  no_messages_for: [cai]
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 0, done.output


def test_anonymous_visitor_aliased_and_messages_out_of_order(tmp_path: Path) -> None:
    write(tmp_path, "a.scenario.yaml", "scenario: alias\n" + HEAD + """\
only: [browse_retargeting, welcome]
events:
  - {anonymous: v-1, track: Product Viewed, properties: {name: Rain Shell}}
  - {after: 5m, user: ana, alias: v-1}
  - {after: 5m, user: ana, track: Signed Up, properties: {source: site}}
expect:
  messages:
    - {user: ana, step: still_interested}
    - {user: ana, step: welcome_site}
    - {user: ana, step: preferences}
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1
    # ana is the visitor: the reminder for the anonymous view reaches her, at 13:00
    assert re.search(r"ORDER +2026-03-02T13:00:00Z +message +ana +browse_retargeting/"
                     r"still_interested .*\n +listed out of time order", done.output), done.output


def test_an_invalid_scenario_file_gets_positioned_errors(tmp_path: Path) -> None:
    write(tmp_path, "bad.scenario.yaml", """\
scenario: broken
journeys: ../nowhere
start: "2026-03-02T09:00:00Z"
events:
  - {user: ana, track: Signed Up, propertes: {source: site}}
expect:
  mesages: []
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1
    path = tmp_path / "bad.scenario.yaml"
    assert f"  {path}:5:35: unknown key 'propertes' (did you mean 'properties'?)" in done.output
    assert f"  {path}:7:3: unknown key 'mesages' (did you mean 'messages'?)" in done.output
    assert done.output.splitlines()[-1] == "0 passed, 0 failed, 1 invalid"


def test_names_that_do_not_exist_and_times_that_go_backwards(tmp_path: Path) -> None:
    write(tmp_path, "names.scenario.yaml", "scenario: typos\n" + HEAD + """\
events:
  - {at: "2026-03-02T10:00:00Z", user: ana, track: Signed Up}
  - {at: "2026-03-02T09:30:00Z", user: ana, track: Order Completed}
  - {after: 3x, user: ana, track: Order Completed}
  - {user: ana, track: X, identify: {a: 1}}
expect:
  messages: []
""")
    write(tmp_path, "ids.scenario.yaml", "scenario: typos\n" + HEAD + """\
events:
  - {user: ana, track: Signed Up}
expect:
  messages:
    - {user: bob, journey: welcom, step: nope}
    - {user: ana, journey: welcome, step: welcome_sit, template: welcome_sight}
  no_messages_for: [anna]
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1
    out = done.output
    ids, names = tmp_path / "ids.scenario.yaml", tmp_path / "names.scenario.yaml"
    for expected in [
        f"{names}:8:10: at: 2026-03-02T09:30:00Z is before the previous line "
        "(2026-03-02T10:00:00Z); events are listed in time order",
        f"{names}:9:13: bad duration '3x'",
        f"{names}:10:5: each event line has exactly one of: track, identify, alias, page "
        "(this one has track, identify)",
        f"{ids}:10:14: user: 'bob' appears in no profile or event line of this scenario",
        f"{ids}:10:28: journey: no journey 'welcom' in {LIBRARY} (did you mean 'welcome'?)",
        f"{ids}:11:43: step: no step 'welcome_sit' in journey 'welcome' "
        "(did you mean 'welcome_site'?)",
        f"{ids}:11:66: template: no template 'welcome_sight' (did you mean 'welcome_site'?)",
        f"{ids}:12:21: no_messages_for: 'anna' appears in no profile or event line of this "
        "scenario (did you mean 'ana'?)",
    ]:
        assert expected in out, f"{expected}\n---\n{out}"


def test_a_scenario_that_checks_nothing_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "empty.scenario.yaml", "scenario: nothing\n" + HEAD + "expect: {}\n")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1
    assert f"{tmp_path / 'empty.scenario.yaml'}:6:9: expect: give at least one expectation" \
        in done.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["test"]).exit_code == 2
    missing = runner.invoke(app, ["test", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "no such file or folder" in missing.output
    empty = runner.invoke(app, ["test", str(tmp_path)])
    assert empty.exit_code == 2
    assert "no *.scenario.yaml files under" in empty.output


def test_a_folder_without_policy_runs_under_the_bundled_policy(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    (journeys / "templates").mkdir()
    (journeys / "hello.yaml").write_text("""\
journey: hello
version: 1
entry: {event: Signed Up}
steps:
  - id: hi
    send: {channel: email, template: hi}
""")
    (journeys / "templates" / "hi.yaml").write_text("channel: email\nsubject: Hi\ntext: Hello\n")
    write(tmp_path, "hello.scenario.yaml", """\
scenario: the bundled policy's consent rule applies
journeys: journeys
start: "2026-03-02T09:00:00Z"
profiles:
  ana: {email: ana@example.com}
events:
  - {user: ana, track: Signed Up}
  - {at: "2026-03-02T22:00:00Z", user: ana, identify: {consent: {email: true}}}
  - {after: 1m, user: ana, track: Signed Up}
expect:
  messages: []
  skipped:
    - {user: ana, journey: hello, step: hi, reason: no_consent, channel: email, at: "2026-03-02T09:00:00Z"}
""")
    done = runner.invoke(app, ["test", str(tmp_path / "hello.scenario.yaml")])
    assert done.exit_code == 0, done.output


def test_a_journey_problem_is_named_from_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario's journeys folder is named as the user would type it from where the
    command runs (`journeys/hello.yaml:...`), not as an absolute path."""
    project = tmp_path / "proj"
    (project / "journeys").mkdir(parents=True)
    (project / "journeys" / "hello.yaml").write_text(
        "journey: hello\nversion: 1\nentry: {event: Signed Up}\nsteps:\n"
        "  - {id: hi, wait: 1d, next: nowhere}\n")
    write(project, "hello.scenario.yaml", """\
scenario: hello
journeys: journeys
start: "2026-03-02T09:00:00Z"
events:
  - {user: ana, track: Signed Up}
expect:
  messages: []
""")
    monkeypatch.chdir(project)
    done = runner.invoke(app, ["test", "hello.scenario.yaml"])
    assert done.exit_code == 1
    assert "  journeys/hello.yaml:5:30: step 'nowhere' does not exist" in done.output, \
        done.output
    assert str(project) not in done.output



def test_a_file_reached_twice_runs_once_and_a_file_not_named_as_scenarios_is_said(
        tmp_path: Path) -> None:
    """A folder and a file in it name one scenario: it runs once (it ran twice). A file
    given by name that is not `*.scenario.yaml` is read as asked, with a note saying so
    (a journey given by mistake then reads `unknown key 'version'` with its reason)."""
    scenario = write(tmp_path, "quiet.scenario.yaml", "scenario: nothing happens\n" + HEAD
                     + "only: [welcome]\nevents: []\nexpect:\n  no_messages_for: [ana]\n")
    done = runner.invoke(app, ["test", str(tmp_path), str(scenario)])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == "1 passed, 0 failed"
    journey = tmp_path / "welcome.yaml"
    journey.write_text((LIBRARY / "welcome.yaml").read_text())
    mistaken = runner.invoke(app, ["test", str(journey)])
    assert mistaken.exit_code == 1
    assert f"{journey} is not named *.scenario.yaml; read as a scenario" in mistaken.output


def test_an_event_line_the_api_would_refuse_is_an_error_not_a_pass(tmp_path: Path) -> None:
    """`.inf` (YAML's infinity) as a cart's value was taken, and the scenario passed on
    an event production answers 400 for: the line is an error, at its line."""
    write(tmp_path, "inf.scenario.yaml", "scenario: an infinite cart\n" + HEAD + """\
events:
  - {user: ana, track: Checkout Started, properties: {cart_value: .inf}}
expect:
  messages_include:
    - {user: ana, journey: abandoned_cart, step: reminder}
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1, done.output
    path = tmp_path / "inf.scenario.yaml"
    assert f"  {path}:7:1: numbers must be finite (no NaN or Infinity)" in done.output
    assert done.output.splitlines()[-1] == "0 passed, 0 failed, 1 invalid"



def test_an_anonymous_id_in_an_expectation_is_the_person_it_became(tmp_path: Path) -> None:
    """`no_messages_for: [v-1]` passed although visitor v-1, aliased to ana, got the
    browse reminder: records are named after the person (ana), and the expectation's
    anonymous id was compared as text. Both sides now name the person."""
    scenario = "scenario: the visitor\n" + HEAD + """\
only: [browse_retargeting]
events:
  - {anonymous: v-1, track: Product Viewed, properties: {name: Rain Shell}}
  - {after: 5m, user: ana, alias: v-1}
expect:
"""
    write(tmp_path, "none.scenario.yaml", scenario + "  no_messages_for: [v-1]\n")
    done = runner.invoke(app, ["test", str(tmp_path / "none.scenario.yaml")])
    assert done.exit_code == 1, done.output
    assert re.search(r"UNEXPECTED +2026-03-02T13:00:00Z +message +ana +browse_retargeting/"
                     r"still_interested .*\n +no messages were expected for v-1", done.output)
    write(tmp_path, "got.scenario.yaml", scenario + """\
  messages:
    - {user: v-1, step: still_interested, at: "2026-03-02T13:00:00Z"}
  exits:
    - {user: v-1, journey: browse_retargeting, reason: completed}
""")
    done = runner.invoke(app, ["test", str(tmp_path / "got.scenario.yaml")])
    assert done.exit_code == 0, done.output


def test_a_failure_shows_what_else_happened_to_the_people_it_is_about(tmp_path: Path) -> None:
    """A QA trial's `messages_include` for u1's push failed with MISSING and nothing
    else about u1: the timeline did not say that u1 left at the split as holdout, so the
    reader could not tell why. Every record of a person a failure is about is shown,
    unmarked, as what also happened."""
    write(tmp_path, "split.scenario.yaml", f"""\
scenario: u1 gets the push
journeys: {LIBRARY}
only: [first_purchase]
start: "2026-03-02T09:00:00Z"
profiles:
  u1: {{email: u1@example.com, consent: {{email: true}}}}
  u2: {{email: u2@example.com, consent: {{email: true}}}}
events:
  - {{user: u1, track: Signed Up}}
  - {{user: u2, track: Signed Up}}
expect:
  messages_include:
    - {{user: u1, journey: first_purchase, step: push}}
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1, done.output
    assert re.search(r"\n +2026-03-05T09:00:00Z +exit +u1 +first_purchase/subject_test +"
                     r"reason holdout +\(also happened \(not checked\)\)", done.output), done.output
    assert "MISSING     (any time)            message   u1" in done.output
    assert " u2 " not in done.output.split("track Signed Up")[-1]  # not about u2


def test_an_empty_only_runs_no_journey_and_is_an_error(tmp_path: Path) -> None:
    """`only: []` ran no journey at all, so `messages: []` passed for nothing."""
    write(tmp_path, "only.scenario.yaml", "scenario: nothing runs\n" + HEAD + """\
only: []
events:
  - {user: ana, track: Signed Up, properties: {source: site}}
expect:
  messages: []
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1, done.output
    assert (f"{tmp_path / 'only.scenario.yaml'}:6:7: only: give at least one journey id "
            "(leave `only` out to run every journey of the folder)") in done.output


def test_an_event_name_one_typo_from_one_the_journeys_read_is_an_error(
        tmp_path: Path) -> None:
    """`track: Checkout Startd` entered nobody, so `no_messages_for: [ana]` passed for
    nothing. A name the journeys never read that is close to one they do is a typo;
    a name far from all of them (an event nothing listens to) is fine."""
    write(tmp_path, "typo.scenario.yaml", "scenario: a typo\n" + HEAD + """\
only: [abandoned_cart]
events:
  - {user: ana, track: Checkout Startd, properties: {cart_value: 20}}
  - {user: ana, track: Newsletter Opened}
expect:
  no_messages_for: [ana]
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1, done.output
    path = tmp_path / "typo.scenario.yaml"
    assert (f"{path}:8:24: track: no journey of {LIBRARY} reads 'Checkout Startd' "
            "(did you mean 'Checkout Started'? `unread: true` on the line if it is meant)"
            ) in done.output, done.output
    assert "Newsletter Opened" not in done.output
    # a negative test of a client's misspelled event says it means the name
    write(tmp_path, "typo.scenario.yaml", "scenario: a typo\n" + HEAD + """\
only: [abandoned_cart]
events:
  - {user: ana, track: Checkout Startd, unread: true, properties: {cart_value: 20}}
expect:
  no_messages_for: [ana]
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 0, done.output


def test_a_scenario_named_yml_runs_too(tmp_path: Path, pytester: pytest.Pytester) -> None:
    """`cart.scenario.yml` in a folder was skipped without a word by `journeyman test`
    and by pytest: a CI that ran the folder went green on a scenario it never ran."""
    text = "scenario: yml\n" + HEAD + """\
events:
  - {user: ana, track: Signed Up, properties: {source: site}}
expect:
  messages: []
"""
    write(tmp_path, "cart.scenario.yml", text)
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 1, done.output
    assert done.output.startswith(f"FAIL  {tmp_path / 'cart.scenario.yml'}  yml"), done.output
    pytester.makefile(".scenario.yml", cart=text)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FAILED cart.scenario.yml::cart*"])


def test_an_exit_reason_as_why_spells_it_matches(tmp_path: Path) -> None:
    """`why` tells `exit_when: Order Completed`, the records `exit_when:Order Completed`:
    a QA engineer who copied the reason from `why` got a failure for a true exit."""
    write(tmp_path, "exit.scenario.yaml", "scenario: exit as why says\n" + HEAD + """\
only: [abandoned_cart]
events:
  - {user: ana, track: Checkout Started, properties: {cart_value: 20}}
  - {user: ana, after: 10m, track: Order Completed, properties: {revenue: 20}}
expect:
  exits_include:
    - {user: ana, journey: abandoned_cart, reason: "exit_when: Order Completed"}
""")
    done = runner.invoke(app, ["test", str(tmp_path)])
    assert done.exit_code == 0, done.output


def test_a_bundled_journey_missing_from_the_folder_says_where_it_is(tmp_path: Path) -> None:
    """A newcomer put docs/testing.md's cart scenario in `my_journeys/scenarios/` with
    `journeys: ..`: every line said "no journey 'abandoned_cart' in ..", naming neither
    the folder `..` is, nor what it holds, nor that abandoned_cart is a bundled journey."""
    mine = tmp_path / "my_journeys"
    (mine / "scenarios").mkdir(parents=True)
    (mine / "templates").mkdir()
    (mine / "trial.yaml").write_text("journey: trial\nversion: 1\nentry: {event: Trial Started}\n"
                                     "steps:\n  - id: done\n    exit: completed\n")
    path = write(mine / "scenarios", "cart.scenario.yaml", """\
scenario: the cart reminder
journeys: ..
only: [abandoned_cart]
start: "2026-03-02T09:00:00Z"
events:
  - {user: ana, track: Checkout Started, properties: {cart_value: 120}}
expect:
  messages:
    - {user: ana, journey: abandoned_cart, step: reminder}
    - {user: ana, journey: trail}
""")
    done = runner.invoke(app, ["test", str(path)])
    assert done.exit_code == 1
    where = f"{mine.resolve()} (its journeys: trial)"
    for expected in [
        f"{path}:3:8: only: no journey 'abandoned_cart' in .., {where}; abandoned_cart is "
        f"a bundled journey: `journeys: journeyman:bundled` names their folder, "
        f"{LIBRARY.resolve()}",
        f"{path}:9:28: journey: no journey 'abandoned_cart' in .., {mine.resolve()}\n",
        f"{path}:10:28: journey: no journey 'trail' in .., {mine.resolve()} (did you mean "
        "'trial'?)",
    ]:
        assert expected in done.output, f"{expected}\n---\n{done.output}"
    assert done.output.count("is a bundled journey") == 1  # told once, not on every line


def test_a_scenario_of_a_project_names_the_bundled_journeys_portably(
        tmp_path: Path, pytester: pytest.Pytester) -> None:
    """A scenario in the user's own project could name the bundled journeys only by the
    path of the installed package's journeys/library (another on every machine and
    virtualenv). `journeys: journeyman:bundled` names them anywhere; so does
    `InMemoryEngine.from_folder("journeyman:bundled")` and the fixture."""
    project = tmp_path / "project" / "tests"
    project.mkdir(parents=True)
    path = write(project, "cart.scenario.yaml", """\
scenario: the bundled cart reminder, from a project of one's own
journeys: journeyman:bundled
only: [abandoned_cart]
start: "2026-03-02T09:00:00Z"
profiles:
  ana: {email: ana@example.com, consent: {email: true}, timezone: Europe/Madrid}
events:
  - {user: ana, track: Checkout Started, properties: {cart_value: 40}}
expect:
  messages_include:
    - {at: "2026-03-02T10:00:00Z", user: ana, journey: abandoned_cart, step: reminder}
""")
    done = runner.invoke(app, ["test", str(path)])
    assert done.exit_code == 0, done.output
    from engine.testing import InMemoryEngine

    eng = InMemoryEngine.from_folder("journeyman:bundled", start="2026-03-02T09:00:00Z",
                                     only=["abandoned_cart"])
    assert list(eng.library.journeys) == ["abandoned_cart"]
    pytester.makepyfile("""
        def test_it(journeyman_engine):
            eng = journeyman_engine("journeyman:bundled", start="2026-03-02T09:00:00Z")
            assert "abandoned_cart" in eng.library.journeys
    """)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def invalid_saying(path: Path, *expected: str) -> Result:
    """`journeyman test PATH`, which must exit 1 saying each of `expected`."""
    done = runner.invoke(app, ["test", str(path)])
    assert done.exit_code == 1, done.output
    for line in expected:
        assert line in done.output, f"{line}\n---\n{done.output}"
    return done


def test_a_misspelled_trait_in_profiles_or_identify_lines_is_an_error(tmp_path: Path) -> None:
    """`profiles: {ana: {plna: premium}}` set a trait nothing reads, so a test of the
    premium branch ran the basic one, or passed for nothing. As `validate` tells a
    journey's reads: with traits.yaml, a trait it does not declare (nor the engine
    reads: email, consent, timezone...) is an error with "did you mean"; without one, a
    trait a typo away from one the journeys or templates read. `unread: true` on an
    identify line sets one on purpose."""
    path = write(tmp_path, "traits.scenario.yaml", "scenario: traits\n" + HEAD + """\
  ben: {email: ben@example.com, plna: premium, first_nme: Ben, device_token: t-1}
only: [abandoned_cart]
events:
  - {user: ana, identify: {vipp: true}}
  - {user: ana, identify: {Plan: gold}, unread: true}
  - {user: ana, track: Checkout Started, properties: {cart_value: 20}}
expect:
  no_messages_for: [ben]
""")
    done = invalid_saying(
        path,
        f"{path}:6:33: profiles: unknown trait 'plna' (not in traits.yaml) (did you mean "
        "'plan'?)",
        f"{path}:6:48: profiles: unknown trait 'first_nme' (not in traits.yaml) (did you "
        "mean 'first_name'?)",
        f"{path}:9:28: identify: unknown trait 'vipp' (not in traits.yaml) (did you mean "
        "'vip'?)")
    assert "device_token" not in done.output
    assert "'Plan'" not in done.output
    # without traits.yaml: a typo of a trait a condition or template reads
    write_folder(tmp_path / "j", {"plans": """
        journey: plans
        version: 1
        entry: {event: Signed Up}
        steps:
          - id: check
            branch:
              - when: {profile.traits.plan: {eq: premium}}
                goto: premium
              - else: basic
          - id: basic
            send: {channel: email, template: hi}
          - id: premium
            send: {channel: email, template: hi}
        """}, {"hi": "channel: email\nsubject: 'Hi {{ profile.traits.nickname }}'\n"
                     "text: hi\n"})
    path = write(tmp_path, "plans.scenario.yaml", """\
scenario: plans
journeys: j
start: "2026-03-02T09:00:00Z"
profiles:
  ana: {email: ana@example.com, plna: premium, nicknam: Ana, company: Acme}
events:
  - {user: ana, track: Signed Up}
expect:
  messages_include:
    - {user: ana, step: premium}
""")
    done = invalid_saying(
        path,
        f"{path}:5:33: profiles: no journey or template of j reads the trait 'plna' (did you "
        "mean 'plan'? `unread: true` on an identify line sets it on purpose)",
        f"{path}:5:48: profiles: no journey or template of j reads the trait 'nicknam' (did "
        "you mean 'nickname'?")
    assert "company" not in done.output  # far from every trait read: the app's own
