"""The language's errors and `Problem`, one positioned finding in a file.

`JourneyError` is the language's branch of the exception tree, under
`rules.errors.JourneymanError` (the whole tree is drawn there).
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.errors import JourneymanError


class JourneyError(JourneymanError):
    """A problem with journeys, their templates or their policy."""


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
