"""Where the unsubscribe-signing secrets come from (never from a default in code).

In order:

1. configured: `--secret-file PATH` (or `JOURNEYMAN_SECRET_FILE`), or the secrets
   themselves in `JOURNEYMAN_SECRET` -- one of the two, not both;
2. else, for a SQLite database file: `<database file>.secret` beside it, made on the
   first start (random, mode 0600) and read on every later one. Every process on a
   SQLite database runs on that machine, so they all read the same file;
3. else (PostgreSQL, where processes run on several machines and a file on one of them
   would sign links the others reject): no start, with a message saying how to make one.

Why not a generated secret in the database (what earlier versions did): whoever can read
the database, or a dump of it, could then forge unsubscribe links for everyone. A hash
cannot sign, and encrypting it would need a key from outside the database anyway; the
file beside the database *is* that key, without the detour.

The format (a file, or the variable): one secret per line (or comma-separated), the
first signs new links, every one verifies old links, an older one until a date:

    # newest first
    9a8f...new-secret...
    3c1d...old-secret... until 2026-09-01

`until DATE` stops it at 00:00 UTC of that date; a full ISO time with an offset is exact.
A secret is at least 16 characters, without spaces or commas.

Earlier versions kept a generated secret in clear in the `settings` table; links in mail
already sent are signed with it. `take_legacy_secret` moves it out: into the new file
(case 2: the same secret, nothing changes for anyone), or, when secrets are configured,
sealed (AES-GCM) under a key derived from the configured signing secret, verifying old
links for `LEGACY_GRACE` after the upgrade; it is re-sealed under the newest secret after
a rotation. Nowhere is it kept in clear.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from engine.ports import KeyStore
from engine.runtime.unsubscribe import SigningSecret
from rules.errors import JourneymanError

log = logging.getLogger("journeyman.signing")

SECRET_ENV, SECRET_FILE_ENV = "JOURNEYMAN_SECRET", "JOURNEYMAN_SECRET_FILE"
MIN_LENGTH = 16
LEGACY_SETTING = "secret:unsubscribe"  # earlier versions: the secret in clear
SEALED_SETTING = "sealed:unsubscribe"  # this version: that secret, sealed
LEGACY_GRACE = timedelta(days=365)
MAKE_ONE = ("make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))' "
            "> journeyman.secret && chmod 600 journeyman.secret; then start every process "
            "with --secret-file journeyman.secret (or JOURNEYMAN_SECRET_FILE)")


class SecretConfigError(JourneymanError):
    """The unsubscribe-signing secrets are missing or malformed."""


def parse_secrets(text: str, source: str) -> list[SigningSecret]:
    """The secrets in `text` (a file's content or the variable's value), newest first."""
    found: list[SigningSecret] = []
    for raw in re.split(r"[\n,]", text):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) == 3 and words[1] == "until":
            found.append(SigningSecret(words[0], _until(words[2], source)))
        elif len(words) == 1:
            found.append(SigningSecret(words[0]))
        else:
            raise SecretConfigError(f"{source}: expected 'SECRET' or 'SECRET until DATE', "
                                    f"got {len(words)} words on one line")
    if not found:
        raise SecretConfigError(f"{source}: holds no secret; {MAKE_ONE}")
    if found[0].until is not None:
        raise SecretConfigError(f"{source}: the first secret signs new links and cannot "
                                "have an 'until'; put the newest secret first")
    for secret in found:
        if len(secret.value) < MIN_LENGTH:
            raise SecretConfigError(f"{source}: a secret needs at least {MIN_LENGTH} "
                                    f"characters (one has {len(secret.value)}); {MAKE_ONE}")
    return found


def _until(text: str, source: str) -> datetime:
    try:
        if "T" not in text:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SecretConfigError(f"{source}: 'until {text}' is not a date (YYYY-MM-DD) or an "
                                "ISO time with an offset") from None
    if when.tzinfo is None:
        raise SecretConfigError(f"{source}: 'until {text}' needs an offset (e.g. +00:00)")
    return when.astimezone(UTC)


def configured_secrets(env: Mapping[str, str],
                       secret_file: Path | None = None) -> list[SigningSecret] | None:
    """The secrets the operator configured (`secret_file` is `--secret-file`), or None."""
    path = secret_file or (Path(env[SECRET_FILE_ENV]) if env.get(SECRET_FILE_ENV) else None)
    inline = env.get(SECRET_ENV) or None
    if path is not None and inline is not None:
        raise SecretConfigError(f"both {SECRET_ENV} and a secret file are set: give the "
                                "secrets one way only")
    if inline is not None:
        return parse_secrets(inline, SECRET_ENV)
    if path is None:
        return None
    return parse_secrets(_read(path), str(path))


def _read(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise SecretConfigError(f"cannot read the secret file {path}: "
                                f"{exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the secret file %s can be read by other users (mode %o); "
                    "chmod 600 it", path, stat.S_IMODE(mode))
    return text


def local_secret_file(db_url: str) -> Path | None:
    """Where the generated secret of a SQLite database file lives (None: not a file)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).with_name(Path(url.database).name + ".secret")


