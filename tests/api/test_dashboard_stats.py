"""The split statistics against published examples, the password hashing, and a
step's decisions grouped by reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.api.dashboard.auth import Sessions, hash_password, verify_password
from engine.api.dashboard.stats import journey_stats, two_proportion_z_test, wilson_interval
from engine.store import SqlStore
from engine.testing import InMemoryEngine
from journeys.library import bundled_library


def test_z_test_matches_agrestis_aspirin_table() -> None:
    """Physicians' Health Study (Agresti, An Introduction to Categorical Data Analysis,
    2nd ed., Table 2.3): myocardial infarction in 189 of 11,034 on placebo and 104 of
    11,037 on aspirin; Pearson's X^2 = 25.01 (df 1), so z = 5.00 and p < 0.0001."""
    test = two_proportion_z_test(189, 11034, 104, 11037)
    assert test is not None
    z, p = test
    assert z * z == pytest.approx(25.01, abs=0.005)
    assert z == pytest.approx(5.00, abs=0.005)
    assert p < 1e-4
    back = two_proportion_z_test(104, 11037, 189, 11034)
    assert back is not None
    assert back[0] == pytest.approx(-z)
    assert back[1] == pytest.approx(p)


def test_wilson_interval_matches_newcombe() -> None:
    """Newcombe (1998), Statistics in Medicine 17:857, Table I: 81/263 -> 0.2553 to
    0.3662; 15/148 -> 0.0624 to 0.1605; 0/20 -> 0 to 0.1611."""
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=5e-5)


def test_wilson_interval_of_none_or_all_converted_ends_exactly_at_0_or_1() -> None:
    """Nobody converted in a holdout of 3: its interval starts at 0, not at 5.55e-17
    (what the journey page showed); everybody converted: it ends at 1."""
    for n in range(1, 200):
        assert wilson_interval(0, n)[0] == 0.0
        assert wilson_interval(n, n)[1] == 1.0


def test_undefined_tests_say_so() -> None:
    assert two_proportion_z_test(0, 0, 1, 10) is None
    assert two_proportion_z_test(0, 10, 0, 10) is None  # nobody converted anywhere
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_passwords_are_salted_scrypt_and_sessions_are_signed() -> None:
    one, two = hash_password("hunter2hunter2"), hash_password("hunter2hunter2")
    assert one != two  # salted
    assert one.startswith("scrypt$16384$8$1$")
    assert verify_password("hunter2hunter2", one)
    assert not verify_password("hunter2hunter3", one)
    assert not verify_password("x", "garbage")
    assert not verify_password("x", "bcrypt$1$2$3$00$00")
    sessions = Sessions("s3cret")
    cookie = sessions.issue("ann", "editor", 1000.0)
    found = sessions.read(cookie, 1001.0)
    assert found is not None
    assert found[0] == "ann"
    assert sessions.read(cookie, 1000.0 + 13 * 3600) is None  # expired
    assert Sessions("other").read(cookie, 1001.0) is None  # another secret
    payload, mac = cookie.split(".")
    assert sessions.read(payload[:-2] + "xx." + mac, 1001.0) is None  # tampered
    assert sessions.read("é.é", 1001.0) is None  # not ASCII: no session (it raised)
    assert sessions.read(payload + ".é" + mac[1:], 1001.0) is None
    assert sessions.csrf_ok(found[1], sessions.csrf_token(found[1]))
    assert not sessions.csrf_ok(found[1], sessions.csrf_token("another"))
    assert not sessions.csrf_ok("", sessions.csrf_token(""))
    assert not sessions.csrf_ok(found[1], "é")  # not ASCII: refused (it raised)


