"""Read a user's text file (a journey, a template, a scenario, an events file) as UTF-8.

A file that cannot be read, or that is not UTF-8 (a journey saved as Latin-1 by an old
editor), is the user's mistake, not a bug: it becomes an `InvalidJourney` with one
`file:line:column: message` problem pointing at the first bad byte, never a traceback.
Everything that reads such a file goes through `read_text`, so all say it the same way;
callers outside the language turn the problem into their own error.
"""

from __future__ import annotations

from pathlib import Path

from journeys.errors import InvalidJourney, Problem


def read_text(path: Path, file: str | None = None) -> str:
    """The text of `path`, decoded as UTF-8; `file` is the name problems show (default
    the path as given). Raises InvalidJourney with one problem if the file cannot be read
    or is not UTF-8."""
    name = str(path) if file is None else file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidJourney([Problem(name, 1, 1, f"cannot read: {exc.strerror or exc}")]
                             ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJourney([not_utf8(data, exc.start, name)]) from None


def not_utf8(data: bytes, start: int, file: str, *, line: int = 1, offset: int = 0) -> Problem:
    """The problem for `data`, whose first byte that is not UTF-8 is at index `start`:
    at its line and column (in characters: everything before it decodes). `data` begins
    at `line` and byte `offset` of the file (a file read line by line gives one line)."""
    line_start = data.rfind(b"\n", 0, start) + 1
    line += data.count(b"\n", 0, start)
    column = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
    return Problem(file, line, column, f"not UTF-8 text (byte 0x{data[start]:02x} at offset "
                                       f"{offset + start}); save the file as UTF-8")
