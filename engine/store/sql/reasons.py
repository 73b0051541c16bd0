r"""A decision's reason without what in it is one person's own, so that the journey
page counts a step's decisions one row per reason, not one row per person: the time a
wait ends ("until 2026-03-02T10:07:00Z", "for Email Clicked until ..."), the values a
branch read ("case 1 -> vip_offer (profile.traits.vip true)", "else -> plain (case 1:
...)"), the time a wait on a timestamp found already past ("no wait: 2026-03-02T10:00:00Z
is already past").

The database groups by it (engine/store/sql/analytics.py), so a journey with a million
waits reads a row per step and reason, not a row per distinct reason: on PostgreSQL
with the same patterns in `regexp_replace`, on SQLite with `own_part_removed` itself,
registered on every connection as `jm_reason(what, reason)` (engine/store/sql/db.py).
The patterns are one text for both regex engines: ASCII classes only (their \S differ
beyond ASCII), anchored with `\A` and `\Z` (Python's `$` also matches before a final
newline), `.` across lines (PostgreSQL's default, Python's with DOTALL) where `[^\n]`
does not say otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import case, func, literal

_WORD = r"[^ \t\n\r\f\v]+"  # no whitespace
_UNTIL = r"\Auntil " + _WORD + r"\Z"
_FOR_UNTIL = r"\Afor ([^\n]+) until " + _WORD + r"\Z"
_PAST = r"\Ano wait: " + _WORD + r" is already past\Z"
_VALUES = r"\A((?:case [0-9]+|else)(?: -> " + _WORD + r")?) \(.*\)\Z"

_OWN_UNTIL = re.compile(_UNTIL, re.DOTALL)
_OWN_FOR_UNTIL = re.compile(_FOR_UNTIL, re.DOTALL)
_OWN_PAST = re.compile(_PAST, re.DOTALL)
_OWN_VALUES = re.compile(_VALUES, re.DOTALL)

UNTIL_OVER = "until the wait is over"
UNTIL_TIMEOUT = ", until the timeout"
ALREADY_PAST = "no wait: the time was already past"


def own_part_removed(what: str, reason: str) -> str:
    """The reason without what is the person's own (the reason itself when nothing in
    it is); applied to its own result it changes nothing."""
    if what == "waiting" and _OWN_UNTIL.match(reason):
        return UNTIL_OVER
    if what == "waiting" and (wait := _OWN_FOR_UNTIL.match(reason)):
        return f"for {wait[1]}{UNTIL_TIMEOUT}"
    if what == "branch" and (found := _OWN_VALUES.match(reason)):
        return found[1]
    if what == "resumed" and _OWN_PAST.match(reason):
        return ALREADY_PAST
    return reason


def reason_key(what: Any, reason: Any, *, pg: bool) -> Any:
    """`own_part_removed(what, reason)` as a SQL expression on the two columns."""
    if not pg:
        return func.jm_reason(what, reason)
    return case(
        ((what == "waiting") & reason.op("~")(literal(_UNTIL)), literal(UNTIL_OVER)),
        (what == "waiting", func.regexp_replace(reason, literal(_FOR_UNTIL),
                                                literal(r"for \1" + UNTIL_TIMEOUT))),
        (what == "branch", func.regexp_replace(reason, literal(_VALUES), literal(r"\1"))),
        ((what == "resumed") & reason.op("~")(literal(_PAST)), literal(ALREADY_PAST)),
        else_=reason)


def sqlite_reason(what: str | None, reason: str | None) -> str | None:
    """`jm_reason(what, reason)` on SQLite connections."""
    return reason if what is None or reason is None else own_part_removed(what, reason)


__all__ = ["own_part_removed", "reason_key", "sqlite_reason"]
