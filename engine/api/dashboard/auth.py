"""Who is looking at the dashboard: passwords (scrypt, salted), the session cookie
(signed with HMAC-SHA256, HttpOnly, SameSite=Lax), CSRF tokens and roles.

A session cookie is `<payload>.<mac>`, the payload `{"u": name, "r": role, "s": sid,
"t": issued}` in URL-safe base64. It is valid for `SESSION_SECONDS`; the role is read
again from the store on every request, so removing or demoting a user takes effect at
once. The CSRF token of a session is an HMAC of its `sid`: every form that changes
something carries it, and a POST without the right one is refused (403).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from dataclasses import dataclass

from engine.runtime.tokens import b64, unb64

ROLES = ("viewer", "editor")
SESSION_COOKIE = "jm_session"
SESSION_SECONDS = 12 * 3600
# scrypt's cost: 2**14 x 8 x 1 takes 16 MiB and tens of milliseconds, OWASP's minimum.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    """`scrypt$n$r$p$salt$hash`, hex, with a random 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` result (in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(digest) // 2, maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is making a request: a user (with a session id for CSRF) or, with
    `--dashboard-open`, an anonymous local viewer (`sid` empty: no forms)."""

    name: str
    role: str
    sid: str = ""

    @property
    def can_edit(self) -> bool:
        return self.role == "editor" and bool(self.sid)


class Sessions:
    """Sign and read session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: str) -> None:
        # A key of its own, derived from the service's secret (never the secret itself).
        self._key = hmac.new(secret.encode(), b"journeyman dashboard sessions",
                             hashlib.sha256).digest()

    def _mac(self, data: bytes) -> str:
        return b64(hmac.new(self._key, data, hashlib.sha256).digest())

    def issue(self, name: str, role: str, now: float) -> str:
        payload = b64(json.dumps({"u": name, "r": role, "s": secrets.token_urlsafe(16),
                                   "t": int(now)}).encode())
        return f"{payload}.{self._mac(payload.encode())}"

    def read(self, cookie: str | None, now: float) -> tuple[str, str] | None:
        """(user name, session id) of a valid, unexpired cookie; None otherwise."""
        # compare_digest refuses non-ASCII text (TypeError): such a cookie is no session
        if not cookie or cookie.count(".") != 1 or not cookie.isascii():
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        try:
            data = json.loads(unb64(payload))
            name, sid, issued = str(data["u"]), str(data["s"]), int(data["t"])
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= now - issued < SESSION_SECONDS:
            return None
        return name, sid

    def csrf_token(self, sid: str) -> str:
        return self._mac(b"csrf:" + sid.encode())

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        return bool(sid) and token is not None and token.isascii() and hmac.compare_digest(
            token, self.csrf_token(sid))


def is_loopback(host: str | None) -> bool:
    """The client is on this machine (127.0.0.0/8 or ::1); `--dashboard-open` needs it."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
