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
    """A template failed to render (undefined variable, sandbox violation, syntax).

    `logged`: the message without the failure's own words, which can quote the person's
    data (`'dict object' has no attribute 'Zebulonius'`, `'Villarrubia' is not in
    list`): where it failed and the kind of error, what a log line may say
    (engine/runtime/errortext.py `logged_text`, docs/privacy.md "Logs")."""

    def __init__(self, message: str, logged: str | None = None) -> None:
        super().__init__(message)
        self.logged = message if logged is None else logged

    @classmethod
    def at(cls, place: str, exc: BaseException, words: str) -> TemplateRenderError:
        """`place: words` (what `exc` said), logged as `place` and the kind of `exc`."""
        return cls(f"{place}: {words}", logged=(
            f"{place}: {type(exc).__name__} (its message, which may quote the person's "
            "data, is kept with the failure: journeyman failures)"))
