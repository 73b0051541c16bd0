"""The exception tree. Every error a user can cause derives from `JourneyError`.

Users see `str(error)`, never a traceback: the CLI catches `JourneyError` at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass


class JourneyError(Exception):
    """Root of every error journeyman raises on purpose."""


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong in one file, at a line and column (1-based)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class InvalidJourney(JourneyError):  # noqa: N818 - reads better at the raise site than InvalidJourneyError
    """A file (or folder of files) does not validate; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownJourney(JourneyError):  # noqa: N818
    """A journey id that is not in the library."""


class TemplateRenderError(JourneyError):
    """A template failed to render (undefined variable, sandbox violation, syntax)."""