def secrets_for(db_url: str, store: KeyStore, configured: Sequence[SigningSecret] | None,
                now: datetime) -> list[SigningSecret]:
    """The secrets a process on `db_url` signs and verifies with: the configured ones,
    else the generated file beside a SQLite database (else SecretConfigError); plus an
    earlier version's database secret, moved out of the database (see the docstring)."""
    if configured:
        chosen = list(configured)
    else:
        path = local_secret_file(db_url)
        if path is None and make_url(db_url).get_backend_name() == "sqlite":
            chosen = [SigningSecret(secrets.token_urlsafe(32))]  # in-memory: dies with it
        elif path is None:
            raise SecretConfigError("no secret to sign unsubscribe links with: set "
                                    f"{SECRET_ENV} or --secret-file ({SECRET_FILE_ENV}); "
                                    "every process on this database needs the same one. "
                                    + MAKE_ONE[0].upper() + MAKE_ONE[1:])
        else:
            legacy = store.setting(LEGACY_SETTING)
            chosen = parse_secrets(_create_or_read(path, legacy), str(path))
    return chosen + take_legacy_secret(store, chosen, now)


def _create_or_read(path: Path, initial: str | None) -> str:
    """The file's content, creating it first (0600, atomically: two processes starting
    at once end up with the same secret) with `initial` or a new random secret."""
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write("# journeyman's unsubscribe-signing secret (newest first; see "
                          "docs/channels.md)\n" + (initial or secrets.token_urlsafe(32)) + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: use its
                os.link(tmp, path)
        finally:
            tmp.unlink()
    return _read(path)


# --- the secret earlier versions kept in the database ----------------------------------


def take_legacy_secret(store: KeyStore, current: Sequence[SigningSecret],
                       now: datetime) -> list[SigningSecret]:
    """Move an earlier version's secret out of the store (sealed, or gone when `current`
    holds it already), and return it as a verify-only secret while its grace lasts."""
    values = {s.value for s in current}
    legacy = store.setting(LEGACY_SETTING)
    if legacy is not None:
        if legacy not in values:
            store.put_setting(SEALED_SETTING, _seal(legacy, now + LEGACY_GRACE, current[0]))
        store.put_setting(LEGACY_SETTING, None)
    sealed = store.setting(SEALED_SETTING)
    if sealed is None:
        return []
    opened = _unseal(sealed, current)
    if opened is None:
        log.warning("the unsubscribe secret of an earlier version is sealed under a secret "
                    "this process does not have: links signed with it before the upgrade "
                    "are not accepted here")
        return []
    secret, opener = opened
    if not secret.valid_at(now) or secret.value in values:
        store.put_setting(SEALED_SETTING, None)
        return []
    if opener != current[0]:  # rotated since: seal it under the newest secret
        assert secret.until is not None
        store.put_setting(SEALED_SETTING, _seal(secret.value, secret.until, current[0]))
    return [secret]


def _seal_key(secret: SigningSecret) -> AESGCM:
    return AESGCM(hashlib.sha256(b"journeyman-seal:" + secret.value.encode()).digest())


def _seal(value: str, until: datetime, under: SigningSecret) -> str:
    nonce, stamp = secrets.token_bytes(12), until.astimezone(UTC).isoformat()
    sealed = _seal_key(under).encrypt(nonce, value.encode(), stamp.encode())
    return f"v1 {stamp} {base64.urlsafe_b64encode(nonce + sealed).decode()}"


def _unseal(text: str, keys: Sequence[SigningSecret]) -> tuple[SigningSecret, SigningSecret] | None:
    try:
        version, stamp, blob = text.split(" ")
        raw, until = base64.urlsafe_b64decode(blob), datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if version != "v1":
        return None
    for key in keys:
        with contextlib.suppress(InvalidTag):
            value = _seal_key(key).decrypt(raw[:12], raw[12:], stamp.encode()).decode()
            return SigningSecret(value, until), key
    return None
