"""Refuse `matches` patterns that can take exponential time (catastrophic backtracking).

Python's `re` backtracks: a pattern that can match the same text in more than one way
inside a repeat tries every way before it fails, 2**n of them for n characters. Two
shapes cause it, and both are found on the pattern as Python's own parser reads it
(`re._parser`, sre_parse before 3.11), deterministically:

- a nested quantifier: a repeat (at most more than once) whose body holds a repeat of a
  varying count, like `(a+)+`, `(a*)*`, `(\\w+\\s?)+`, `(a+){20}`. Not refused: an inner
  repeat of one character class that a required, disjoint character follows, like
  `([a-z0-9-]+\\.)+` (the `.` fixes where each turn ends), or one whose counts are all
  small and bounded, like `(\\d{1,3}\\.){3}`;
- a repeated alternation whose branches can start with the same character, like
  `(a|a)+`, `(a|ab)+`, `(.|x)*` (a branch that can match nothing, or whose first
  character is unknown, counts as overlapping).

What remains is polynomial (`\\d*\\d*x`, `.*a.*b`): the `matches` operator bounds it by
matching at most `MATCH_LIMIT` characters of a value (rules/operators.py).
"""

from __future__ import annotations

from re import _constants as sre  # type: ignore[attr-defined]  # Python 3.11+
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

# An outer bounded repeat of a bounded inner one is refused above this many ways to cut
# the text it matches ((inner max - inner min + 1) ** outer max): (\d{1,3}\.){3} is 27.
BOUNDED_WAYS = 1024
SAME_TEXT = "a repeated group that can match the same text in more than one way"
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
_ONE_CHAR = {sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY}
# Characters tried to tell whether two one-character matchers overlap: ASCII, Latin-1 and
# samples of other scripts' letters, digits and spaces; plus every literal of the pattern.
_PROBE = [*range(0x300), 0x0660, 0x0669, 0x0966, 0x3000, 0x2028, 0x4E00, 0x0410, 0x05D0]


