"""Error text that may be logged and kept (in `failures`, in decisions) without a
person's data in it.

SQLAlchemy is told to leave bound values out of its messages (engine/store/sql/db.py,
`hide_parameters`), but a database server may quote values itself: PostgreSQL's
`DETAIL:  Key (kind, value)=(email, ana@example.com) already exists.` This drops such
lines from an exception's text and its stack, whatever raised it.
"""

from __future__ import annotations

import re
import traceback

# Lines in which a database server quotes row values: PostgreSQL's DETAIL (unique and
# foreign-key violations name the key's values), and a failing row's dump.
_VALUE_LINES = re.compile(r"^\s*(DETAIL:|Failing row contains).*$", re.MULTILINE)


def without_values(text: str) -> str:
    return _VALUE_LINES.sub("DETAIL: [values not shown]", text)


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """`Type: message`, with value-quoting lines removed, at most `limit` characters."""
    return without_values(f"{type(exc).__name__}: {exc}")[:limit]


def stack_text(exc: BaseException, limit: int = 8000) -> str:
    return without_values("".join(traceback.format_exception(exc)))[-limit:]


def logged_text(exc: BaseException, limit: int = 2000) -> str:
    """What a log line may say of `exc`: `error_text`, or for an error that says what a
    log may hold apart from its message (a `logged` text: journeys/errors.py
    TemplateRenderError, whose Jinja2 words can quote a trait's value), that. The
    message itself is kept with the failure (the inbox's last error, `failures`)."""
    logged = getattr(exc, "logged", None)
    if not isinstance(logged, str):
        return error_text(exc, limit)
    return without_values(f"{type(exc).__name__}: {logged}")[:limit]
