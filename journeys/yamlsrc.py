"""YAML with positions: load a document and map a location path back to line:column.

We use ruamel's round-trip loader because it keeps the line and column of every key,
value and list item, which is what lets the loader report `file:line:column`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import date
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from journeys.errors import InvalidJourney, Problem

Where = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """A parsed YAML document and the name of the file it came from."""

    file: str
    data: Any

    def position(self, where: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the value at `where`, or of its key when `key` is set.

        Location parts that are not in the document (pydantic's union tags, or a key
        that is missing) are skipped; we stop at the deepest node that exists.
        """
        node: Any = self.data
        line, col = 1, 1
        if isinstance(node, CommentedMap | CommentedSeq):
            line, col = node.lc.line + 1, node.lc.col + 1
        parts = list(where)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
                if key and last:
                    k_line, k_col = node.lc.key(part)
                    return k_line + 1, k_col + 1
                v_line, v_col = node.lc.value(part)
                line, col = v_line + 1, v_col + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                i_line, i_col = node.lc.item(part)
                line, col = i_line + 1, i_col + 1
                node = node[part]
            # anything else: a union tag or a missing key; stay where we are
        return line, col

    def problem(self, where: Sequence[str | int], message: str, *, key: bool = False) -> Problem:
        line, col = self.position(where, key=key)
        return Problem(self.file, line, col, message)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def load_yaml(text: str, file: str) -> Source:
    """Parse YAML text; a syntax error becomes an `InvalidJourney` with its position."""
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        reason = exc.problem or exc.context or "not valid YAML"
        duplicate = re.match(r'found duplicate key "([^"]*)"', reason)
        if duplicate:
            reason = f"duplicate key {duplicate[1]!r}"
        elif "another document" in reason:  # the parser's "but found another document"
            reason = ("a second document ('---'): a file holds one; put the next in a "
                      "file of its own")
        else:
            lines = text.splitlines()
            reason = _in_words(reason, lines[line - 1] if 0 < line <= len(lines) else "")
        raise InvalidJourney([Problem(file, line, col, f"YAML syntax: {reason}")]) from None
    except Exception as exc:  # ruamel raises a few non-marked errors (e.g. bad tags)
        raise InvalidJourney([Problem(file, 1, 1, f"YAML syntax: {exc}")]) from None
    bomb = too_many_values(data, file)
    if bomb is not None:
        raise InvalidJourney([bomb])
    return Source(file, data)


# The parser's words for the mistakes people make most, and what to do about them; the
# parser's own words follow, for a search.
_HINTS = (
    (("expected <block end>, but found '<block mapping start>'",
      "expected <block end>, but found '<block sequence start>'"),
     "this line is not indented like the lines above it: the keys of one mapping, and "
     "the '-' items of one list, start in the same column (indent with spaces)"),
    (("expected <block end>, but found '<scalar>'",),
     "unexpected text after a value: a quoted value ends at its closing quote (inside "
     "\"...\" write 'single quotes', or the other way round)"),
    (("mapping values are not allowed here",),
     "a ':' where none can be: a value that holds ': ' needs quotes, and a key indented "
     "more than the one above it continues that line's value"),
    (("found character '\\t' that cannot start any token",),
     "a tab: indent with spaces"),
)


def _in_words(reason: str, written: str) -> str:
    if re.search(r"(^|:|-)\s*\{\{", written):  # subject: {{ x }}, hi -> a flow mapping
        return ("a value that starts with '{' is read as a YAML mapping: put a template "
                f"in quotes, \"{{{{ ... }}}}\" (the parser says: {reason})")
    for said, words in _HINTS:
        if reason in said:
            return f"{words} (the parser says: {reason})"
    return reason


# What aliases may add to a file (each alias counted as the copy it stands for): far
# above what people write (a condition or a block of properties shared by a few steps),
# far below what a bomb adds (nine levels of nine, or one long string repeated).
MAX_ADDED_VALUES = 100_000
MAX_ADDED_CHARACTERS = 10_000_000
_LONG = 64  # strings from this length are followed by identity (shorter ones may be shared)


# The values a journey's files are made of. Anything else (`!!binary` bytes, a value of
# a tag of its own, `!foo`) is refused: nothing reads it, and neither the count below nor
# `plain` knows its size (2,000 aliases of a 100 KB `!!binary` key were 588 million
# characters for `plain`'s keys)
_PLAIN_SCALARS = (str, int, float, date, type(None))  # bool is an int, datetime a date


