"""Signed one-click unsubscribe links (RFC 8058).

A link names a person and a channel and carries an HMAC-SHA256 signature, so it needs no
login and cannot be forged or pointed at someone else. Every send gets the link in its
template scope (`unsubscribe_url`: SMS and push bodies can carry it too); email also
gets it in the `List-Unsubscribe` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
headers. `GET` on the link shows a page with a button; `POST` (the button, or what mail
clients send for one-click) unsubscribes at once (engine/api/unsubscribe.py).

The link names the *person*, not the profile row the message went to: their `userId`
when the profile has one, else their anonymous id (`Person`). The API resolves it through
the store's identities when the link is clicked, so a link sent to an anonymous profile
that was later merged into `u-42` unsubscribes `u-42`.

A send whose explicit `to:` is not its profile's own address (Rozsa's referral invitation
to her friend's address) gets a link that names the *address* (`ADDRESS`): its SHA-256
in the form suppressions keep (`engine.values.forgotten_address`) and the message's send
key. It carries no one's id and not the address itself; clicked, it suppresses that
address and changes no one's consent (engine/runtime/rendering.py makes it).

Signing keys rotate: `UnsubscribeLinks` takes several secrets; the first signs, every
one verifies until its `until` (engine/runtime/signing.py reads them from the
configuration). Tokens from earlier versions (`channel` + profile id, no version tag)
still verify; they name a profile id, which the API resolves the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.runtime.tokens import b64, unb64
from engine.values import PROFILE_ID_KINDS

ONE_CLICK = "List-Unsubscribe=One-Click"
USER, ANONYMOUS, PROFILE = PROFILE_ID_KINDS  # PROFILE: a bare profile id
ADDRESS = "address"  # an address a send went to that is not its profile's own
_KIND_CODES = {USER: "u", ANONYMOUS: "a", ADDRESS: "h"}  # short: an SMS costs characters
_CODE_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_VERSION = "v2"


@dataclass(frozen=True, slots=True)
class Person:
    """Whom a link unsubscribes: an identity (`user_id` or `anonymous_id`) and its value,
    or `profile` and a profile id (links made before links named people), or `address`
    and an address's `forgotten_address` hash, with `message`, the send key of the
    message the link came in (the opt-out is counted against it)."""

    kind: str
    value: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """One unsubscribe-signing secret; `until` (aware) ends its use for verifying."""

    value: str
    until: datetime | None = None

    def valid_at(self, when: datetime | None) -> bool:
        return self.until is None or when is None or when < self.until


def _key(secret: str) -> bytes:
    # The same derivation as before rotation existed, so links in mail already sent verify.
    return hashlib.sha256(b"journeyman-unsubscribe:" + secret.encode()).digest()


class UnsubscribeLinks:
    def __init__(self, secrets: str | Sequence[SigningSecret], base_url: str) -> None:
        listed = [SigningSecret(secrets)] if isinstance(secrets, str) else list(secrets)
        if not listed or not all(s.value for s in listed):
            raise ValueError("unsubscribe links need a secret")
        self._keys = [(_key(s.value), s) for s in listed]
        self.secrets: tuple[SigningSecret, ...] = tuple(listed)  # tracking links sign too
        self.base_url = base_url.rstrip("/")

    @staticmethod
    def _sign(key: bytes, payload: str) -> str:
        return b64(hmac.new(key, payload.encode(), hashlib.sha256).digest()[:24])

    def token(self, person: Person, channel: str) -> str:
        if person.kind in _KIND_CODES:
            text = f"{_VERSION}\n{channel}\n{_KIND_CODES[person.kind]}\n{person.value}"
            if person.kind == ADDRESS:
                text += f"\n{person.message}"
        else:  # a bare profile id: the format links had before they named people
            text = f"{channel}\n{person.value}"
        payload = b64(text.encode())
        return f"{payload}.{self._sign(self._keys[0][0], payload)}"

    def url(self, person: Person, channel: str) -> str:
        return f"{self.base_url}/u/{self.token(person, channel)}"

    def verify(self, token: str, now: datetime | None = None) -> tuple[Person, str] | None:
        """(person, channel) for a genuine token signed by a secret still valid `now`
        (every secret, when `now` is None), else None."""
        payload, _, signature = token.partition(".")
        if not payload or not any(
                secret.valid_at(now) and hmac.compare_digest(signature, self._sign(key, payload))
                for key, secret in self._keys):
            return None
        try:
            parts = unb64(payload).decode().split("\n")
        except (ValueError, UnicodeDecodeError):
            return None
        if parts[0] == _VERSION:
            kind = _CODE_KINDS.get(parts[2]) if len(parts) > 2 else None
            if kind is None or len(parts) != (5 if kind == ADDRESS else 4):
                return None
            channel, person = parts[1], Person(kind, *parts[3:])
        elif len(parts) >= 2:  # an earlier version's token
            channel, person = parts[0], Person(PROFILE, "\n".join(parts[1:]))
        else:
            return None
        return (person, channel) if person.value and channel else None


def one_click_headers(url: str) -> dict[str, str]:
    """RFC 8058's headers for an unsubscribe link (`UnsubscribeLinks.url`)."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}
