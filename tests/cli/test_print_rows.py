"""`print_rows` (engine/cli/common.py), which outbox, decisions and failures print
with: a row's values are hostile text (a profile id, a provider's error), printed as
they are, never read as rich markup, whole, and never passing for another row."""

from __future__ import annotations

import pytest

from engine.cli.common import out, print_rows

COLUMNS = ("send key", "profile", "last error")


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out, "width", 200)  # the table fits


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out, "width", 30)  # one block per row


@pytest.mark.usefixtures("wide")
def test_markup_in_a_table_is_text(capsys: pytest.CaptureFixture[str]) -> None:
    print_rows(COLUMNS, [("k1", "p[bold]1", "550 [/x] refused [red]now[/red]")],
               free_text=("last error",))
    printed = capsys.readouterr().out
    assert "p[bold]1" in printed
    assert "550 [/x] refused [red]now[/red]" in printed


@pytest.mark.usefixtures("wide")
def test_wide_characters_are_counted_in_cells(capsys: pytest.CaptureFixture[str]) -> None:
    """90 wide characters take 180 columns: the table does not fit 200 with the rest,
    so each id is printed whole in its block, not cut short."""
    profile = "顧" * 90
    print_rows(COLUMNS, [("k" * 60, profile, "")], free_text=("last error",))
    printed = capsys.readouterr().out
    assert profile in printed
    assert "…" not in printed


@pytest.mark.usefixtures("narrow")
def test_a_values_later_lines_are_indented(capsys: pytest.CaptureFixture[str]) -> None:
    print_rows(COLUMNS, [("k1", "p1", "first line\nk2 forged"), ("k3", "p3", "")],
               free_text=("last error",))
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == ["k1", "  profile     p1", "  last error  first line",
                         "              k2 forged"]
    headings = [line for line in lines if line and not line.startswith(" ")]
    assert headings == ["k1", "k3"]