class _RiskError(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def exponential_risk(pattern: str) -> str | None:
    """Why `pattern` can take exponential time, or None. Call it on a pattern that
    compiles (a parse error is reported as None: the compile error says it better)."""
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:  # re.compile reports it
        return None
    probe = sorted(set(_PROBE) | set(_literals(parsed)))
    ignore_case = bool(parsed.state.flags & sre.SRE_FLAG_IGNORECASE)
    try:
        _walk(list(parsed), inside_repeat=False, guard=_Guard(probe, ignore_case))
    except _RiskError as risk:
        return risk.why
    return None


class _Guard:
    def __init__(self, probe: list[int], ignore_case: bool) -> None:
        self.probe = probe
        self.ignore_case = ignore_case

    def accepts(self, item: tuple[Any, Any], ch: int) -> bool:
        op, av = item
        chars = {ch}
        if self.ignore_case:
            chars |= {ord(c) for c in (chr(ch).lower(), chr(ch).upper()) if len(c) == 1}
        return any(_accepts(op, av, c) for c in chars)

    def overlap(self, a: tuple[Any, Any] | None, b: tuple[Any, Any] | None) -> bool:
        if a is None or b is None:
            return True
        return any(self.accepts(a, c) and self.accepts(b, c) for c in self.probe)


def _accepts(op: Any, av: Any, ch: int) -> bool:
    if op is sre.LITERAL:
        return bool(av == ch)
    if op is sre.NOT_LITERAL:
        return bool(av != ch)
    if op is sre.ANY:
        return True
    # IN: a character class
    negate = False
    hit = False
    for sub_op, sub_av in av:
        if sub_op is sre.NEGATE:
            negate = True
        elif sub_op is sre.LITERAL:
            hit = hit or sub_av == ch
        elif sub_op is sre.RANGE:
            hit = hit or sub_av[0] <= ch <= sub_av[1]
        elif sub_op is sre.CATEGORY:
            hit = hit or _category(sub_av, chr(ch))
        else:  # anything else: assume it may take the character
            return True
    return hit != negate


def _category(name: Any, c: str) -> bool:
    word = c.isalnum() or c == "_"
    table = {
        sre.CATEGORY_DIGIT: c.isdecimal(), sre.CATEGORY_NOT_DIGIT: not c.isdecimal(),
        sre.CATEGORY_SPACE: c.isspace(), sre.CATEGORY_NOT_SPACE: not c.isspace(),
        sre.CATEGORY_WORD: word, sre.CATEGORY_NOT_WORD: not word,
    }
    return table.get(name, True)


def _literals(items: Any) -> list[int]:
    found: list[int] = []
    for op, av in items:
        if op is sre.LITERAL or op is sre.NOT_LITERAL:
            found.append(av)
        elif op is sre.RANGE:
            found.extend(av)
        elif op is sre.IN:
            found.extend(_literals(av))
        else:
            for sub in _children(op, av):
                found.extend(_literals(sub))
    return found


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-patterns of one parsed item (each a sequence of items)."""
    if op in _REPEATS:
        return [av[2]]
    if op is sre.SUBPATTERN:
        return [av[3]]
    if op is sre.BRANCH:
        return list(av[1])
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [av[1]]
    if op is getattr(sre, "ATOMIC_GROUP", None):
        return [av]
    if op is sre.GROUPREF_EXISTS:
        return [b for b in av[1:] if b is not None]
    return []


def _walk(items: list[Any], *, inside_repeat: bool, guard: _Guard) -> None:
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            if high > 1:
                for inner in _varying_repeats(list(body), guard, outer=(low, high)):
                    raise _RiskError(f"{SAME_TEXT}: it holds another repeat, {inner}")
            _walk(list(body), inside_repeat=inside_repeat or high > 1, guard=guard)
            continue
        if op is sre.BRANCH and inside_repeat:
            firsts = [_first(list(branch)) for branch in av[1]]
            for i, a in enumerate(firsts):
                for b in firsts[i + 1:]:
                    if guard.overlap(a, b):
                        raise _RiskError(f"{SAME_TEXT}: two of its alternatives can start with "
                                    "the same character, or one can match nothing")
        for sub in _children(op, av):
            _walk(list(sub), inside_repeat=inside_repeat, guard=guard)


def _varying_repeats(items: list[Any], guard: _Guard, outer: tuple[int, int]) -> list[str]:
    """Descriptions of the repeats of a varying count inside a repeated body, less those a
    required disjoint character ends, or whose counts are small and bounded."""
    found: list[str] = []
    for index, (op, av) in enumerate(items):
        if op in _REPEATS:
            low, high, body = av
            if high > 1 and high != low and not (_ended(list(body), items[index + 1:], guard)
                                                 or _small(outer, (low, high))):
                found.append(_describe(low, high))
                continue
        for sub in _children(op, av):
            found.extend(_varying_repeats(list(sub), guard, outer))
    return found


def _small(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    if sre.MAXREPEAT in (outer[1], inner[1]):
        return False
    return bool((inner[1] - inner[0] + 1) ** outer[1] <= BOUNDED_WAYS)


def _ended(body: list[Any], rest: list[Any], guard: _Guard) -> bool:
    """Whether a repeat of one character class is followed by a required character it
    cannot take: then where it stops is fixed by the text."""
    if len(body) != 1 or body[0][0] not in _ONE_CHAR or not rest:
        return False
    follower = rest[0]
    return follower[0] in _ONE_CHAR and not guard.overlap(body[0], follower)


def _first(items: list[Any]) -> tuple[Any, Any] | None:
    """The one-character matcher a sequence must start with, or None when unknown (it can
    be empty, or starts with a group, a repeat or an assertion)."""
    for op, av in items:
        if op in _ONE_CHAR:
            return (op, av)
        if op is sre.SUBPATTERN:
            return _first(list(av[3]))
        if op in _REPEATS and av[0] >= 1:
            return _first(list(av[2]))
        return None
    return None


def _describe(low: int, high: int) -> str:
    if high == sre.MAXREPEAT:
        return "a '*'" if low == 0 else ("a '+'" if low == 1 else f"{{{low},}}")
    return f"{{{low},{high}}}"
