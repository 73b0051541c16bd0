"""The store's errors (the whole exception tree is drawn in rules/errors.py)."""

from __future__ import annotations

from rules.errors import JourneymanError


class StoreError(JourneymanError):
    """Something is wrong with the durable store (schema, configuration, data)."""


class SchemaNotReady(StoreError):  # noqa: N818 - reads well at the raise site
    """The database has no (or an older) schema; run the migrations. `revision`: the
    database's (None: it has no schema yet, a new database)."""

    def __init__(self, message: str, revision: str | None = None) -> None:
        super().__init__(message)
        self.revision = revision


class DuplicateKeyName(StoreError):  # noqa: N818
    """An active API key with this name exists already."""


class DuplicateUserName(StoreError):  # noqa: N818
    """A dashboard user with this name exists already."""


class NaiveDatetimeError(StoreError, ValueError):
    """A naive datetime reached the store; every datetime must be aware (UTC)."""