def test_a_steps_decisions_are_grouped_by_reason_not_by_person(tmp_path: Path) -> None:
    """Each person waits until a time of their own and each branch says the values that
    decided it: the journey page's decisions must still be one row per reason, not one
    row per person."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store = SqlStore(f"sqlite:///{tmp_path / 'j.db'}", create=True)
    try:
        eng = InMemoryEngine.from_folder(bundled_library(), start=start,
                                         only=["abandoned_cart"])
        eng.use_store(store)
        store.clock = eng.clock
        for i in range(4):
            traits: dict[str, object] = {"email": f"p{i}@example.com",
                                         "consent": {"email": True}}
            if i % 2:
                traits["vip"] = False  # the branch says 'false is not true' or 'is missing'
            eng.identify(f"p{i}", traits)
            eng.track(f"p{i}", "Checkout Started", {"cart_value": 10 + i})
            eng.advance(timedelta(minutes=7))
        eng.advance(timedelta(days=2))
        stats = journey_stats(store, eng.runner.journeys["abandoned_cart"], start,
                              start + timedelta(days=3))
    finally:
        store.close()
    decisions = {s["id"]: [(d["what"], d["reason"], d["count"]) for d in s["decisions"]]
                 for s in stats["steps"]}
    assert ("waiting", "until the wait is over", 4) in decisions["grace"]
    assert ("waiting", "for Email Clicked, until the timeout", 4) in decisions["clicked"]
    assert decisions["offer"] == [("branch", "else -> plain_offer", 4)]


def test_a_short_median_time_to_goal_is_shown_in_seconds_or_minutes() -> None:
    """Goals reached within three minutes showed `0.0 h` on the page."""
    from engine.api.dashboard.stats import kpi_text, kpi_value

    assert kpi_value("median_time_to_goal", 42.0) == "42 s"
    assert kpi_value("median_time_to_goal", 150.0) == "2.5 min"
    assert kpi_value("median_time_to_goal", 3 * 3600 + 720) == "3.2 h"
    assert kpi_value("median_time_to_goal", None) == "-"
    small = {"value": 90.0, "previous": 120.0, "change": -30.0}
    assert kpi_text("median_time_to_goal", small) == "median_time_to_goal 1.5 min (-30 s)"
    longer = {"value": 7200.0, "previous": 3600.0, "change": 3600.0}
    assert kpi_text("median_time_to_goal", longer) == "median_time_to_goal 2.0 h (+1.0 h)"
    assert kpi_text("median_time_to_goal", {"value": 600.0, "previous": 0.0,
                                            "change": 600.0}) == (
        "median_time_to_goal 10.0 min (+10.0 min)")


def test_the_control_is_the_first_variant_written_before_anyone_reaches_the_split(
        tmp_path: Path) -> None:
    """The page said `control: None` until someone took a variant (and took the first
    variant counted, whatever the file said)."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store = SqlStore(f"sqlite:///{tmp_path / 'j.db'}", create=True)
    try:
        eng = InMemoryEngine.from_folder(bundled_library(), start=start,
                                         only=["first_purchase"])
        eng.use_store(store)
        journey = eng.runner.journeys["first_purchase"]
        stats = journey_stats(store, journey, start, start + timedelta(days=1))
    finally:
        store.close()
    [split] = stats["splits"].values()
    assert split["control"] == "benefits"
    assert split["variants"] == []


def test_table_numbers_are_never_in_scientific_notation() -> None:
    """Revenue 2760 showed as `2.76e+03`, a median of 379,440 s as `3.79e+05`."""
    from engine.api.dashboard.stats import number

    assert number(2760.0) == "2,760"
    assert number(379440.0) == "379,440"
    assert number(-1500.5) == "-1,500"
    assert number(0.0629) == "0.0629"
    assert number(105.44) == "105"
    assert number(None) == "-"


def test_a_variants_reading_in_words() -> None:
    """z and p-value alone left a marketer to know what p = 0.107 means."""
    from engine.api.dashboard.stats import reading

    assert reading(None, None, True) == "the control"
    assert reading(1.61, 0.107, False) == "no clear difference yet (p >= 0.05)"
    assert reading(2.5, 0.0124, False) == "converts better than the control"
    assert reading(-2.5, 0.0124, False) == "converts worse than the control"
    assert reading(None, None, False) == "-"  # nobody in the control yet
    z, p = two_proportion_z_test(28, 102, 20, 110) or (None, None)
    assert reading(z, p, False) == "no clear difference yet (p >= 0.05)"
