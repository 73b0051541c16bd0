"""YAML with positions: load a document and map a location path back to line:column.

We use ruamel's round-trip loader because it keeps the line and column of every key,
value and list item, which is what lets the loader report `file:line:column`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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
        raise InvalidJourney([Problem(file, line, col, f"YAML syntax: {reason}")]) from None
    except Exception as exc:  # ruamel raises a few non-marked errors (e.g. bad tags)
        raise InvalidJourney([Problem(file, 1, 1, f"YAML syntax: {exc}")]) from None
    bomb = too_many_values(data, file)
    if bomb is not None:
        raise InvalidJourney([bomb])
    return Source(file, data)


MAX_VALUES = 100_000  # a large journey has a few hundred; a scenario, a few thousand


class _TooBig(Exception):  # noqa: N818 - internal: never leaves too_many_values
    def __init__(self, node: Any, size: int) -> None:
        super().__init__(size)
        self.node, self.size = node, size


def too_many_values(data: Any, file: str, limit: int = MAX_VALUES) -> Problem | None:
    """The problem of a document whose aliases expand it past `limit` values (an alias
    bomb: nine levels of `&a [*a, *a, ...]` is a few hundred bytes and billions of values,
    which `plain`, pydantic and every walk would expand), else None.

    The parser shares an aliased node rather than copying it, so each container is counted
    once, memoized by identity: the count is linear in the file as written. The problem
    points at the innermost container past the limit (the anchor that explodes)."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias adds nothing more
        total = 1 + sum(map(size, node.values() if isinstance(node, dict) else node))
        if total > limit:
            raise _TooBig(node, total)
        sizes[id(node)] = total
        return total

    try:
        size(data)
    except _TooBig as big:
        line, col = ((big.node.lc.line + 1, big.node.lc.col + 1)
                     if isinstance(big.node, CommentedMap | CommentedSeq) else (1, 1))
        anchor = getattr(getattr(big.node, "anchor", None), "value", None)
        what = f"anchor &{anchor}" if anchor else "this"
        return Problem(file, line, col, f"{what} expands to {big.size:,} values once its "
                       f"aliases are expanded, over the limit of {limit:,}: refused (an "
                       "alias bomb?)")
    return None


def plain(node: Any) -> Any:
    """Turn ruamel's commented containers into plain dicts and lists."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
