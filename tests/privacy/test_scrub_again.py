"""`forget` that could not scrub the SQLite file (another process held it open) says
"run forget again then"; run again, it answered `no such person in this store` (the
person is gone) and scrubbed nothing, so the freed pages kept them. It now finishes the
scrub first (docs/privacy.md, "Export and erase")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from tests.store.conftest import make_sqlite_store


def test_forget_again_finishes_a_scrub_an_earlier_forget_could_not(
        tmp_path: Path, sqlite_template: Path) -> None:
    store = make_sqlite_store(sqlite_template, tmp_path)
    db = Path(str(store.sql_engine.url.database))
    store.close()
    # what a forget that could not scrub leaves: the rows gone, their bytes in free pages
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA secure_delete=OFF")
        conn.execute("CREATE TABLE scratch (v TEXT)")
        conn.executemany("INSERT INTO scratch VALUES (?)",
                         [("Yannickus yannick.orr@example.org " * 40,)] * 50)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA secure_delete=OFF")
        conn.execute("DROP TABLE scratch")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # and notes it, as forget_person does when its scrub cannot finish
        conn.execute("INSERT INTO settings (key, value) VALUES ('forget_scrub_pending', '1')")
    assert b"Yannickus" in db.read_bytes()  # freed, not gone
    result = CliRunner().invoke(app, ["profiles", "forget", "yan-5511",
                                      "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1, result.output
    assert "no such person in this store" in result.output
    assert "free pages scrubbed" in result.output
    wal = db.with_name(db.name + "-wal")
    for path in (db, wal):
        assert b"Yannickus" not in (path.read_bytes() if path.exists() else b"")


def test_a_scrub_that_could_not_finish_is_noted_and_finished_later(
        tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The note `finish_scrub` reads: set when the scrub cannot finish (a reader holding
    the file for longer than the busy timeout, 30 s: stood in for here), cleared once
    it has."""
    from engine.store.sql.privacy import SCRUB_PENDING, PrivacyQueries

    store = make_sqlite_store(sqlite_template, tmp_path)
    try:
        store.put_setting("x", "y")
        assert store.finish_scrub() is None  # nothing left to do
        with monkeypatch.context() as held:
            held.setattr(PrivacyQueries, "_scrub_sqlite", lambda self: False)
            assert store.forget_person("nobody")["sqlite_scrubbed"] == 0
        assert store.setting(SCRUB_PENDING) == "1"
        assert store.finish_scrub() is True
        assert store.setting(SCRUB_PENDING) is None
        assert store.finish_scrub() is None
    finally:
        store.close()
