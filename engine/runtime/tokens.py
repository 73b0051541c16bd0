"""URL-safe base64 text without padding, for the signed tokens in links and cookies
(unsubscribe links, tracked links, dashboard sessions): one helper, where each of the
three had its own copy."""

from __future__ import annotations

import base64


def b64(data: bytes) -> str:
    """`data` as URL-safe base64 text without the `=` padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """The bytes of `b64`'s text (binascii.Error, a ValueError, if it is not)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
