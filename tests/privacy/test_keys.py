"""Scoped keys and quotas (issue 13 §3), through the real HTTP API on a real store: a
public key tracks and identifies but cannot alias, set consent or set e-mail/phone; a
key over its rate gets 429 with Retry-After; phone numbers are E.164."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine.ports import PUBLIC_SCOPES
from engine.testing import InMemoryEngine
from tests.engine.helpers import write_folder
from tests.privacy.conftest import Api


def queued(api: Api) -> int:
    return sum(api.store.inbox_counts().values())


def test_a_public_key_tracks_and_identifies_but_cannot_alias_or_set_consent_or_email(
        sql_api: Api) -> None:
    sql_api.keys["web"] = sql_api.store.create_key("web", scopes=PUBLIC_SCOPES)
    ok = sql_api.post("/v1/identify", {"anonymousId": "a-1", "traits": {"plan": "pro"}}, "web")
    assert ok.status_code == 200, ok.text
    assert sql_api.post("/v1/track", {"anonymousId": "a-1", "event": "Viewed"},
                        "web").status_code == 200
    before = queued(sql_api)
    refused = [
        ("/v1/alias", {"userId": "alice", "previousId": "a-1"}, "'alias' scope"),
        ("/v1/identify", {"userId": "alice", "traits": {"email": "x@example.com"}},
         "may not set email"),
        ("/v1/identify", {"userId": "alice", "traits": {"phone": "+34600000009"}},
         "may not set phone"),
        ("/v1/identify", {"userId": "alice", "context": {"traits": {"consent": {"email": True}}}},
         "may not set consent"),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "a", "event": "Ok"},
                                 {"type": "alias", "userId": "b", "previousId": "c"}]},
         "batch[1]"),
    ]
    for path, body, reason in refused:
        answer = sql_api.post(path, body, "web")
        assert answer.status_code == 403, (path, answer.text)
        assert reason in answer.json()["reason"]
    assert queued(sql_api) == before  # nothing of a refused request is stored
    # The server key (every scope but admin, as before scopes existed) may do all that.
    for path, body, _ in refused:
        assert sql_api.post(path, body).status_code == 200, path


def test_a_key_over_its_rate_gets_429_with_retry_after(sql_api: Api) -> None:
    sql_api.keys["slow"] = sql_api.store.create_key("slow", rate=2)  # 20 in a burst
    too_big = {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 21}
    answer = sql_api.post("/v1/batch", too_big, "slow")
    assert answer.status_code == 429
    assert "split it" in answer.json()["reason"]
    batch = {"batch": [{"type": "track", "userId": f"u{i}", "event": "E"} for i in range(20)]}
    assert sql_api.post("/v1/batch", batch, "slow").status_code == 200
    over = sql_api.post("/v1/batch", batch, "slow")  # refilled by < 20 in under 10 s
    assert over.status_code == 429
    assert int(over.headers["Retry-After"]) >= 1
    assert sql_api.post("/v1/track", {"userId": "u", "event": "E"}).status_code == 200  # others go on


def test_phone_numbers_must_be_e164(sql_api: Api) -> None:
    for bad in ("600 000 000", "+34 600 000 000", "0034600000000", "+0123456789", 34600000000):
        answer = sql_api.post("/v1/identify", {"userId": "u", "traits": {"phone": bad}})
        assert answer.status_code == 400, bad
        assert "E.164" in answer.json()["reason"]
    good = sql_api.post("/v1/identify", {"userId": "u", "traits": {"phone": "+34600000000"}})
    assert good.status_code == 200


def test_sms_goes_only_to_allowed_country_codes(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "j", {"texts": """
journey: texts
version: 1
entry: {event: Signed Up}
steps:
  - id: text
    send: {channel: sms, template: text}
"""}, {"text": "channel: sms\nbody: hi\n"}, policy="consent_required: []\n"
                                                     "sms_country_codes: ['34']\n")
    eng = InMemoryEngine.from_folder(folder, start=datetime(2026, 3, 2, 12, tzinfo=UTC))
    eng.identify("es", {"phone": "+34600000001"})
    eng.identify("far", {"phone": "+882123456789"})
    eng.track("es", "Signed Up")
    eng.track("far", "Signed Up")
    eng.advance("1m")
    assert [m.profile for m in eng.sent] == ["es"]
    assert [(s.profile, s.reason) for s in eng.skipped] == [("far", "sms_country_not_allowed")]


def test_keys_create_public_and_scopes_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'jm.db'}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "keys", *args, "--db", db],
                              capture_output=True, text=True, check=False)

    public = run("create", "web", "--public")
    assert public.returncode == 0, public.stderr
    assert public.stdout.strip().splitlines()[-1].startswith("jm_")
    bad = run("create", "bad", "--scopes", "track,everything")
    assert bad.returncode == 2
    assert "unknown scope(s) everything" in bad.stderr
    from engine.store import SqlStore
    store = SqlStore(db)
    try:
        key = public.stdout.strip().splitlines()[-1]
        info = store.check_key(key)
        assert info is not None
        assert info.scopes == PUBLIC_SCOPES
        assert info.public
        assert info.events_per_second == 50
        store.create_key("ingest", scopes=["track", "identify", "consent"])
        ingest = {k.name: k for k in store.list_keys()}["ingest"]
        assert ingest.scopes == {"track", "identify", "consent"}
        assert not ingest.admin
    finally:
        store.close()