class _Unreadable(Exception):  # noqa: N818 - internal: never leaves too_many_values
    def __init__(self, node: Any, parent: Any) -> None:
        super().__init__(type(node).__name__)
        self.node, self.parent = node, parent


def _position(node: Any) -> tuple[int, int]:
    """Line and column (1-based) of a container ruamel placed, else the file's start."""
    if isinstance(node, CommentedMap | CommentedSeq):
        return node.lc.line + 1, node.lc.col + 1
    return 1, 1


def too_many_values(data: Any, file: str, *, max_values: int = MAX_ADDED_VALUES,
                    max_characters: int = MAX_ADDED_CHARACTERS) -> Problem | None:
    """The problem of a document whose aliases add more than `max_values` values or
    `max_characters` characters of text once expanded (an alias bomb: nine levels of
    `&a [*a, *a, ...]` is a few hundred bytes and billions of values, a long string
    repeated by its aliases is gigabytes; `plain`, pydantic, the templates' checks and
    the digest of what is deployed would expand them all), else None. A large file
    without aliases adds nothing: it is what was written.

    The parser shares an aliased node (and an aliased string) instead of copying it, so
    each container is walked once, memoized by identity: the count is linear in the file
    as written. The problem points at the anchor whose repetitions add the most."""
    sizes: dict[int, tuple[int, int]] = {}  # container -> (values, characters) expanded
    seen: dict[int, Any] = {}  # containers and long strings met, by identity
    repeats: dict[int, int] = {}  # ... and how many times they were met again
    written = [0, 0]  # values and characters as written (an alias once, at its anchor)

    def again(node: Any) -> bool:
        if id(node) in seen:
            repeats[id(node)] = repeats.get(id(node), 0) + 1
            return True
        seen[id(node)] = node
        return False

    def size(node: Any, write: bool = True, parent: Any = None) -> tuple[int, int]:
        """`write`: the node is in the file as written (not a copy a merge key `<<: *a`
        brings into a mapping, which ruamel lists among the mapping's own)."""
        if not isinstance(node, (Mapping, list, tuple, AbstractSet, *_PLAIN_SCALARS)):
            raise _Unreadable(node, parent)
        if isinstance(node, Mapping):
            own = getattr(node, "_ok", None)  # ruamel: the keys written here, not merged
            parts: Iterable[tuple[Any, bool]] = (
                (part, write and (own is None or key in own))
                for key, value in node.items() for part in (key, value))
        elif isinstance(node, list | tuple | AbstractSet):  # !!pairs, !!set, [a, b]: keys
            parts = ((part, write) for part in node)
        else:
            chars = len(node) if isinstance(node, str) else 0
            if write and not (chars >= _LONG and again(node)):
                written[0] += 1
                written[1] += chars
            return 1, chars
        if again(node):
            return sizes.get(id(node), (1, 0))  # (1, 0) inside itself: a recursive alias
        values, chars = 1, 0
        written[0] += write
        for part, part_written in parts:
            part_values, part_chars = size(part, part_written, node)
            values, chars = values + part_values, chars + part_chars
        sizes[id(node)] = values, chars
        return values, chars

    try:
        values, chars = size(data)
    except _Unreadable as odd:
        line, col = _position(odd.parent)
        tag = getattr(getattr(odd.node, "tag", None), "value", None) or (
            "!!binary" if isinstance(odd.node, bytes) else type(odd.node).__name__)
        tag = tag.replace("tag:yaml.org,2002:", "!!")  # YAML's own, as they are written
        return Problem(file, line, col, f"a value tagged {tag}: not something journeys read "
                       "(text, numbers, true/false, dates, lists and mappings): refused")
    added_values, added_chars = values - written[0], chars - written[1]
    if added_values <= max_values and added_chars <= max_characters:
        return None
    by_values = added_values > max_values

    def weight(key: int) -> int:
        node = seen[key]
        one = sizes.get(key, (1, len(node) if isinstance(node, str) else 0))
        return repeats[key] * one[0 if by_values else 1]

    worst = seen[max(repeats, key=weight)] if repeats else None
    line, col = _position(worst)
    anchor = getattr(getattr(worst, "anchor", None), "value", None)
    what = f"anchor &{anchor}'s aliases" if anchor else "its aliases"
    added = (f"{added_values:,} values, over the limit of {max_values:,}" if by_values else
             f"{added_chars:,} characters of text, over the limit of {max_characters:,}")
    return Problem(file, line, col, f"{what} expand this file by {added}: refused (an "
                   "alias bomb?)")


def plain(node: Any) -> Any:
    """Turn ruamel's commented containers into plain dicts and lists."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
