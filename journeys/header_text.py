"""Text that goes into an email header: one line, whatever a profile's trait holds.

A header value may not hold a line break (Python's email package refuses one, so a
`first_name` of "X\\r\\nBcc: evil@x.com" in a subject failed the send for good; a
writer that accepted it would let the trait add headers). Every run of control
characters (CR, LF, tab, the rest of C0 and C1, DEL) and of Unicode line and paragraph
separators becomes one space, where the message is rendered (so `journeyman preview`
shows what is sent) and again where the email is built.
"""

from __future__ import annotations

import re

_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """`text` with each run of control characters or line separators as one space."""
    return _BREAKS.sub(" ", text)


__all__ = ["one_line"]
