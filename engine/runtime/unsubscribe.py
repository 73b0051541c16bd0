"""Signed one-click unsubscribe links (RFC 8058).

A link names a profile and a channel and carries an HMAC-SHA256 signature, so it needs
no login and cannot be forged or pointed at someone else. Every email gets the link in
its template scope (`unsubscribe_url`) and in the `List-Unsubscribe` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click` headers. `GET` on the link shows a
page with a button; `POST` (what mail clients send for one-click) unsubscribes at once:
the API queues an identify with `consent.<channel>: false`, so the change flows through
the worker in order, like any other event (engine/api/).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ONE_CLICK = "List-Unsubscribe=One-Click"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeLinks:
    def __init__(self, secret: str, base_url: str) -> None:
        if not secret:
            raise ValueError("unsubscribe links need a secret")
        self._key = hashlib.sha256(b"journeyman-unsubscribe:" + secret.encode()).digest()
        self.base_url = base_url.rstrip("/")

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:24])

    def token(self, profile_id: str, channel: str) -> str:
        payload = _b64(f"{channel}\n{profile_id}".encode())
        return f"{payload}.{self._sign(payload)}"

    def url(self, profile_id: str, channel: str) -> str:
        return f"{self.base_url}/u/{self.token(profile_id, channel)}"

    def headers(self, profile_id: str, channel: str) -> dict[str, str]:
        return {"List-Unsubscribe": f"<{self.url(profile_id, channel)}>",
                "List-Unsubscribe-Post": ONE_CLICK}

    def verify(self, token: str) -> tuple[str, str] | None:
        """(profile_id, channel) for a genuine token, else None."""
        payload, _, signature = token.partition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            channel, _, profile_id = _unb64(payload).decode().partition("\n")
        except (ValueError, UnicodeDecodeError):
            return None
        return (profile_id, channel) if profile_id and channel else None
