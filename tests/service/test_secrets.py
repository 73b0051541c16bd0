"""The unsubscribe-signing secrets (issue 13 §5): configured (JOURNEYMAN_SECRET, a file),
else a generated file beside a SQLite database, never a default in code and never in
clear in the database; rotation; the secret earlier versions kept in the database; and
`journeyman worker --public-url`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.runtime.signing import (
    LEGACY_GRACE,
    LEGACY_SETTING,
    SEALED_SETTING,
    SecretConfigError,
    configured_secrets,
    local_secret_file,
    parse_secrets,
    secrets_for,
)
from engine.runtime.unsubscribe import USER, Person, SigningSecret, UnsubscribeLinks
from engine.service import Service
from engine.store import SqlStore
from engine.testing import InMemoryStore
from tests.engine.helpers import stub_email, write_folder
from tests.service.test_serve import journeyman

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANA = Person(USER, "ana")
NEW, OLD = "new-secret-0123456789", "old-secret-0123456789"
LEGACY = "legacy-secret-kept-in-clear-by-an-earlier-version"


# --- the format -----------------------------------------------------------------------


def test_secrets_newest_first_with_dates_for_the_older_ones() -> None:
    text = f"# rotated in March\n{NEW}\n{OLD} until 2026-04-01  # then drop it\n\n"
    assert parse_secrets(text, "f") == [
        SigningSecret(NEW), SigningSecret(OLD, datetime(2026, 4, 1, tzinfo=UTC))]
    assert parse_secrets(f"{NEW}, {OLD} until 2026-04-01T12:00:00+02:00", "env") == [
        SigningSecret(NEW), SigningSecret(OLD, datetime(2026, 4, 1, 10, tzinfo=UTC))]


@pytest.mark.parametrize(("text", "message"), [
    ("", "holds no secret; make one with: python3 -c"),
    ("# only a comment\n", "holds no secret"),
    ("short", "at least 16 characters (one has 5)"),
    (f"{NEW} until 2026-04-01", "the first secret signs new links and cannot have an 'until'"),
    (f"{NEW}\n{OLD} until soon", "'until soon' is not a date"),
    (f"{NEW}\n{OLD} until 2026-04-01T00:00:00", "needs an offset"),
    (f"{NEW} and more", "expected 'SECRET' or 'SECRET until DATE', got 3 words"),
])
def test_a_bad_secret_configuration_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SecretConfigError, match=r"^f: ") as caught:
        parse_secrets(text, "f")
    assert message in str(caught.value)


def test_env_or_file_but_not_both(tmp_path: Path) -> None:
    path = tmp_path / "jm.secret"
    path.write_text(f"{NEW}\n")
    path.chmod(0o600)
    assert configured_secrets({}) is None
    assert configured_secrets({"JOURNEYMAN_SECRET": NEW}) == [SigningSecret(NEW)]
    assert configured_secrets({}, path) == [SigningSecret(NEW)]
    assert configured_secrets({"JOURNEYMAN_SECRET_FILE": str(path)}) == [SigningSecret(NEW)]
    with pytest.raises(SecretConfigError, match="one way only"):
        configured_secrets({"JOURNEYMAN_SECRET": NEW}, path)
    with pytest.raises(SecretConfigError, match=r"cannot read the secret file .*missing"):
        configured_secrets({}, tmp_path / "missing")


def test_a_secret_file_others_can_read_is_warned_about(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "jm.secret"
    path.write_text(f"{NEW}\n")
    path.chmod(0o644)
    assert configured_secrets({}, path) == [SigningSecret(NEW)]
    assert "can be read by other users (mode 644); chmod 600 it" in caplog.text
    assert NEW not in caplog.text


# --- no configuration: a file beside a SQLite database, nothing for PostgreSQL -----------


def test_sqlite_gets_a_0600_secret_file_and_links_survive_a_restart(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {}, {})
    db_file = tmp_path / "data" / "jm.db"
    db_file.parent.mkdir()
    url = f"sqlite:///{db_file}"
    first = Service(folder, url, channels={})
    token = first.unsubscribe.token(ANA, "email")
    first.store.close()

    secret_file = local_secret_file(url)
    assert secret_file == tmp_path / "data" / "jm.db.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    [secret] = parse_secrets(secret_file.read_text(), "f")

    again = Service(folder, url, channels={})  # a restart
    assert again.unsubscribe.verify(token) == (ANA, "email")
    again.store.close()
    for path in db_file.parent.iterdir():  # the database, its WAL: no secret in them
        if path != secret_file and path.is_file():  # (the -wake folder lists listeners)
            assert secret.value.encode() not in path.read_bytes(), path


def test_two_processes_starting_at_once_agree_on_the_generated_secret(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jm.db'}"
    code = ("import sys; from engine.runtime.signing import secrets_for; "
            "from engine.testing import InMemoryStore; from datetime import datetime, UTC; "
            "print(secrets_for(sys.argv[1], InMemoryStore(), None, datetime.now(UTC))[0].value)")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    values = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(values) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_an_in_memory_sqlite_database_gets_a_secret_for_its_own_life() -> None:
    one = secrets_for("sqlite://", InMemoryStore(), None, NOW)
    two = secrets_for("sqlite:///:memory:", InMemoryStore(), None, NOW)
    assert len(one[0].value) >= 32
    assert one != two


def test_postgres_without_a_secret_refuses_and_says_how_to_make_one() -> None:
    with pytest.raises(SecretConfigError) as caught:
        secrets_for("postgresql+psycopg://app@db/journeys", InMemoryStore(), None, NOW)
    message = str(caught.value)
    assert "set JOURNEYMAN_SECRET or --secret-file (JOURNEYMAN_SECRET_FILE)" in message
    assert "every process on this database needs the same one" in message
    assert "secrets.token_urlsafe(32)" in message
    assert "chmod 600" in message


@pytest.mark.postgres
def test_serve_on_postgres_without_a_secret_exits_1_with_the_reason(
        tmp_path: Path, pg_database: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYMAN_SECRET")}
    done = subprocess.run([sys.executable, "-m", "engine", "worker", "--db", pg_database],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False, env=env)
    assert done.returncode == 1
    assert "no secret to sign unsubscribe links with" in done.stderr
    assert "Traceback" not in done.stderr


# --- the secret an earlier version kept in clear in the database -----------------------


def _legacy_token(secret: str) -> str:
    return UnsubscribeLinks(secret, "https://x").token(ANA, "email")


def test_sqlite_moves_the_earlier_versions_secret_into_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jm.db'}"
    store = SqlStore(url, create=True)
    store.put_setting(LEGACY_SETTING, LEGACY)  # what an earlier version left
    signing = secrets_for(url, store, None, NOW)
    assert signing == [SigningSecret(LEGACY)]  # the same secret: every old link works
    assert store.setting(LEGACY_SETTING) is None
    assert store.setting(SEALED_SETTING) is None
    store.close()
    assert LEGACY in (tmp_path / "jm.db.secret").read_text()
    assert LEGACY.encode() not in (tmp_path / "jm.db").read_bytes()


def test_with_configured_secrets_the_earlier_secret_is_sealed_and_verifies_a_year() -> None:
    store = InMemoryStore()
    store.put_setting(LEGACY_SETTING, LEGACY)
    old_link = _legacy_token(LEGACY)
    signing = secrets_for("postgresql+psycopg://x/y", store, [SigningSecret(NEW)], NOW)
    assert signing == [SigningSecret(NEW), SigningSecret(LEGACY, NOW + LEGACY_GRACE)]
    assert store.setting(LEGACY_SETTING) is None
    sealed = store.setting(SEALED_SETTING)
    assert sealed is not None
    assert LEGACY not in sealed
    links = UnsubscribeLinks(signing, "https://x")
    assert links.verify(old_link, NOW + timedelta(days=364)) == (ANA, "email")
    assert links.verify(old_link, NOW + LEGACY_GRACE) is None

    # a later start (another process) opens it again
    assert secrets_for("postgresql+psycopg://x/y", store, [SigningSecret(NEW)],
                       NOW + timedelta(days=1))[1:] == [SigningSecret(LEGACY, NOW + LEGACY_GRACE)]

    # a rotation: the newest secret signs, the sealed one is sealed again under it
    rotated = [SigningSecret("newer-secret-0123456789"), SigningSecret(NEW, NOW + LEGACY_GRACE)]
    assert secrets_for("postgresql+psycopg://x/y", store, rotated, NOW)[2:] == [
        SigningSecret(LEGACY, NOW + LEGACY_GRACE)]
    assert store.setting(SEALED_SETTING) != sealed
    only_newest = [SigningSecret("newer-secret-0123456789")]  # NEW dropped from the config
    assert secrets_for("postgresql+psycopg://x/y", store, only_newest, NOW)[1:] == [
        SigningSecret(LEGACY, NOW + LEGACY_GRACE)]

    # after its grace, it is gone for good
    later = NOW + LEGACY_GRACE + timedelta(seconds=1)
    assert secrets_for("postgresql+psycopg://x/y", store, only_newest, later) == only_newest
    assert store.setting(SEALED_SETTING) is None


def test_a_sealed_secret_nobody_can_open_is_kept_and_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryStore()
    store.put_setting(LEGACY_SETTING, LEGACY)
    secrets_for("postgresql+psycopg://x/y", store, [SigningSecret(NEW)], NOW)
    stranger = [SigningSecret("a-different-secret-0123")]
    assert secrets_for("postgresql+psycopg://x/y", store, stranger, NOW) == stranger
    assert "sealed under a secret this process does not have" in caplog.text
    assert store.setting(SEALED_SETTING) is not None  # the right process can still open it
    assert secrets_for("postgresql+psycopg://x/y", store, [SigningSecret(NEW)], NOW)[1:] == [
        SigningSecret(LEGACY, NOW + LEGACY_GRACE)]


# --- `journeyman worker --public-url` ---------------------------------------------------

MAILER = """
journey: mailer
version: 1
entry: {event: Signed Up}
steps:
  - id: hello
    send: {channel: email, template: hello}
