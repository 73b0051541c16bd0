"""A forgotten person's identifiers in other people's rows (docs/privacy.md, "What
forget does to other people's rows"): both stores' `forget_person` replace them there
with `FORGOTTEN`, after deleting the person's own rows.

Another person's rows can name the person: the referral journeys' reward event to the
referrer carries the friend's profile id (`properties.friend_id`, and the engine's own
`context.from_profile`), and the friend's sign-up names the referrer
(`properties.referrer_id`). Such rows stay (they are the other person's), their
mentions of the forgotten person go:

What is replaced depends on how much an identifier says on its own. A *distinctive* one
(an e-mail address, a phone number, 8 characters or more: a UUID, a `friend-9x`...
`DISTINCT_MIN`; or a number of 7 digits or more) is the person wherever it stands:

- a JSON string value or key equal to it, case aside, becomes `FORGOTTEN`;
- inside a longer string (free text: a rendered message, an error, a bounce report, a
  link) it is replaced where it stands as a whole word.

A *plain* one (`42`, `alice`: short, or a number of fewer than 7 digits) is also an
order number, a zip code, a plan, a word: replaced only as the whole value of a key that
names a person
(`REFERENCE_KEYS`: `userId`, `referrer_id`, `friend_id`, the engine's `from_profile`,
...), never inside text nor under other keys. A reviewer's forget of user `42` turned
another customer's `zip: "42"` and `order_id: "42"` into `[forgotten]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from engine.values import FORGOTTEN

DISTINCT_MIN = 8  # characters (not all digits) that make an identifier the person's alone
PHONE_DIGITS_MIN = 7  # digits alone: a phone number's shortest local form
# Keys (case aside) whose value names a person: where a plain identifier is replaced
REFERENCE_KEYS = frozenset({
    "userid", "user_id", "anonymousid", "anonymous_id", "previousid", "previous_id",
    "profile_id", "profileid", "from_profile", "user", "profile", "to",
    "referrer_id", "referrerid", "referrer", "referred_by", "referredby", "invited_by",
    "invitedby", "friend_id", "friendid", "friend", "friend_ids", "friendids"})


def distinctive(identifier: str) -> bool:
    """An e-mail address, a phone number (+ and digits), or DISTINCT_MIN characters or
    more: the person, wherever it stands. All digits count from PHONE_DIGITS_MIN digits
    (a phone number written without `+`, a long numeric id: a reviewer found
    `5551234567` left in other people's rows); shorter numbers (`42`) are plain."""
    text = identifier.strip()
    if "@" in text or (text.startswith("+") and text[1:].isdigit()):
        return True
    if text.isdigit():
        return len(text) >= PHONE_DIGITS_MIN
    return len(text) >= DISTINCT_MIN


# Where other people's rows hold JSON documents or free text, by table: (JSON columns,
# text columns). Keys, ids, statuses and timestamps are not searched: they name no one
# (an enrollment's id is a hash, not an identifier).
OTHERS_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "profiles": (("traits", "computed"), ()),
    "events": (("body",), ()),
    "inbox": (("event",), ("last_error",)),
    "enrollments": (("data", "visits", "variants", "entry_event", "trigger_event"), ()),
    "outbox": (("rendered",), ("last_error", "to")),  # `to`: a send to the person
    "decisions": (("details",), ("reason",)),
    "failures": (("payload",), ("error", "stack")),
    "engagements": ((), ("url", "reason")),
    "suppressions": (("details",), ()),
}


def url_forms(identifier: str) -> set[str]:
    """How a URL writes `identifier` when that differs from the text: percent-encoded
    (`quote`, `quote_plus`), as a template's `| urlencode` or a form does."""
    return {form for form in (quote(identifier, safe=""), quote_plus(identifier, safe=""))
            if form != identifier}


class Scrubber:
    """Replaces the given identifiers in JSON values and text (see the module doc)."""

    def __init__(self, identifiers: Iterable[str]) -> None:
        values = {str(v).strip() for v in identifiers if v is not None and str(v).strip()}
        self.identifiers = sorted(values)
        strong = [v for v in values if distinctive(v)]
        self._strong = {v.casefold() for v in strong}
        self._plain = {v.casefold() for v in values if not distinctive(v)}
        # also as a URL writes it (`frieda.q%40example.net`, `%2B34...`): in a link's
        # query, a tracked click's URL, a rendered href
        inside = sorted({*strong, *(form for v in strong for form in url_forms(v))},
                        key=len, reverse=True)
        self._inside = (re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, inside)) + r")(?!\w)",
                                   re.IGNORECASE) if inside else None)

    def __bool__(self) -> bool:
        return bool(self.identifiers)

    def search_terms(self, *, documents: bool = True) -> list[str]:
        """What a row's text contains if it names an identifier: a distinctive one as
        it is and as JSON writes it inside a string (escaped quotes, `\\uXXXX`); in JSON
        `documents`, a plain one as a whole JSON string (`"42"`), the only way it is
        replaced (a superset: the key is looked at in Python)."""
        terms: set[str] = set()
        for value in self.identifiers:
            if distinctive(value):
                terms |= {value, json.dumps(value)[1:-1],
                          json.dumps(value, ensure_ascii=False)[1:-1], *url_forms(value)}
            elif documents:
                terms |= {json.dumps(value), json.dumps(value, ensure_ascii=False)}
        return sorted(terms)

    def text(self, value: str, key: Any = None) -> str:
        """A string with the identifiers replaced; `key`: the JSON key it is the value
        of (a plain identifier is replaced only under a REFERENCE_KEYS key)."""
        folded = value.strip().casefold()
        if folded in self._strong or (folded in self._plain and isinstance(key, str)
                                      and key.casefold() in REFERENCE_KEYS):
            return FORGOTTEN
        if self._inside is None:
            return value
        return self._inside.sub(FORGOTTEN, value)

    def value(self, value: Any, key: Any = None) -> Any:
        """A JSON document with every identifier replaced (a new one; the same shape).
        A key that is a distinctive identifier becomes FORGOTTEN (numbered when two in
        one object would: no value is lost)."""
        if isinstance(value, str):
            return self.text(value, key)
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for k, v in value.items():
                name = k
                if isinstance(k, str) and k.strip().casefold() in self._strong:
                    name, n = FORGOTTEN, 1
                    while name in out or name in value:
                        n += 1
                        name = f"{FORGOTTEN} {n}"
                out[name] = self.value(v, k)
            return out
        if isinstance(value, list):
            return [self.value(v, key) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v, key) for v in value)
        return value


def still_someone_elses(identifiers: Iterable[str], others: Iterable[Any]) -> set[str]:
    """The identifiers that are also another person's own (`others`: the values that
    still identify someone after the forgotten person's rows went: a family's shared
    e-mail address on another profile, say). They stay: they are that person's too."""
    theirs = {str(v).strip().casefold() for v in others if v is not None}
    return {v for v in identifiers if v.strip().casefold() in theirs}
