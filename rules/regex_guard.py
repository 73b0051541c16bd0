"""Refuse `matches` patterns that can take exponential time (catastrophic backtracking).

Python's `re` backtracks: a pattern that can match the same text in more than one way
inside a repeat tries every way before it fails, 2**n of them for n characters. On the
pattern as Python's own parser reads it (`re._parser`), with its groups opened, the body
of every repeat that can run more than once (`+`, `*`, `{2,}`, `{3}`) is refused when:

- it can match the empty text: `(a*)+`, `(a|)+`, `(a?){25}`;
- it holds a repeat of a varying count (`?` included): `(a+)+`, `(\\w+\\s?)+`,
  `^(a?a?)+$`. Not refused when that inner repeat is small and bounded
  (`(\\d{1,3}\\.){3}`), or when the text fixes where it stops: a required character it
  cannot take follows it (`([a-z0-9-]+\\.)+`), or it ends a body whose turns the text
  bounds, after items that are each fixed the same way (`(\\.\\w+)*`, `( [A-Z][a-z]+)*`).
  A body's turns are bounded when it starts, or ends, with a required character nothing
  else in it can take (`.` in `(\\.\\w+)*`): each turn starts (ends) at one of those;
- it holds an alternation whose branches can start with the same character (`(a|a)+`,
  `(.|x)*`, `(foo|)+`), unless the text bounds the alternation and its branches are
  plain characters that can never match the same text (`(\\.(jpg|jpeg|png))+`).

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
_ATOMIC = getattr(sre, "ATOMIC_GROUP", None)
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
    # (?i) anywhere counts for all the pattern: a guess on the safe side
    ignore_case = bool(parsed.state.flags & sre.SRE_FLAG_IGNORECASE) or _local_ignore_case(parsed)
    try:
        _walk(list(parsed), _Guard(probe, ignore_case))
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

    def bounded(self, turn: list[Any]) -> bool:
        """Whether a (flattened) repeated body starts, or ends, with a required character
        that nothing else in it can take, like `-` in `(-[a-z]+)*` or `.` in
        `([a-z]+\\.)+`: then the text decides where each turn starts and ends."""
        return self._marked(turn) or self._marked(turn[::-1])

    def _marked(self, turn: list[Any]) -> bool:
        if not turn or turn[0][0] not in _ONE_CHAR:
            return False
        others = _consumed(turn[1:])
        return others is not None and not any(self.overlap(turn[0], o) for o in others)

    def ended(self, item: tuple[Any, Any], rest: list[Any]) -> bool:
        """Whether what follows `item` must start with a character it cannot take, like
        `\\.` after `[a-z]+`: then where it stops is fixed by the text."""
        taken = _consumed([item])
        firsts = _firsts(rest)
        if taken is None or firsts is None or firsts[1]:
            return False
        return not any(self.overlap(t, f) for t in taken for f in firsts[0])

    def decided(self, item: tuple[Any, Any]) -> bool:
        """Whether an alternation's next character picks its branch, and each branch has
        one length: then where it ends is fixed by the text."""
        if item[0] is not sre.BRANCH:
            return False
        branches = [_flat(branch) for branch in item[1][1]]
        if any(_length(branch) is None for branch in branches):
            return False
        return not any(self.overlap(_first(a), _first(b))
                       for i, a in enumerate(branches) for b in branches[i + 1:])

    def distinct(self, a: list[Any], b: list[Any]) -> bool:
        """Whether two branches of single characters can never match the same text: their
        lengths differ, or at some place their characters do."""
        if any(op not in _ONE_CHAR for op, _ in (*a, *b)):
            return False
        return len(a) != len(b) or any(not self.overlap(x, y) for x, y in zip(a, b, strict=True))


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


def _walk(items: list[Any], guard: _Guard) -> None:
    """Check the body of every repeat that can run more than once."""
    for op, av in items:
        if op in _REPEATS and av[1] > 1:
            low, high, body = av
            if _nullable(list(body)):
                raise _RiskError(f"{SAME_TEXT}: it can match the empty text")
            turn = _flat(body)
            fixed = guard.bounded(turn)
            _check(turn, guard, (low, high), start_fixed=fixed, end_fixed=fixed)
        for sub in _children(op, av):
            _walk(list(sub), guard)


def _check(items: list[Any], guard: _Guard, outer: tuple[int, int], *, start_fixed: bool,
           end_fixed: bool) -> None:
    """Refuse a sequence inside a repeated body that can match a text in more than one way.
    `start_fixed`/`end_fixed`: whether the text decides where the sequence starts and ends
    (a turn of a body that starts with a character nothing else in it can take is bounded
    by the next such character). Every repeat of a varying count (`?` included) must be:
    small and bounded; followed by a required character it cannot take (`_ended`); or the
    last item, with its start and end fixed (`[a-z]+` in `(-[a-z]+)*`)."""
    at_fixed = start_fixed  # whether the text decides where the current item starts
    for index, item in enumerate(items):
        op, av = item
        rest = items[index + 1:]
        last = end_fixed and not rest
        ended = guard.ended(item, rest)
        if op in _REPEATS:
            low, high, body = av
            if low < high and _nullable(list(body)):  # `(-?)?`: nothing, two ways
                raise _RiskError(f"{SAME_TEXT}: it holds a repeat that can match the "
                                 "empty text")
            if low < high and not (_small(outer, (low, high)) or ended
                                   or (at_fixed and last)):
                raise _RiskError(f"{SAME_TEXT}: it holds another repeat, "
                                 f"{_describe(low, high)}")
            turn = _flat(body)
            if high > 1:
                fixed = guard.bounded(turn)
                _check(turn, guard, outer, start_fixed=fixed and at_fixed,
                       end_fixed=fixed and (last or ended))
            else:
                _check(turn, guard, outer, start_fixed=at_fixed, end_fixed=last or ended)
        elif op is sre.BRANCH:
            branches = [_flat(branch) for branch in av[1]]
            bounded = at_fixed and (last or ended)
            for i, a in enumerate(branches):
                for b in branches[i + 1:]:
                    if guard.overlap(_first(a), _first(b)) and not (bounded
                                                                   and guard.distinct(a, b)):
                        raise _RiskError(f"{SAME_TEXT}: two of its alternatives can start "
                                         "with the same character, or one can match nothing")
            for branch in branches:
                _check(branch, guard, outer, start_fixed=at_fixed, end_fixed=bounded)
        else:
            for sub in _children(op, av):
                _check(_flat(sub), guard, outer, start_fixed=False, end_fixed=False)
        at_fixed = at_fixed and (ended or _length([item]) is not None
                                 or guard.decided(item))


def _flat(items: Any) -> list[Any]:
    """A sequence with its groups opened: `a(b(c))` is `abc` (a group only captures)."""
    out: list[Any] = []
    for op, av in items:
        if op is sre.SUBPATTERN:
            out.extend(_flat(av[3]))
        else:
            out.append((op, av))
    return out


def _small(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    if sre.MAXREPEAT in (outer[1], inner[1]):
        return False
    return bool((inner[1] - inner[0] + 1) ** outer[1] <= BOUNDED_WAYS)


def _consumed(items: Any) -> list[Any] | None:
    """Every one-character matcher a sequence can use, or None when unknown (a back
    reference, a conditional)."""
    found: list[Any] = []
    for op, av in items:
        if op in _ONE_CHAR:
            found.append((op, av))
        elif op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue  # takes no character
        elif op in _REPEATS or op in (sre.SUBPATTERN, sre.BRANCH, _ATOMIC):
            for sub in _children(op, av):
                inner = _consumed(sub)
                if inner is None:
                    return None
                found.extend(inner)
        else:
            return None
    return found


def _firsts(items: Any) -> tuple[list[Any], bool] | None:
    """The one-character matchers a sequence can start with, and whether it can match
    nothing; None when unknown."""
    found: list[Any] = []
    for op, av in items:
        if op in _ONE_CHAR:
            return [*found, (op, av)], False
        if op is sre.AT:
            continue
        if op in _REPEATS or op in (sre.SUBPATTERN, _ATOMIC):
            inner = _firsts(_children(op, av)[0])
            if inner is None:
                return None
            nullable = inner[1] or (op in _REPEATS and av[0] == 0)
            found.extend(inner[0])
        elif op is sre.BRANCH:
            nullable = False
            for branch in av[1]:
                inner = _firsts(branch)
                if inner is None:
                    return None
                found.extend(inner[0])
                nullable = nullable or inner[1]
        else:
            return None
        if not nullable:
            return found, False
    return found, True


def _nullable(items: list[Any]) -> bool:
    """Whether a sequence can match the empty text (or may: unknown counts as yes)."""
    firsts = _firsts(items)
    return firsts is None or firsts[1]


def _length(items: Any) -> int | None:
    """How many characters a sequence always takes, or None when it varies."""
    total = 0
    for op, av in items:
        if op in _ONE_CHAR:
            total += 1
        elif op is sre.AT:
            continue
        elif op is sre.SUBPATTERN:
            inner = _length(av[3])
            if inner is None:
                return None
            total += inner
        elif op in _REPEATS and av[0] == av[1]:
            inner = _length(av[2])
            if inner is None:
                return None
            total += inner * av[0]
        else:
            return None
    return total


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


def _local_ignore_case(items: Any) -> bool:
    for op, av in items:
        if op is sre.SUBPATTERN and av[1] & sre.SRE_FLAG_IGNORECASE:
            return True
        if op is not sre.IN and any(_local_ignore_case(sub) for sub in _children(op, av)):
            return True
    return False


def _describe(low: int, high: int) -> str:
    if (low, high) == (0, 1):
        return "a '?'"
    if high == sre.MAXREPEAT:
        return "a '*'" if low == 0 else ("a '+'" if low == 1 else f"{{{low},}}")
    return f"{{{low},{high}}}"
