"""A forgotten person's identifiers in other people's rows (docs/privacy.md, "What
forget does to other people's rows"): both stores' `forget_person` replace them there
with `FORGOTTEN`, after deleting the person's own rows.

Another person's rows can name the person: the referral journeys' reward event to the
referrer carries the friend's profile id (`properties.friend_id`, and the engine's own
`context.from_profile`), and the friend's sign-up names the referrer
(`properties.referrer_id`). Such rows stay (they are the other person's), their
mentions of the forgotten person go:

- a string (a JSON value, a JSON object's key, a text column) equal to an identifier,
  case aside, becomes `FORGOTTEN`;
- inside a longer string (free text: a rendered message, an error, a bounce report, a
  link), an identifier of `INSIDE_MIN` characters or more that stands as a whole word
  (no letter, digit or `_` right before or after it) is replaced by `FORGOTTEN`.
  Shorter identifiers are replaced only as whole values: `a1` inside another person's
  text is most likely not them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

FORGOTTEN = "[forgotten]"
INSIDE_MIN = 5

# Where other people's rows hold JSON documents or free text, by table: (JSON columns,
# text columns). Keys, ids, statuses and timestamps are not searched: they name no one
# (an enrollment's id is a hash, not an identifier).
OTHERS_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "profiles": (("traits", "computed"), ()),
    "events": (("body",), ()),
    "inbox": (("event",), ("last_error",)),
    "enrollments": (("data", "visits", "variants", "entry_event", "trigger_event"), ()),
    "outbox": (("rendered",), ("last_error",)),
    "decisions": (("details",), ("reason",)),
    "failures": (("payload",), ("error", "stack")),
    "engagements": ((), ("url", "reason")),
    "suppressions": (("details",), ()),
}


class Scrubber:
    """Replaces the given identifiers in JSON values and text (see the module doc)."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        values = {str(v).strip() for v in identifiers if v is not None and str(v).strip()}
        self.identifiers = sorted(values)
        self._whole = {v.casefold() for v in values}
        inside = sorted((v for v in values if len(v) >= INSIDE_MIN), key=len, reverse=True)
        self._inside = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, inside)) + r")(?!\w)",
                                   re.IGNORECASE) if inside else None)

    def __bool__(self) -> bool:
        return bool(self.identifiers)

    def search_terms(self) -> list[str]:
        """What a row's text contains if it names an identifier: each one as it is and
        as JSON writes it inside a string (escaped quotes, `\\uXXXX`)."""
        terms = set(self.identifiers)
        for value in self.identifiers:
            terms.add(json.dumps(value)[1:-1])
            terms.add(json.dumps(value, ensure_ascii=False)[1:-1])
        return sorted(terms)

    def text(self, value: str) -> str:
        if value.strip().casefold() in self._whole:
            return FORGOTTEN
        if self._inside is None:
            return value
        return self._inside.sub(FORGOTTEN, value)

    def value(self, value: Any) -> Any:
        """A JSON document with every identifier replaced (a new one; the same shape)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {(self.text(k) if isinstance(k, str) else k): self.value(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        return value


def still_someone_elses(identifiers: Iterable[str], others: Iterable[Any]) -> set[str]:
    """The identifiers that are also another person's own (`others`: the values that
    still identify someone after the forgotten person's rows went: a family's shared
    e-mail address on another profile, say). They stay: they are that person's too."""
    theirs = {str(v).strip().casefold() for v in others if v is not None}
    return {v for v in identifiers if v.strip().casefold() in theirs}
