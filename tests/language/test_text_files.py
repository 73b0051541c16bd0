"""A file of a journeys folder that is not UTF-8 (saved as Latin-1 by an old editor) is
a problem at the first bad byte, listed with the folder's other problems: never a
`UnicodeDecodeError` traceback (journeys/textfile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from journeys.errors import InvalidJourney, Problem
from journeys.loader import load_journey_file, load_library
from journeys.textfile import read_text

FOLDER = {
    "hello.yaml": ("journey: hello\nversion: 1\nentry: {event: Signed Up}\nsteps:\n"
                   "  - id: welcome\n    send: {channel: email, template: welcome}\n"),
    "templates/welcome.yaml": "channel: email\nsubject: Hi\nhtml_file: page.html\n",
    "templates/page.html": "<p>Hi {{ profile.id }}</p>\n",
    "policy.yaml": "consent_required: []\n",
    "traits.yaml": "traits:\n  email: {type: string}\n",
    "computed_traits.yaml": "rfm:\n  recency: {short: 30, medium: 90}\n",
}
LATIN_1 = "# café\n".encode("latin-1")  # 0xe9 at offset 5: line 1, column 6
NOT_UTF8 = "not UTF-8 text (byte 0xe9 at offset 5); save the file as UTF-8"


def _folder(root: Path) -> Path:
    folder = root / "j"
    for name, text in FOLDER.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_the_folder_is_valid_as_written_in_utf8(tmp_path: Path) -> None:
    assert list(load_library(_folder(tmp_path)).journeys) == ["hello"]


@pytest.mark.parametrize("name", list(FOLDER))
def test_each_kind_of_file_in_latin1_is_a_problem_at_the_bad_byte(tmp_path: Path,
                                                                  name: str) -> None:
    folder = _folder(tmp_path)
    path = folder / name
    path.write_bytes(LATIN_1 + path.read_bytes())
    with pytest.raises(InvalidJourney) as caught:
        load_library(folder)
    [problem] = [p for p in caught.value.problems if "UTF-8" in p.message]
    assert problem == Problem(problem.file, 1, 6, NOT_UTF8)
    assert problem.file.endswith(name)


def test_validate_lists_it_with_the_other_problems_and_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path)
    (folder / "latin.yaml").write_bytes(b'journey: latin\nversion: 1\nname: "caf\xe9"\n'
                                        b"entry: {event: Signed Up}\nsteps:\n"
                                        b"  - {id: done, kind: exit}\n")
    (folder / "typo.yaml").write_text("journey: typo\nversion: 1\nentry: {event: X}\n"
                                      "stepz: []\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", "j"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.splitlines()
    assert "j/latin.yaml:3:11: not UTF-8 text (byte 0xe9 at offset 36); save the file as " \
           "UTF-8" in lines
    assert any(line.startswith("j/typo.yaml:4:1: unknown key 'stepz'") for line in lines)
    assert "Traceback" not in result.output


def test_a_single_journey_file_in_latin1(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    path = folder / "hello.yaml"
    path.write_bytes(path.read_bytes() + LATIN_1)
    with pytest.raises(InvalidJourney) as caught:
        load_journey_file(path)
    offset = len(FOLDER["hello.yaml"].encode()) + 5
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:7:6: not UTF-8 text (byte 0xe9 at offset {offset}); save the file as UTF-8"]


def test_the_column_counts_characters_and_the_line_counts_newlines(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_bytes("a: ünï\nb: \"éé".encode() + b"\xff\"\n")  # 2 bytes per accented letter
    with pytest.raises(InvalidJourney) as caught:
        read_text(path, "shown.yaml")
    assert [str(p) for p in caught.value.problems] == [
        "shown.yaml:2:7: not UTF-8 text (byte 0xff at offset 17); save the file as UTF-8"]


def test_an_unreadable_file_is_a_problem_too(tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(InvalidJourney) as caught:
        read_text(tmp_path / "folder.yaml")
    assert [p.message for p in caught.value.problems] == ["cannot read: Is a directory"]
