"""Validation of everything a marketer writes in a journeys folder (issue 14, part 4):
`computed_traits.yaml`, `policy.yaml` and `traits.yaml` have schemas with
`file:line:column` errors and "did you mean"; `validate` reports every problem of
every file in one run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.core.model import Profile
from engine.core.profiles import ComputedTraits
from journeys.computed import COMPUTED_TRAITS
from journeys.errors import InvalidJourney
from journeys.loader import load_library

FILES = {
    "policy.yaml": (
        "timezone: Europe/Madird\n"
        "quiet_hour: {start: \"21:00\", end: \"08:00\"}\n"
        "frequency_caps:\n"
        "  emial: {max: 5, per: 7d}\n"),
    "computed_traits.yaml": (
        "rfm:\n"
        "  recency: {shortt: 14}\n"
        "lifecycle_stages:\n"
        "  - stage: loyal\n"
        "    when: {profile.computed.orders_cont: {gte: 2}}\n"
        "  - stage: first_time_visitor\n"
        "    when: {}\n"),
    "traits.yaml": (
        "traits:\n"
        "  first_name: {type: string}\n"
        "  email: {type: string}\n"
        "  vip: {type: boolean}\n"
        "  consent: {type: object}\n"
        "events:\n"
        "  Order Completed:\n"
        "    properties: {revenue: {type: number}}\n"),
    "templates/hello.yaml": (
        "channel: email\n"
        "subject: \"Hi {{ profile.traits.first_nme }}\"\n"
        "text: \"Thanks for {{ event.properties.revenu }}\"\n"),
    "welcome.yaml": (
        "journey: welcome\n"
        "version: 1\n"
        "exit_whenn:\n"
        "  - event: Unsubscribed\n"
        "entry:\n"
        "  event: Signed Up\n"
        "  when: {event.properties.plan: {eqq: pro}}\n"
        "steps:\n"
        "  - id: hello\n"
        "    send: {channel: email, template: helo}\n"
        "    next: nowhere\n"),
    "vip.yaml": (
        "journey: vip\n"
        "version: 1\n"
        "entry:\n"
        "  event: Order Completed\n"
        "  when: {profile.traits.vipp: {eq: true}}\n"
        "steps:\n"
        "  - id: pause\n"
        "    wait: 3x\n"
        "  - id: hello\n"
        "    send: {channel: email, template: hello}\n"),
}

# Ten different mistakes (and three more), across six files, all in one run.
EXPECTED = [
    "j/computed_traits.yaml:2:13: unknown key 'shortt' (did you mean 'short'?)",
    "j/computed_traits.yaml:5:12: unknown computed trait 'profile.computed.orders_cont' "
    "(did you mean 'orders_count'?)",
    "j/policy.yaml:1:11: timezone: unknown time zone 'Europe/Madird' "
    "(did you mean 'Europe/Madrid'?)",
    "j/policy.yaml:2:1: unknown key 'quiet_hour' (did you mean 'quiet_hours'?)",
    "j/policy.yaml:4:3: unknown channel 'emial' in frequency_caps (did you mean 'email'?)",
    "j/templates/hello.yaml:2:17: unknown trait 'profile.traits.first_nme' in template "
    "(not in traits.yaml) (did you mean 'first_name'?)",
    "j/vip.yaml:5:10: unknown trait 'profile.traits.vipp' (not in traits.yaml) "
    "(did you mean 'vip'?)",
    "j/vip.yaml:8:11: wait: bad duration '3x': use 30s, 15m, 1h, 2d, 1w or ISO 8601 like "
    "P1DT2H",
    "j/vip.yaml:10:38: template 'hello' reads unknown property 'event.properties.revenu': "
    "traits.yaml declares 'Order Completed' with revenue (did you mean 'revenue'?)",
    "j/welcome.yaml:3:1: unknown key 'exit_whenn' (did you mean 'exit_when'?)",
    "j/welcome.yaml:7:34: unknown operator 'eqq' (did you mean 'eq'?)",
    "j/welcome.yaml:10:38: template 'helo' does not exist (looked for templates/helo.yaml) "
    "(did you mean 'hello'?)",
    "j/welcome.yaml:11:11: step 'nowhere' does not exist",
]


def _write(root: Path, files: dict[str, str]) -> Path:
    folder = root / "j"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_validate_reports_every_mistake_of_every_file_in_one_run(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  ) -> None:
    folder = _write(tmp_path, FILES)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", "j"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("j/")]
    assert lines == EXPECTED
    with pytest.raises(InvalidJourney) as caught:
        load_library(folder)
    assert len(caught.value.problems) == len(EXPECTED)


def test_a_partial_rfm_override_keeps_the_other_bands(tmp_path: Path) -> None:
    folder = _write(tmp_path, {
        "computed_traits.yaml": "rfm:\n  recency: {short: 14}\n",
        "a.yaml": "journey: a\nversion: 1\nentry: {event: X}\nsteps:\n  - id: w\n    wait: 1h\n",
    })
    library = load_library(folder)
    assert library.computed_config is not None
    assert library.computed_config["rfm"]["recency"] == {"short": 14, "medium": 90}
    now = datetime(2026, 3, 2, tzinfo=UTC)
    for config in (library.computed_config, {"rfm": {"recency": {"short": 14}}}):
        view = ComputedTraits(config).view(Profile("p", {}, {
            "last_order_at": "2026-02-01T00:00:00+00:00", "orders_count": 2,
            "total_spent": 150.0}), now)  # no KeyError, loaded or hand-made
        assert view.computed["rfm_recency_name"] == "medium"  # 29 days: > 14, <= 90
        assert view.computed["rfm_frequency_name"] == "regular"
        assert view.computed["rfm_monetary_name"] == "average"


def test_known_computed_traits_are_the_ones_the_engine_computes() -> None:
    view = ComputedTraits().view(Profile("p", {"birthday": "1990-03-02"}, {
        "last_order_at": "2026-02-01T00:00:00+00:00", "first_order_at": "2026-01-01",
        "last_nps_score": 9, "average_order_value": 1.0, "last_seen_at": "2026-03-01"}),
        datetime(2026, 3, 2, tzinfo=UTC))
    assert set(view.computed) == set(COMPUTED_TRAITS)


def test_the_bundled_library_declares_its_traits() -> None:
    from journeys.library import bundled_library

    library = load_library(bundled_library())
    assert library.known_traits is not None
    assert {"first_name", "email", "vip", "consent", "timezone"} <= library.known_traits


def test_entry_event_properties_are_checked_where_the_entry_event_is_read(
        tmp_path: Path) -> None:
    folder = _write(tmp_path, {
        "traits.yaml": "traits: {}\nevents:\n  Checkout Started:\n"
                       "    properties: {cart_value: {}, cart_items: {}}\n",
        "cart.yaml": (
            "journey: cart\nversion: 1\n"
            "entry:\n  event: Checkout Started\n  when: {event.properties.cart_valu: {gt: 0}}\n"
            "exit_when:\n  - event: Order Completed\n    when: {event.properties.anything: {gt: 0}}\n"
            "steps:\n"
            "  - id: keep\n    set_data: {items: \"{{ event.properties.cart_itemz }}\"}\n"
            "  - id: w\n    wait: 1h\n"),
    })
    with pytest.raises(InvalidJourney) as caught:
        load_library(folder)
    assert [str(p) for p in caught.value.problems] == [
        f"{folder}/cart.yaml:5:10: unknown property 'event.properties.cart_valu': traits.yaml "
        "declares 'Checkout Started' with cart_items, cart_value (did you mean 'cart_value'?)",
        f"{folder}/cart.yaml:11:23: unknown property 'event.properties.cart_itemz': traits.yaml "
        "declares 'Checkout Started' with cart_items, cart_value (did you mean 'cart_items'?)",
    ]  # exit_when sees the incoming event, not the entry event: not checked


@pytest.mark.parametrize(("computed", "traits", "stage"), [
    ({}, {}, "first_time_visitor"),
    ({"visits": 3}, {}, "repeat_visitor"),
    ({"identified": True, "visits": 3}, {}, "identified"),
    ({"orders_count": 2, "identified": True}, {}, "loyal"),
    ({"orders_count": 2, "last_nps_score": 9}, {}, "advocate"),
    ({"referrals_count": 1}, {"plan": "x"}, "advocate"),
])
def test_a_views_lifecycle_stage_is_the_first_stage_whose_condition_holds(
        computed: dict[str, object], traits: dict[str, object], stage: str) -> None:
    """The stages are evaluated on the view's own computed traits (not a copy) before
    the stage is added to them; the view's traits are the profile's, unchanged."""
    profile = Profile("p", traits, computed)
    view = ComputedTraits().view(profile, datetime(2026, 3, 2, tzinfo=UTC))
    assert view.computed["lifecycle_stage"] == stage
    assert view.traits == traits
    assert "lifecycle_stage" not in profile.computed


def test_a_scenario_file_beside_the_journeys_is_not_read_as_a_journey(tmp_path: Path) -> None:
    """`journeys: .` in a scenario kept in the journeys folder itself: the folder still
    loads (a `*.scenario.yaml` is never a journey: no journey id has a dot), and the
    scenario runs against it."""
    from tests.engine.helpers import HELLO, stub_email, write_folder

    folder = write_folder(tmp_path / "j", {"hello": HELLO}, {"welcome": stub_email("welcome")})
    (folder / "hello.scenario.yaml").write_text(
        'scenario: hello on sign-up\njourneys: .\nstart: "2026-03-02T09:00:00Z"\n'
        'profiles:\n  ana: {email: ana@example.com}\n'
        'events:\n  - {at: "2026-03-02T10:00:00Z", user: ana, track: Signed Up}\n'
        'expect:\n  messages:\n    - {at: "2026-03-02T10:00:00Z", user: ana, '
        'journey: hello, step: welcome, template: welcome}\n')
    assert list(load_library(folder).journeys) == ["hello"]
    result = CliRunner().invoke(app, ["test", str(folder / "hello.scenario.yaml")])
    assert result.exit_code == 0, result.output
