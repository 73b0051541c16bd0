"""`journeyman decisions`' totals: one line by kind, then the commonest reasons; the
reasons of waits name their times, so a long log has thousands of distinct ones."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.cli.admin import TOP_REASONS, _print_totals


def test_totals_by_kind_then_the_commonest_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    by_reason = Counter({"resumed:wait over": 150, "sent:email: welcome": 12,
                         **{f"waiting:until 2026-03-0{n % 9 + 1}T00:00:{n:02}Z": 1
                            for n in range(40)}})
    by_what = Counter({"resumed": 150, "sent": 12, "waiting": 40})
    _print_totals(by_what, by_reason)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "resumed 150, sent 12, waiting 40"
    assert lines[1:3] == ["  150  resumed wait over", "   12  sent email: welcome"]
    assert len(lines) == 1 + TOP_REASONS + 1
    assert lines[-1] == "  (32 more decisions of 32 other reasons: --json has them all)"


def test_no_decisions_is_empty(capsys: pytest.CaptureFixture[str]) -> None:
    _print_totals(Counter(), Counter())
    assert capsys.readouterr().out == "empty\n"
