"""Where, in a template file, one of its parts reads a name: the line and column of the
expression, for a problem a marketer's editor opens at the right place (an unknown
variable on the third line of an `html: |` block is reported there, not at the `|`).

A part's text starts where `Source.position` says (a quoted value's opening quote, or
a block scalar's indicator, whose text starts on the next line); the line inside the
text is Jinja2's (the first node that reads the name), the column is found on that
line of the file as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jinja2
from jinja2 import nodes


def name_lines(parsed: jinja2.nodes.Template) -> dict[str, int]:
    """The line of the part (1-based) where each name is first read."""
    first: dict[str, int] = {}
    for node in parsed.find_all(nodes.Name):
        first.setdefault(node.name, node.lineno)
    return first


def place(raw: Sequence[str], start: tuple[int, int], text: str, at: int,
          pattern: str) -> tuple[int, int]:
    """(line, column) in the file of the first match of `pattern` on line `at` of a part
    whose value starts at `start`; the part's own start when it cannot be told (the
    file's lines unknown, a folded or escaped value that differs from its text)."""
    line, col = start
    indicator = raw[line - 1][col - 1:col] if 0 < line <= len(raw) else ""
    block = 1 if indicator in ("|", ">") or (not indicator and "\n" in text) else 0
    row = line + block + at - 1
    if not 0 < row <= len(raw):
        return (row, 1) if block or at > 1 else start
    written = raw[row - 1]
    base = col if row == line else 0
    braces = written.find("{", base)
    found = re.compile(pattern).search(written, braces if braces >= 0 else base)
    if found is None:
        return (row, 1) if block or at > 1 else start
    return row, found.start() + 1


def first_line(text: str, pattern: str) -> int:
    """The line of `text` (1-based) where `pattern` first matches; 1 if it does not."""
    found = re.compile(pattern).search(text)
    return text.count("\n", 0, found.start()) + 1 if found else 1


def word(name: str) -> str:
    """A pattern for the variable `name`, not part of another name or an attribute."""
    return rf"(?<![\w.]){re.escape(name)}\b"


def trait(name: str) -> str:
    """A pattern for `profile.traits.<name>` in any of its spellings."""
    quoted = re.escape(name)
    return rf"profile\.traits(?:\.{quoted}\b|\[\s*['\"]{quoted}['\"]\s*\])"