"""


@pytest.mark.slow
def test_a_worker_renders_links_to_the_public_url_signed_with_the_shared_secret(
        tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"mailer": MAILER}, {"hello": stub_email("hello")})
    url, sink = f"sqlite:///{tmp_path / 'jm.db'}", tmp_path / "sends.jsonl"
    secret_file = tmp_path / "jm.secret"
    secret_file.write_text(f"{NEW}\n")
    secret_file.chmod(0o600)
    store = SqlStore(url, create=True)
    store.accept_events([{"type": "identify", "userId": "ana", "messageId": "m1",
                          "traits": {"email": "ana@example.com"},
                          "timestamp": NOW.isoformat()},
                         {"type": "track", "userId": "ana", "event": "Signed Up",
                          "messageId": "m2", "properties": {},
                          "timestamp": NOW.isoformat()}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYMAN_")}
    env["JOURNEYMAN_SECRET_FILE"] = str(secret_file)
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine", "worker", "--journeys", str(folder), "--db", url,
             "--sends", f"file:{sink}", "--tick", "0.05",
             "--public-url", "https://news.shop.example/jm"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not (sink.exists() and sink.read_text().strip()):
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no send from the worker\n{log.read_text()}"
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(15)
        store.close()
    [line] = sink.read_text().splitlines()
    link = json.loads(line)["rendered"]["headers"]["List-Unsubscribe"].strip("<>")
    assert link.startswith("https://news.shop.example/jm/u/")
    api_links = UnsubscribeLinks(NEW, "https://news.shop.example/jm")  # what serve verifies with
    assert api_links.verify(link.rsplit("/u/", 1)[1]) == (ANA, "email")
    assert not (tmp_path / "jm.db.secret").exists()  # configured: nothing generated


def test_worker_help_lists_public_url_and_secret_file(tmp_path: Path) -> None:
    done = journeyman("worker", "--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "--public-url" in done.stdout
    assert "--secret-file" in done.stdout
